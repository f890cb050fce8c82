"""User scenario sets: wildcard, coverage, groups."""

from __future__ import annotations

import numpy as np
import pytest

from marginflow.core.errors import ValidationError
from marginflow.scenarios.scenario_set import ScenarioGroup
from marginflow.scenarios.user_set import ShockRow, scenario_set_from_rows


def test_wildcard_fills_unnamed_underlyings() -> None:
    rows = [
        ShockRow("crash", "*", -0.2, 0.6),
        ShockRow("crash", "SPX", -0.15, 0.8),
        ShockRow("rally", "*", 0.1, -0.2, ScenarioGroup.STRESSED),
    ]
    s = scenario_set_from_rows(rows, underlyings=["SPX", "IBM"], horizon_days=2)
    assert s.labels == ("crash", "rally")
    assert s.spot_shock == pytest.approx(np.array([[-0.15, 0.1], [-0.2, 0.1]]), rel=1e-7)
    assert s.vol_shock == pytest.approx(np.array([[0.8, -0.2], [0.6, -0.2]]), rel=1e-7)
    assert s.group.tolist() == [ScenarioGroup.CURRENT, ScenarioGroup.STRESSED]
    assert s.spot_shock.dtype == np.float32


def test_a_gap_is_an_error_naming_scenario_and_underlying() -> None:
    rows = [ShockRow("crash", "SPX", -0.15, 0.0), ShockRow("rally", "*", 0.1, 0.0)]
    with pytest.raises(ValidationError, match="'crash' has no shock for underlying 'IBM'"):
        scenario_set_from_rows(rows, underlyings=["SPX", "IBM"], horizon_days=2)


def test_empty_is_an_error() -> None:
    with pytest.raises(ValidationError, match="no valid rows"):
        scenario_set_from_rows([], underlyings=["SPX"], horizon_days=2)
