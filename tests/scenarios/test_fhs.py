"""Filtered historical simulation: window counts, rescaling, stress and floor groups, and
the real S&P 500 stress days of the reference table (§5)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import (
    DEFAULT_VOL_RESPONSE,
    DEFAULT_WARMUP,
    VolResponse,
    ewma_filter,
)
from marginflow.scenarios.fhs import (
    DEFAULT_STRESS,
    FilteredHistory,
    StressPeriod,
    filtered_historical,
    realised_vol_shocks,
)
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


# ---- one history, every day's set (the back-test's) ------------------------------------


def _reference_fhs(
    history: ReturnHistory,
    *,
    horizon_days: int = 2,
    lookback_days: int = 1250,
    overlapping: bool = True,
    stress: StressPeriod | None = DEFAULT_STRESS,
    floor_lookback_days: int | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], list[str], NDArray[np.int8]]:
    """The generation as it was written before :class:`FilteredHistory` (the EWMA filter
    and both running sums over the history it is given, in NumPy): the bits to match."""
    n, T, warmup, resp = horizon_days, len(history), DEFAULT_WARMUP, DEFAULT_VOL_RESPONSE

    def window_ends(lookback: int) -> NDArray[np.intp]:
        first_end = T - lookback + n - 1
        if overlapping:
            return np.arange(first_end, T, dtype=np.intp)
        return np.arange(T - 1, first_end - 1, -n, dtype=np.intp)[::-1].copy()

    def cumsum0(x: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.zeros((x.shape[0] + 1, *x.shape[1:]), dtype=np.float64)
        np.cumsum(x, axis=0, out=out[1:])
        return out

    current = window_ends(lookback_days)
    groups = [(ScenarioGroup.CURRENT, "fhs", current)]
    if floor_lookback_days is not None and floor_lookback_days > lookback_days:
        longer = window_ends(floor_lookback_days)
        groups.append((ScenarioGroup.FLOOR, "floor", longer[longer < current[0]]))
    if stress is not None:
        inside = (history.dates >= stress.start) & (history.dates <= stress.end)
        idx = np.flatnonzero(inside)
        ends = idx[idx - n + 1 >= max(warmup, int(idx[0]) if idx.size else 0)]
        if not overlapping:
            ends = ends[::-1][::n][::-1].copy()
        groups.append((ScenarioGroup.STRESSED, "stress", ends))
    f = ewma_filter(history.log_returns, decay=0.97, warmup=warmup)
    r = history.log_returns
    raw_sum = cumsum0(r)
    filtered_sum = cumsum0(r / f.sigma_before * f.sigma_after[-1])
    spot, vol, labels, codes = [], [], [], []
    for group, tag, ends in groups:
        starts = ends - n + 1
        raw = raw_sum[ends + 1] - raw_sum[starts]
        moved = (
            raw
            if group == ScenarioGroup.STRESSED
            else filtered_sum[ends + 1] - filtered_sum[starts]
        )
        sig0 = f.sigma_before[starts]
        dlog = np.log(f.sigma_after[ends]) - np.log(sig0)
        vol.append(resp.vol_shock(dlog, raw / (sig0 * math.sqrt(n))).T)
        spot.append(np.expm1(moved).T)
        labels.extend(f"{tag}:{history.dates[e]}" for e in ends)
        codes.append(np.full(ends.size, int(group), dtype=np.int8))
    return (
        np.ascontiguousarray(np.hstack(spot), dtype=np.float32),
        np.ascontiguousarray(np.hstack(vol), dtype=np.float32),
        labels,
        np.concatenate(codes),
    )


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"floor_lookback_days": 2520},
        {"overlapping": False, "horizon_days": 3, "floor_lookback_days": 2000},
    ],
)
def test_each_day_is_the_cut_history_to_the_bit(kw: dict[str, Any]) -> None:
    """Day t's set from the whole history equals, to the bit, the set the generation as it
    was gives for the history cut at t: days before, inside (a stress group still
    filling) and after the stressed period, and the last; each with the next day (its one
    new window's vol shock made alone); the days the cut refuses, refused alike."""
    history = load_arch_series().history
    days = FilteredHistory(history, **kw)
    d = history.dates
    checked = 0
    days_ = ("2004-06-01", "2008-09-03", "2008-10-15", "2009-01-02", "2009-04-08", "2010-05-06")
    for day in (*days_, "2013-06-03"):
        t = int(np.searchsorted(d, np.datetime64(day)))
        for t_ in (t, t + 1, len(history) - 1) if day == "2013-06-03" else (t, t + 1):
            cut = history.until(d[t_])
            try:
                once = filtered_historical(cut, **kw)  # one history, one set
            except ValidationError as exc:  # too early for the look-back or the stress
                with pytest.raises(ValidationError, match=re.escape(str(exc))):
                    days.on(t_)
                continue
            got = days.on(t_)
            spot, vol, labels, group = _reference_fhs(cut, **kw)
            for s in (got, once):
                assert s.labels == tuple(labels)
                assert s.spot_shock.tobytes() == spot.tobytes()
                assert s.vol_shock.tobytes() == vol.tobytes()
                assert s.group.tobytes() == group.tobytes()
            assert got.params == once.params
            assert got.params["as_of"] == str(d[t_])
            checked += 1
    assert checked >= 7
