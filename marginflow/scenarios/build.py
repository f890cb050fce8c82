"""One place that turns settings into a scenario set from a history (what the CLI and the
demo call): filtered historical simulation or Monte Carlo, over a book's underlyings; and
each day's set from one history (what a back-test calls)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.factors import FactorModel, fit_pca_factor_model
from marginflow.scenarios.fhs import (
    DEFAULT_STRESS,
    FilteredHistory,
    StressPeriod,
    filtered_historical,
)
from marginflow.scenarios.montecarlo import student_t_copula
from marginflow.scenarios.scenario_set import ScenarioSet

Source = Literal["fhs", "mc"]


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """Settings of a generated scenario set (see :mod:`.fhs` and :mod:`.montecarlo`)."""

    source: Source = "fhs"
    horizon_days: int = 2
    lookback_days: int = 1250
    decay: float = 0.97
    overlapping: bool = True
    stress: StressPeriod | None = DEFAULT_STRESS
    floor_lookback_days: int | None = None
    mc_scenarios: int = 10_000
    mc_factors: int = 5
    mc_dof: float = 5.0
    seed: int = 0


def build_scenarios(
    history: ReturnHistory,
    spec: ScenarioSpec,
    *,
    underlyings: Sequence[str],
    factor_model: FactorModel | None = None,
) -> ScenarioSet:
    """Scenarios for ``underlyings`` from ``history``; Monte Carlo fits a PCA factor model
    (``mc_factors`` factors) unless ``factor_model`` is given."""
    hist = history.select(list(underlyings))
    if spec.source == "fhs":
        return filtered_historical(hist, **_fhs_options(spec))
    if spec.source == "mc":
        model = factor_model or fit_pca_factor_model(
            hist,
            n_factors=min(spec.mc_factors, len(underlyings)),
            decay=spec.decay,
            lookback_days=spec.lookback_days,
        )
        return student_t_copula(
            hist,
            model,
            n_scenarios=spec.mc_scenarios,
            horizon_days=spec.horizon_days,
            lookback_days=spec.lookback_days,
            decay=spec.decay,
            dof=spec.mc_dof,
            seed=spec.seed,
        )
    raise ValidationError("source", f"must be 'fhs' or 'mc', got {spec.source!r}")


class DailyScenarios:
    """Each day's scenario set from one history: :meth:`on` gives day ``t``'s (history row
    ``t``), the set :func:`build_scenarios` gives for the history cut after that row (no
    look-ahead), to the bit. Filtered historical sets come from one
    :class:`~marginflow.scenarios.fhs.FilteredHistory`, which filters the history once and
    does only each day's own work per day; Monte Carlo sets are generated afresh each day
    (their factor model is fitted to the cut history)."""

    def __init__(
        self, history: ReturnHistory, spec: ScenarioSpec, *, underlyings: Sequence[str]
    ) -> None:
        self.history = history.select(list(underlyings))
        self.spec = spec
        self._fhs = (
            FilteredHistory(self.history, **_fhs_options(spec)) if spec.source == "fhs" else None
        )

    def on(self, t: int) -> ScenarioSet:
        if self._fhs is not None:
            return self._fhs.on(t)
        cut = self.history.until(self.history.dates[t])
        return build_scenarios(cut, self.spec, underlyings=cut.underlyings)


def _fhs_options(spec: ScenarioSpec) -> dict[str, Any]:
    return {
        "horizon_days": spec.horizon_days,
        "lookback_days": spec.lookback_days,
        "decay": spec.decay,
        "overlapping": spec.overlapping,
        "stress": spec.stress,
        "floor_lookback_days": spec.floor_lookback_days,
    }
