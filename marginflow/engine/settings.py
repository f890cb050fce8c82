"""The settings of an expected-shortfall margin: the model (confidence, anti-procyclicality,
concentration) and the scenario set it runs on (source, margin period of risk, look-back,
EWMA decay, stress period, seeds). One definition, one set of defaults, for every entry
point: ``marginflow margin`` and ``what-if``, the stream's risk calculators, ``cluster up``
and ``demo``, so a batch margin and a streamed one of the same book agree.

Settings travel as a flat JSON object of option names (:meth:`MarginSettings.to_json`; a
file is read by :func:`marginflow.io.source.read_json`, then :meth:`MarginSettings.from_json`):
``{"confidence": 0.99, "apc": "none", "source": "fhs", "mpor": 2, "lookback": 1250, ...}``;
unknown keys and values that do not read are refused naming the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from marginflow.core.book import Book
from marginflow.core.errors import ConfigurationError, ValidationError
from marginflow.core.fingerprint import fingerprint
from marginflow.engine.revaluation import METHODS, RevaluationSettings, revaluation_method
from marginflow.engine.state import MarginEngine
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.margin.models import parse_params
from marginflow.scenarios.build import DailyScenarios, ScenarioSpec, build_scenarios
from marginflow.scenarios.fhs import DEFAULT_STRESS, StressPeriod
from marginflow.scenarios.scenario_set import ScenarioSet

FLOOR_LOOKBACK_DAYS = 2520
"""Business days of the look-back an APC floor is measured over (ten years)."""

Source = Literal["fhs", "mc"]

MSG_NO_HISTORY = "the book has no price history (history.csv) to generate scenarios from"


def check_setting_types(settings: Any) -> None:
    """Each field of a settings dataclass holds its default's type (a whole number where
    the default is one, a finite number where it is a float), so a value from a JSON or TOML
    file of the wrong type is named instead of failing later as an AttributeError."""
    what = {bool: "true or false", float: "a finite number", int: "a whole number",
            str: "text", dict: "a table", tuple: "a list"}  # fmt: skip
    for f in fields(settings):
        factory: Any = f.default_factory
        default = factory() if f.default is MISSING else f.default
        kind, value = type(default), getattr(settings, f.name)
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ConfigurationError(
                f"{f.name} must be {what.get(kind, kind.__name__)}, got {value!r:.80}"
            )


@dataclass(frozen=True, slots=True)
class MarginSettings:
    """Options of an expected-shortfall margin, validated on construction.

    ``confidence`` of the ES (0.99 = 99%); ``apc`` anti-procyclicality: ``none``,
    ``buffer``, ``stressed-weight`` or ``floor-10y``; ``source`` of generated scenarios:
    ``fhs`` (filtered historical) or ``mc`` (Monte Carlo); ``mpor`` margin period of risk in
    business days; ``lookback`` in business days (FHS); ``decay`` the EWMA decay of the
    volatility filter; ``stress`` ``START:END`` (ISO dates), ``default``
    (2008-09-01:2009-03-31) or ``none`` (FHS only); ``overlapping`` n-day windows (FHS);
    ``mc_scenarios`` and ``seed`` (Monte Carlo); ``params`` further ``key=value`` settings
    of the ES model (``apc_buffer``, ``stressed_weight``, ``concentration``,
    ``participation``); ``revaluation`` of American options: ``grid`` (the European price
    exact, the early-exercise premium from grids of the pricing core's prices, within 1e-3
    per unit of underlying at spot 100 of an exact revaluation; for large books) or
    ``exact`` (the pricing core's American pricer for every option under every scenario:
    one ALO price per option and scenario, for few scenarios, what-if and small books).
    """

    confidence: float = 0.99
    apc: str = "none"
    source: Source = "fhs"
    mpor: int = 2
    lookback: int = 1250
    decay: float = 0.97
    stress: str = "default"
    overlapping: bool = True
    mc_scenarios: int = 10_000
    seed: int = 0
    params: tuple[str, ...] = field(default=())
    revaluation: str = "grid"

    def __post_init__(self) -> None:
        check_setting_types(self)
        if self.source not in ("fhs", "mc"):
            raise ConfigurationError(f"source must be fhs or mc, got {self.source!r}")
        if self.revaluation not in METHODS:
            raise ConfigurationError(
                f"revaluation must be grid or exact, got {self.revaluation!r:.80}"
            )
        for name in ("mpor", "lookback", "mc_scenarios"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
        if not 0.0 < self.decay < 1.0:
            raise ConfigurationError(f"decay must be in (0, 1), got {self.decay!r}")
        self.stress_period()  # names a bad period
        extra = parse_params(self.params)
        for key in ("confidence", "apc"):
            if key in extra:
                raise ConfigurationError(
                    f"{key} is a setting of its own; give it once, not also as a parameter"
                )
        self.model()  # names a bad model setting

    def stress_period(self) -> StressPeriod | None:
        if self.stress == "none":
            return None
        if self.stress == "default":
            return DEFAULT_STRESS
        start, sep, end = self.stress.partition(":")
        if not sep:
            raise ConfigurationError(
                f"stress must be START:END (ISO dates), 'default' or 'none', got {self.stress!r}"
            )
        try:
            return StressPeriod.of(start, end)
        except (ValueError, ValidationError) as exc:
            raise ConfigurationError(f"stress: {exc}") from None

    def model(self) -> ExpectedShortfallModel:
        """The ES model these settings describe."""
        values = {"confidence": str(self.confidence), "apc": self.apc, **parse_params(self.params)}
        return ExpectedShortfallModel.from_params(values)

    def revaluation_settings(self) -> RevaluationSettings:
        """How the engine revalues instruments under these settings."""
        return RevaluationSettings(method=revaluation_method(self.revaluation))

    def scenario_spec(self) -> ScenarioSpec:
        """The generated scenario set these settings describe."""
        return ScenarioSpec(
            source=self.source,
            horizon_days=self.mpor,
            lookback_days=self.lookback,
            decay=self.decay,
            overlapping=self.overlapping,
            stress=self.stress_period() if self.source == "fhs" else None,
            floor_lookback_days=FLOOR_LOOKBACK_DAYS if self.apc == "floor-10y" else None,
            mc_scenarios=self.mc_scenarios,
            seed=self.seed,
        )

    def scenarios(self, book: Book) -> ScenarioSet:
        """Scenarios for every underlying of ``book`` from its price history."""
        if book.history is None:
            raise ConfigurationError(MSG_NO_HISTORY)
        # A history that stopped long before the valuation date would price today's risk
        # with an old market: refused, naming the file and both dates.
        book.history.check_current(book.market.valuation_date)
        return build_scenarios(book.history, self.scenario_spec(), underlyings=book.underlyings.ids)

    def daily_scenarios(self, book: Book) -> DailyScenarios:
        """Each day's scenarios for every underlying of ``book`` from its price history cut
        at the day (:meth:`scenarios` of the book on that day, made from one history)."""
        if book.history is None:
            raise ConfigurationError(MSG_NO_HISTORY)
        return DailyScenarios(book.history, self.scenario_spec(), underlyings=book.underlyings.ids)

    # -- serialised form -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["params"] = list(self.params)
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MarginSettings:
        """Settings from :meth:`to_json`'s form; missing keys take their defaults."""
        if not isinstance(doc, Mapping):
            raise ConfigurationError(f"margin settings must be a JSON object, got {doc!r:.80}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown margin setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        values = dict(doc)
        if "params" in values:
            params = values["params"]
            if not isinstance(params, list | tuple) or not all(isinstance(p, str) for p in params):
                raise ConfigurationError(
                    f"params must be a list of key=value texts, got {params!r}"
                )
            values["params"] = tuple(params)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigurationError(f"margin settings: {exc}") from None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")

    def describe(self) -> str:
        """In a few words, e.g. ``99% ES, 2-day MPOR, 1250-day FHS, APC none``."""
        m = self.model()
        text = f"{m.confidence:.1%}".replace(".0%", "%") + f" ES, {self.mpor}-day MPOR, "
        text += f"{self.lookback}-day FHS" if self.source == "fhs" else f"{self.mc_scenarios} MC"
        if self.revaluation != "grid":
            text += f", {self.revaluation} revaluation"
        if m.apc == "buffer":
            return text + f", APC buffer {m.apc_buffer:.0%}"
        if m.apc == "stressed-weight":
            return text + f", APC stressed weight {m.stressed_weight:.0%}"
        return text + f", APC {m.apc}"


def build_engine(
    book: Book,
    settings: MarginSettings,
    *,
    scenarios: ScenarioSet | None = None,
    revaluation: RevaluationSettings | None = None,
) -> MarginEngine:
    """The incremental engine for ``book`` under ``settings`` (scenarios generated from the
    book's history unless given; revaluation as ``settings.revaluation`` unless given)."""
    scen = scenarios if scenarios is not None else settings.scenarios(book)
    reval = revaluation if revaluation is not None else settings.revaluation_settings()
    return MarginEngine(book, scen, settings.model(), revaluation=reval)


def identity(engine: MarginEngine) -> dict[str, Any]:
    """Everything that shapes an engine's margins besides its book and market: the model's
    parameters in force, the scenario set's (source, count, horizon, look-back, decay, stress
    period, seeds), the revaluation method and the engine's version."""
    from marginflow import __version__

    return {
        "model": engine.model_info.to_json(),
        "revaluation": asdict(engine.revaluation),
        "engine_version": __version__,
    }


__all__ = [
    "FLOOR_LOOKBACK_DAYS",
    "MarginSettings",
    "build_engine",
    "check_setting_types",
    "fingerprint",
    "identity",
]
