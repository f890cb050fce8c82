"""The expected-shortfall model's anti-procyclicality modes, add-ons and parameters."""

from __future__ import annotations

import numpy as np
import pytest

from marginflow.core.errors import ConfigurationError
from marginflow.margin.addons import concentration_addon, stressed_weights
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.margin.expected_shortfall import tail_stats
from marginflow.scenarios.scenario_set import ScenarioGroup

C, S, F = ScenarioGroup.CURRENT, ScenarioGroup.STRESSED, ScenarioGroup.FLOOR


def _case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    group = np.array([C] * 400 + [S] * 40 + [F] * 560, dtype=np.int8)
    pnl = np.concatenate(
        [rng.normal(0, 100, 400), rng.normal(-150, 200, 40), rng.normal(0, 300, 560)]
    )
    return pnl[None, :], group


def test_none_uses_lookback_and_stress_equally() -> None:
    pnl, group = _case()
    core = ExpectedShortfallModel().evaluate(pnl, group)
    ref = tail_stats(pnl[0, :440], confidence=0.99).es[0]
    assert core.es[0] == pytest.approx(ref)
    assert core.apc[0] == 0.0


def test_buffer_adds_a_quarter() -> None:
    pnl, group = _case()
    core = ExpectedShortfallModel(apc="buffer").evaluate(pnl, group)
    assert core.es[0] == pytest.approx(1.25 * core.es_base[0])
    with pytest.raises(ConfigurationError, match=r"Art\. 28"):
        ExpectedShortfallModel(apc="buffer", apc_buffer=0.1)


def test_stressed_weight_gives_stress_a_quarter_of_the_probability() -> None:
    pnl, group = _case()
    include = np.flatnonzero(group != F)
    w = stressed_weights(group, include, 0.25)
    assert w[group[include] == S].sum() == pytest.approx(0.25)
    assert w.sum() == pytest.approx(1.0)
    core = ExpectedShortfallModel(apc="stressed-weight").evaluate(pnl, group)
    ref = tail_stats(pnl[0, include], confidence=0.99, weights=w).es[0]
    assert core.es[0] == pytest.approx(ref)
    assert core.es[0] > core.es_base[0]  # stress is 9% of the set, given 25%


def test_floor_takes_the_ten_year_figure_when_larger() -> None:
    pnl, group = _case()
    core = ExpectedShortfallModel(apc="floor-10y").evaluate(pnl, group)
    ten_year = tail_stats(pnl[0], confidence=0.99, include=np.flatnonzero(group != S)).es[0]
    assert core.es[0] == pytest.approx(max(core.es_base[0], ten_year))
    with pytest.raises(ConfigurationError, match="10-year"):
        ExpectedShortfallModel(apc="floor-10y").evaluate(pnl, np.where(group == F, C, group))


def test_concentration_addon_formula() -> None:
    # 2 days' MPOR; exposure 1,000,000 shares, ADV 1,000,000, 10% a day: 10 days to exit,
    # √(10/2) - 1 = 1.236 times the underlying's ES share; hedges and small ones add nothing.
    addon = concentration_addon(
        es_share=np.array([50_000.0, 50_000.0, -20_000.0]),
        exposure=np.array([1e6, 1e4, 1e7]),
        adv=np.array([1e6, 1e6, 1e6]),
        participation=0.1,
        horizon_days=2,
    )
    assert addon[0] == pytest.approx(50_000 * (np.sqrt(5) - 1))
    assert addon[1] == 0.0
    assert addon[2] == 0.0


def test_parameters_from_strings() -> None:
    m = ExpectedShortfallModel.from_params(
        {"confidence": "0.995", "apc": "stressed-weight", "concentration": "false"}
    )
    assert m.confidence == 0.995
    assert m.apc == "stressed-weight"
    assert m.concentration is False
    with pytest.raises(ConfigurationError, match="unknown parameter 'alpha'"):
        ExpectedShortfallModel.from_params({"alpha": "1"})
    with pytest.raises(ConfigurationError, match="confidence: cannot read 'high'"):
        ExpectedShortfallModel.from_params({"confidence": "high"})
    with pytest.raises(ConfigurationError, match="apc must be one of"):
        ExpectedShortfallModel(apc="sometimes")
