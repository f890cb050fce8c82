"""American options in the P&L matrix against an independent high-precision reference:
QuantLib's ``QdFpAmericanEngine`` (high-precision scheme) priced at each scenario's market.

The bound is the pricing core's: every scenario P&L within 1e-3 per unit of underlying at
spot 100 (1e-5 of the spot) of the reference, with the premium grids (the default) and with
``method="exact"``."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from marginflow.core.batch import OptionBatch
from marginflow.core.book import InstrumentKind, Instruments, Market
from marginflow.engine.revaluation import METHODS, RevaluationSettings, revalue
from tests.pricing.test_american_quantlib import quantlib_prices

VALUATION = dt.date(2018, 12, 31)
BOUND = 1e-5  # of the spot, per unit of underlying: 1e-3 at spot 100


def _book(n_und: int, n_opt: int, rng: np.random.Generator) -> tuple[Instruments, Market]:
    """American calls and puts on ``n_und`` underlyings: strikes 75%-130% of spot, expiries
    a week to two years, vols 20%-80% with skews whose floor lies beyond the scenarios."""
    und = rng.integers(0, n_und, n_opt).astype(np.int32)
    spot = rng.uniform(10.0, 500.0, n_und)
    days = rng.choice([7, 30, 91, 182, 365, 547, 730], n_opt)
    inst = Instruments(
        ids=tuple(f"o{i}" for i in range(n_opt)),
        underlying=und,
        kind=rng.choice([InstrumentKind.CALL, InstrumentKind.PUT], n_opt).astype(np.int8),
        strike=np.round(spot[und] * rng.uniform(0.75, 1.3, n_opt), 2),
        expiry=np.datetime64(VALUATION, "D") + days.astype("timedelta64[D]"),
        is_american=np.ones(n_opt, dtype=bool),
        multiplier=np.full(n_opt, 100.0),
        valuation_date=VALUATION,
    )
    market = Market(
        valuation_date=VALUATION,
        spot=spot,
        atm_vol=rng.uniform(0.2, 0.8, n_und),
        skew=rng.uniform(-0.25, 0.0, n_und),
        dividend_yield=rng.choice([0.0, 0.01, 0.03, 0.05], n_und),
        rate=rng.uniform(0.0, 0.05, n_und),
    )
    return inst, market


def _shocks(n_und: int, n_s: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    spot = np.clip(rng.standard_t(4, (n_und, n_s)) * 0.1, -0.35, 0.6).astype(np.float32)
    vol = np.clip(np.expm1(rng.normal(0.0, 0.3, (n_und, n_s))), -0.5, 1.0).astype(np.float32)
    spot[:, 0] = vol[:, 0] = 0.0
    return spot, vol


def _reference(
    inst: Instruments, market: Market, spot: np.ndarray, vol: np.ndarray, floor: float = 0.01
) -> np.ndarray:
    """P&L per contract from QuantLib HP prices at today's and each scenario's market."""
    out = np.empty((len(inst), spot.shape[1]))
    for i in range(len(inst)):
        u = int(inst.underlying[i])
        k = float(inst.strike[i])
        s = market.spot[u] * np.r_[1.0, 1.0 + spot[u].astype(np.float64)]
        vm = np.r_[1.0, 1.0 + vol[u].astype(np.float64)]
        v = vm * np.maximum(floor, market.atm_vol[u] + market.skew[u] * np.log(k / s))
        batch = OptionBatch.of(
            is_call=bool(inst.kind[i] == InstrumentKind.CALL),
            is_american=True,
            spot=s,
            strike=k,
            expiry_years=inst.expiry_years[i],
            rate=market.rate[u],
            dividend_yield=market.dividend_yield[u],
            vol=v,
        )
        p = quantlib_prices(batch)
        out[i] = (p[1:] - p[0]) * inst.multiplier[i]
    return out


def _error_per_spot(
    pnl: np.ndarray, ref: np.ndarray, inst: Instruments, market: Market
) -> np.ndarray:
    notional = (market.spot[inst.underlying] * inst.multiplier)[:, None]
    return np.abs(pnl.astype(np.float64) - ref) / notional


@pytest.mark.parametrize("seed", [1, 2])
def test_grid_and_exact_are_within_the_pricing_bound_of_quantlib(seed: int) -> None:
    rng = np.random.default_rng(seed)
    inst, market = _book(3, 24, rng)
    spot, vol = _shocks(3, 40, rng)
    args = {"instruments": inst, "market": market, "spot_shock": spot, "vol_shock": vol}
    ref = _reference(inst, market, spot, vol)
    grid = _error_per_spot(revalue(**args), ref, inst, market)
    exact = revalue(**args, settings=RevaluationSettings(method="exact"))
    assert grid.max() <= BOUND, f"grid: worst {grid.max() * 100:.2e} per unit at spot 100"
    assert _error_per_spot(exact, ref, inst, market).max() <= BOUND


def _xyz() -> tuple[Instruments, Market]:
    inst = Instruments(
        ids=("XYZ 190920C27",),
        underlying=np.array([0], dtype=np.int32),
        kind=np.array([InstrumentKind.CALL], dtype=np.int8),
        strike=np.array([27.0]),
        expiry=np.array([np.datetime64("2019-09-20", "D")]),
        is_american=np.array([True]),
        multiplier=np.array([100.0]),
        valuation_date=VALUATION,
    )
    market = Market(
        valuation_date=VALUATION,
        spot=np.array([40.10]),
        atm_vol=np.array([0.46]),
        skew=np.array([-0.225]),
        dividend_yield=np.array([0.0364]),
        rate=np.array([0.025]),
    )
    return inst, market


def test_a_margin_does_not_depend_on_scenarios_that_do_not_drive_it() -> None:
    # Issue 12: one short American call margined under up20 alone; adding three scenarios
    # that do not drive its margin moved it by 1.96 per position with the old grids (their
    # range followed the scenario set). Now the up20 P&L is the same to the bit, and the
    # P&L of every scenario is QuantLib's to the bound (673.16 per contract under up20).
    inst, market = _xyz()
    alone = (np.array([[0.20]], np.float32), np.array([[-0.30]], np.float32))
    many = (
        np.array([[0.20, -0.45, -0.27, 0.0]], np.float32),
        np.array([[-0.30, 1.20, 2.0, -0.4]], np.float32),
    )
    for method in METHODS:
        settings = RevaluationSettings(method=method)
        one = revalue(instruments=inst, market=market, spot_shock=alone[0],
                      vol_shock=alone[1], settings=settings)  # fmt: skip
        four = revalue(instruments=inst, market=market, spot_shock=many[0],
                       vol_shock=many[1], settings=settings)  # fmt: skip
        assert four[0, 0] == one[0, 0]  # the same P&L, to the bit
        ref = _reference(inst, market, *many)
        assert _error_per_spot(four, ref, inst, market).max() <= BOUND
