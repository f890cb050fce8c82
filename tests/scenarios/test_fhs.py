"""Filtered historical simulation: window counts, rescaling, stress and floor groups, and
the real S&P 500 stress days of the reference table (§5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import VolResponse, ewma_filter
from marginflow.scenarios.fhs import StressPeriod, filtered_historical, realised_vol_shocks
from marginflow.scenarios.history import load_arch_series
from marginflow.scenarios.scenario_set import ScenarioGroup

NO_VOL = VolResponse(0.0, 0.0)


@pytest.fixture(scope="module")
def spx() -> ReturnHistory:
    return load_arch_series().history.select(["SPX"])


def _synthetic(n: int = 400, seed: int = 0) -> ReturnHistory:
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2010-01-01") + np.arange(n)
    return ReturnHistory(dates, ("A", "B"), rng.normal(0, 0.01, (n, 2)))


def test_overlapping_and_non_overlapping_counts() -> None:
    h = _synthetic()
    over = filtered_historical(h, lookback_days=250, horizon_days=2, stress=None)
    assert over.n_scenarios == 249  # L - n + 1
    non = filtered_historical(h, lookback_days=250, horizon_days=2, overlapping=False, stress=None)
    assert non.n_scenarios == 125  # floor(L / n), anchored at the last day
    assert non.labels[-1] == over.labels[-1]
    five = filtered_historical(h, lookback_days=250, horizon_days=5, overlapping=False, stress=None)
    assert five.n_scenarios == 50


def test_rescaling_by_hand() -> None:
    h = _synthetic()
    n, lam = 2, 0.97
    s = filtered_historical(
        h, lookback_days=100, horizon_days=n, decay=lam, stress=None, vol_response=NO_VOL
    )
    f = ewma_filter(h.log_returns, decay=lam)
    r = h.log_returns
    e = len(h) - 1  # the last window ends on the last day
    expected = sum(r[t] / f.sigma_before[t] * f.sigma_after[-1] for t in (e - 1, e))
    assert s.spot_shock[:, -1] == pytest.approx(np.expm1(expected), rel=1e-6)  # float32
    assert (s.vol_shock == 0).all()
    assert s.labels[-1] == f"fhs:{h.dates[-1]}"


def test_high_current_vol_scales_history_up() -> None:
    rng = np.random.default_rng(3)
    r = rng.normal(0, 0.01, (600, 1))
    r[-60:] *= 4.0  # volatility has just quadrupled
    h = ReturnHistory(np.datetime64("2010-01-01") + np.arange(600), ("A",), r)
    s = filtered_historical(h, lookback_days=500, horizon_days=1, stress=None)
    calm = np.log1p(s.spot_shock[0, :400].astype(float)).std()
    assert calm > 0.025  # 1% days re-volatised towards today's ~4%


def test_real_stress_days_are_raw_moves(spx: ReturnHistory) -> None:
    s = filtered_historical(
        spx, horizon_days=1, lookback_days=250, stress=StressPeriod.of("2008-09-01", "2008-12-31")
    )
    stressed = {
        lab: s.spot_shock[0, i] for i, lab in enumerate(s.labels) if lab.startswith("stress")
    }
    # Reference §5: S&P 500 fell 9.03% on 15 Oct 2008 and rose 11.5% (11.58%) on 13 Oct.
    assert stressed["stress:2008-10-15"] == pytest.approx(-0.0903, abs=5e-5)
    assert stressed["stress:2008-10-13"] == pytest.approx(0.1158, abs=5e-4)
    assert stressed["stress:2008-09-29"] == pytest.approx(-0.088, abs=5e-4)
    # One window per trading day of Sep-Dec 2008 (NYSE: 21 + 23 + 19 + 22).
    assert s.count(ScenarioGroup.STRESSED) == 85
    assert s.params["stress"] == "2008-09-01..2008-12-31"


def test_stressed_windows_raise_implied_vol(spx: ReturnHistory) -> None:
    s = filtered_historical(spx, horizon_days=2, lookback_days=250)
    i = s.labels.index("stress:2008-10-15")
    # VIX went 54.99 -> 69.25 (+26%) over these two days; the fitted response (R² 0.7 on
    # 2014-2018, when moves were 4 sigma rarer) gives about +20%.
    assert 0.1 < s.vol_shock[0, i] < 0.4
    up = s.labels.index("stress:2008-10-13")
    assert s.vol_shock[0, up] < 0  # the +11.6% rally: vol down


def test_floor_group_holds_the_older_windows(spx: ReturnHistory) -> None:
    s = filtered_historical(spx, lookback_days=1250, floor_lookback_days=2520)
    assert s.count(ScenarioGroup.CURRENT) == 1249
    assert s.count(ScenarioGroup.FLOOR) == 2519 - 1249

    def dates(group: ScenarioGroup) -> list[str]:
        return [lab.split(":")[1] for i, lab in enumerate(s.labels) if s.group[i] == group]

    assert max(dates(ScenarioGroup.FLOOR)) < min(dates(ScenarioGroup.CURRENT))


def test_errors_name_the_setting(spx: ReturnHistory) -> None:
    with pytest.raises(ValidationError, match=r"lookback_days.*history has"):
        filtered_historical(spx, lookback_days=10_000)
    with pytest.raises(ValidationError, match="stress"):
        filtered_historical(spx, stress=StressPeriod.of("1987-10-01", "1987-10-31"))
    with pytest.raises(ValidationError, match="ends"):
        StressPeriod.of("2009-01-01", "2008-01-01")


def test_two_day_shock_compounds_log_returns() -> None:
    # A flat-vol series: filtered and raw agree, so the 2-day shock is exp(r1 + r2) - 1.
    r = np.full((200, 1), 0.01)
    r[1::2] = -0.01
    h = ReturnHistory(np.datetime64("2010-01-01") + np.arange(200), ("A",), r)
    s = filtered_historical(h, lookback_days=100, horizon_days=2, stress=None)
    assert s.spot_shock[0, -1] == pytest.approx(math.expm1(0.0), abs=1e-6)


def test_realised_vol_shocks_are_the_scenarios_own() -> None:
    """The vol shock of a realised window is the one a scenario drawn from that window gets,
    whichever later history the generator saw (the filter looks back only)."""
    hist = _synthetic(400, seed=3)
    ends = np.array([120, 121, 250, 399], dtype=np.intp)
    shocks = realised_vol_shocks(hist, ends, horizon_days=3, decay=0.95)
    assert shocks.shape == (ends.size, len(hist.underlyings))
    for i, e in enumerate(ends.tolist()):
        scen = filtered_historical(
            hist.until(hist.dates[e]), horizon_days=3, lookback_days=60, decay=0.95, stress=None
        )
        j = scen.labels.index(f"fhs:{hist.dates[e]}")
        np.testing.assert_array_equal(scen.vol_shock[:, j], shocks[i].astype(np.float32))


def test_realised_vol_shocks_refuse_windows_in_the_warm_up() -> None:
    hist = _synthetic(400)
    with pytest.raises(ValidationError, match="after warm-up"):
        realised_vol_shocks(hist, np.array([50]), horizon_days=2, decay=0.97)
    with pytest.raises(ValidationError, match="after warm-up"):
        realised_vol_shocks(hist, np.array([400]), horizon_days=2, decay=0.97)
