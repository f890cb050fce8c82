"""The P&L matrix: European rows against QuantLib, American grid against exact pricing,
determinism of subsets, and what float32 storage loses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pytest
import QuantLib as ql

from marginflow.core.book import InstrumentKind, Instruments, Market
from marginflow.core.errors import ValidationError
from marginflow.engine.aggregate import account_pnl
from marginflow.engine.revaluation import RevaluationSettings, revalue
from marginflow.margin.expected_shortfall import tail_stats
from marginflow.pricing.single import NCDF32_ERROR
from tests.engine.conftest import SmallCase


def _tiny() -> tuple[Instruments, Market, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    n, n_s = 40, 64
    kind = np.array([0, 0] + [1, 2] * 19, dtype=np.int8)
    days = np.where(kind == 0, 0, rng.choice([0, 1, 7, 30, 91, 365, 730], n))
    inst = Instruments(
        ids=tuple(f"i{i}" for i in range(n)),
        underlying=np.array([0, 1, *list(rng.integers(0, 2, n - 2))], dtype=np.int32),
        kind=kind,
        strike=np.where(kind == 0, 0.0, np.round(rng.uniform(60, 160, n))),
        expiry=np.where(
            kind == 0,
            np.datetime64("NaT", "D"),
            np.datetime64("2018-12-31", "D") + days.astype("timedelta64[D]"),
        ),
        is_american=np.zeros(n, dtype=bool),
        multiplier=np.where(kind == 0, 1.0, 100.0),
        valuation_date=dt.date(2018, 12, 31),
    )
    market = Market(
        valuation_date=dt.date(2018, 12, 31),
        spot=np.array([100.0, 120.0]),
        atm_vol=np.array([0.25, 0.45]),
        skew=np.array([-0.3, 0.0]),
        dividend_yield=np.array([0.02, 0.0]),
        rate=np.array([0.03, 0.03]),
    )
    spot = rng.normal(0, 0.06, (2, n_s)).astype(np.float32)
    vol = np.expm1(rng.normal(0, 0.2, (2, n_s))).astype(np.float32)
    spot[:, 0] = vol[:, 0] = 0.0  # scenario 0: nothing moves
    return inst, market, spot, vol


def _ql_price(call: bool, s: float, k: float, t: float, r: float, q: float, v: float) -> float:
    if t == 0:
        return max(s - k, 0.0) if call else max(k - s, 0.0)
    kind = ql.Option.Call if call else ql.Option.Put
    fwd = s * math.exp((r - q) * t)
    return float(ql.blackFormula(kind, k, fwd, v * math.sqrt(t), math.exp(-r * t)))


def test_european_rows_match_quantlib() -> None:
    inst, market, spot, vol = _tiny()
    pnl = revalue(instruments=inst, market=market, spot_shock=spot, vol_shock=vol)
    for i in range(len(inst)):
        u = int(inst.underlying[i])
        s0, r, q = market.spot[u], market.rate[u], market.dividend_yield[u]
        for s in range(spot.shape[1]):
            s1 = s0 * (1.0 + float(spot[u, s]))
            if inst.kind[i] == InstrumentKind.STOCK:
                ref = (s1 - s0) * inst.multiplier[i]
            else:
                k, t = inst.strike[i], inst.expiry_years[i]
                call = inst.kind[i] == InstrumentKind.CALL

                def smile(spot_now: float, k: float = k, u: int = u) -> float:
                    return max(0.01, market.atm_vol[u] + market.skew[u] * math.log(k / spot_now))

                v1 = (1.0 + float(vol[u, s])) * smile(s1)
                ref = (
                    _ql_price(call, s1, k, t, r, q, v1) - _ql_price(call, s0, k, t, r, q, smile(s0))
                ) * inst.multiplier[i]
            # float32 storage: 2^-24 relative, plus the float32 normal CDF's error in
            # each of the two prices (pricing.single), S + K a CDF, and 1e-9 of the
            # contract's notional for the difference of two float64 prices.
            k = float(inst.strike[i])
            ncdf = NCDF32_ERROR * (s0 + s1 + 2.0 * k) if k > 0.0 else 0.0
            tol = 1.2e-7 * abs(ref) + (ncdf + 1e-9 * s0) * inst.multiplier[i]
            assert abs(pnl[i, s] - ref) <= tol, (i, s, pnl[i, s], ref)


def test_zero_shock_is_zero_pnl_and_subsets_are_bit_identical(small_case: SmallCase) -> None:
    b, scen = small_case.book, small_case.scenarios
    spot, vol = scen.aligned(b.underlyings.ids)
    spot = spot.copy()
    vol = vol.copy()
    spot[:, 0] = vol[:, 0] = 0.0
    full = revalue(instruments=b.instruments, market=b.market, spot_shock=spot, vol_shock=vol)
    assert np.all(full[:, 0] == 0.0)
    rows = np.array([7, 3, 100, 42, 5])
    sub = revalue(
        instruments=b.instruments, market=b.market, spot_shock=spot, vol_shock=vol, rows=rows
    )
    assert np.array_equal(sub, full[rows])


def test_float32_storage_changes_account_es_negligibly(small_case: SmallCase) -> None:
    b, scen = small_case.book, small_case.scenarios
    spot, vol = scen.aligned(b.underlyings.ids)
    m32 = revalue(instruments=b.instruments, market=b.market, spot_shock=spot, vol_shock=vol)
    m64 = np.empty(m32.shape, dtype=np.float64)
    revalue(instruments=b.instruments, market=b.market, spot_shock=spot, vol_shock=vol, out=m64)  # type: ignore[arg-type]
    es32 = tail_stats(account_pnl(b.positions.matrix, m32), confidence=0.99).es
    es64 = tail_stats(account_pnl(b.positions.matrix, m64), confidence=0.99).es  # type: ignore[arg-type]
    rel = np.abs(es32 - es64) / np.maximum(np.abs(es64), 1.0)
    # float32 keeps 24 bits: each entry within 6e-8 relative; sums of many positions stay
    # within ~1e-7 of the account's gross P&L. Seen here: below 1e-7.
    assert rel.max() < 1e-6


def test_american_grid_is_close_to_exact_pricing(small_case: SmallCase) -> None:
    b, scen = small_case.book, small_case.scenarios
    spot, vol = scen.aligned(b.underlyings.ids)
    am = np.flatnonzero(b.instruments.is_american)[:40]
    args = {
        "instruments": b.instruments,
        "market": b.market,
        "spot_shock": spot,
        "vol_shock": vol,
        "rows": am,
    }
    exact = revalue(**args, settings=RevaluationSettings(method="exact")).astype(np.float64)
    grid = revalue(**args).astype(np.float64)
    as_european = dataclasses.replace(
        b.instruments, is_american=np.zeros_like(b.instruments.is_american)
    )
    european = revalue(**{**args, "instruments": as_european}).astype(np.float64)
    effect = np.abs(exact - european).sum()
    err = np.abs(grid - exact)
    notional = (b.market.spot[b.instruments.underlying[am]] * b.instruments.multiplier[am])[:, None]
    assert effect > 0  # the book has early-exercise value to get right
    # The pricing core's bound, 1e-3 per unit of underlying at spot 100, for the grids'
    # interpolation alone (both sides price with the same American pricer).
    assert (err / notional).max() < 1e-5
    assert err.sum() < 0.01 * effect


def test_american_subsets_are_bit_identical(small_case: SmallCase) -> None:
    # The incremental engine re-prices one underlying's rows: with the premium grids on,
    # those rows must equal the full revaluation's exactly (grids span the whole bucket).
    b, scen = small_case.book, small_case.scenarios
    spot, vol = scen.aligned(b.underlyings.ids)
    args = {"instruments": b.instruments, "market": b.market, "spot_shock": spot, "vol_shock": vol}
    full = revalue(**args)
    am = np.flatnonzero(b.instruments.is_american)
    rows = am[[0, 7, len(am) // 2, len(am) - 1]]
    assert np.array_equal(revalue(**args, rows=rows), full[rows])


def test_a_scenarios_pnl_does_not_depend_on_the_other_scenarios(small_case: SmallCase) -> None:
    # The premium grids once spanned the scenario set's range on a fixed number of nodes,
    # so adding scenarios (the APC floor's 10-year windows) moved every node and with them
    # the P&L of the scenarios already there: the floor then *lowered* 26 of 50 margins.
    # Nodes now sit on a fixed lattice: a scenario's P&L is a function of its own shocks.
    b, scen = small_case.book, small_case.scenarios
    spot, vol = scen.aligned(b.underlyings.ids)
    args = {"instruments": b.instruments, "market": b.market}
    full = revalue(**args, spot_shock=spot, vol_shock=vol)
    rng = np.random.default_rng(3)
    keep = np.sort(rng.choice(spot.shape[1], spot.shape[1] // 5, replace=False))
    keep[0] = int(np.argmin(spot[0]))  # keep at least one extreme, drop others
    sub = revalue(
        **args,
        spot_shock=np.ascontiguousarray(spot[:, keep]),
        vol_shock=np.ascontiguousarray(vol[:, keep]),
    )
    assert np.array_equal(sub, full[:, keep])


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("eep_moneyness_step", 0.004),
        ("eep_log_vol_step", 0.009),
        ("eep_moneyness_step", 1.5),
        ("eep_log_vol_step", math.nan),
    ],
)
def test_grid_steps_outside_the_float32_coordinates_range_are_refused(
    name: str, step: float
) -> None:
    # below the least steps the kernel's float32 coordinates could pass the nodes' pad
    with pytest.raises(ValidationError, match=name):
        RevaluationSettings(**{name: step})
    assert RevaluationSettings(eep_moneyness_step=0.005, eep_log_vol_step=0.01).method == "grid"
