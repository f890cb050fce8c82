"""The expected-shortfall margin model (STANS / Prisma family), configurable.

margin = max(0, ES_c(scenario P&L) with anti-procyclicality) + concentration add-on

* ES at ``confidence`` (default 99%) over the scenario set's horizon (its margin period of
  risk, default 2 days) with the discrete definition of
  :mod:`marginflow.margin.expected_shortfall`;
* scenarios counted: the look-back and the stressed period (a Monte Carlo or user set: all);
* anti-procyclicality and concentration: :mod:`marginflow.margin.addons`.

The model is a value: its fields are the parameters results carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ConfigurationError
from marginflow.margin.addons import (
    base_scenarios,
    floor_scenarios,
    stressed_weights,
    validate_apc,
)
from marginflow.margin.base import ModelInfo
from marginflow.margin.expected_shortfall import Tail, TailStats, tail, tail_stats
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet


@dataclass(frozen=True, slots=True)
class EsCore:
    """Per row: ``es`` after anti-procyclicality (not floored), its parts, VaR, driver."""

    es: FloatArray
    es_base: FloatArray
    apc: FloatArray
    var: FloatArray
    worst: np.ndarray


@dataclass(frozen=True, slots=True)
class ExpectedShortfallModel:
    confidence: float = 0.99
    apc: str = "none"
    apc_buffer: float = 0.25
    stressed_weight: float = 0.25
    concentration: bool = True
    participation: float = 0.10

    name = "es"

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ConfigurationError(f"confidence must be in [0.5, 1), got {self.confidence}")
        validate_apc(self.apc, self.apc_buffer, self.stressed_weight)
        if not 0.0 < self.participation <= 1.0:
            raise ConfigurationError(f"participation must be in (0, 1], got {self.participation}")

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ExpectedShortfallModel:
        """Build from ``key=value`` strings (the CLI's ``--param``), naming a bad key."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, text in params.items():
            if key not in known:
                raise ConfigurationError(
                    f"unknown parameter {key!r} for model es; known: {', '.join(known)}"
                )
            values[key] = _parse(key, str(known[key]), text)
        return cls(**values)

    def info(self, scenarios: ScenarioSet) -> ModelInfo:
        return ModelInfo(
            self.name,
            {
                **asdict(self),
                "horizon_days": scenarios.horizon_days,
                "scenarios": dict(
                    scenarios.params, source=scenarios.source, n_scenarios=scenarios.n_scenarios
                ),
            },
        )

    def weights(self, group: np.ndarray) -> tuple[np.ndarray, FloatArray | None]:
        """Scenarios counted and their weights (None: equal)."""
        include = base_scenarios(group)
        if self.apc == "stressed-weight":
            return include, stressed_weights(group, include, self.stressed_weight)
        return include, None

    def evaluate(
        self, pnl: FloatArray, group: np.ndarray, *, rows: np.ndarray | None = None
    ) -> EsCore:
        """ES with anti-procyclicality for ``rows`` of ``pnl`` (R × S, profit positive)."""
        include, w = self.weights(group)
        main = tail_stats(pnl, confidence=self.confidence, include=include, weights=w, rows=rows)
        if self.apc == "none":
            return EsCore(main.es, main.es, np.zeros_like(main.es), main.var, main.worst)
        if self.apc == "buffer":
            es_base = np.maximum(main.es, 0.0)
            return EsCore(
                main.es + self.apc_buffer * es_base,
                main.es,
                self.apc_buffer * es_base,
                main.var,
                main.worst,
            )
        if self.apc == "stressed-weight":
            plain = tail_stats(pnl, confidence=self.confidence, include=include, rows=rows)
            return EsCore(main.es, plain.es, main.es - plain.es, main.var, main.worst)
        longer = floor_scenarios(group)
        if not (group == ScenarioGroup.FLOOR).any():
            raise ConfigurationError(
                "apc floor-10y needs a 10-year look-back: generate FHS scenarios with "
                "floor_lookback_days (the CLI does with --apc floor-10y)"
            )
        floor: TailStats = tail_stats(pnl, confidence=self.confidence, include=longer, rows=rows)
        es = np.maximum(main.es, floor.es)
        return EsCore(es, main.es, es - main.es, main.var, main.worst)

    def tail(self, pnl_row: FloatArray, group: np.ndarray) -> Tail:
        """The scenarios (and shares) the main ES of one account averages over."""
        include, w = self.weights(group)
        return tail(pnl_row, confidence=self.confidence, include=include, weights=w)


def _parse(key: str, type_name: str, text: str) -> Any:
    try:
        if "bool" in type_name:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if "float" in type_name:
            return float(text)
        return text
    except ValueError:
        raise ConfigurationError(f"parameter {key}: cannot read {text!r} as {type_name}") from None
