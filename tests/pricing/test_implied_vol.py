"""Implied volatility: round trips, and a reason wherever there is no answer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.batch import OptionBatch
from marginflow.pricing.api import price
from marginflow.pricing.black_scholes import european_price
from marginflow.pricing.greeks import european_greeks
from marginflow.pricing.implied_vol import IVStatus, implied_vol


def test_european_round_trip_on_random_options() -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    batch = OptionBatch.of(
        is_call=rng.random(n) < 0.5,
        spot=100.0,
        strike=rng.uniform(40, 250, n),
        expiry_years=rng.uniform(0.005, 5, n),
        rate=rng.uniform(-0.02, 0.1, n),
        dividend_yield=rng.uniform(0, 0.1, n),
        vol=rng.uniform(0.01, 2.0, n),
    )
    prices = european_price(batch)
    result = implied_vol(batch, prices)
    assert result.ok.all()
    # Repricing reproduces the input to the solver's tolerance: 1e-12 relative, or a few ulps
    # of the forward legs S e^-qT and K e^-rT below which BSM's own rounding decides.
    repriced = european_price(batch.replace(vol=result.vol))
    floor = 1e-15 * (batch.spot + batch.strike)
    assert np.all(np.abs(repriced - prices) <= 1e-11 * prices + floor)
    # Where the price pins the vol (vega large against the tolerance), the vol comes back.
    vega = european_greeks(batch).vega
    pinned = vega * 1e-6 > 1e-11 * prices + 1e-13
    assert pinned.mean() > 0.9
    assert np.max(np.abs(result.vol - batch.vol)[pinned]) < 1e-6


def test_no_answer_outside_bounds_says_why() -> None:
    batch = OptionBatch.of(
        is_call=True, spot=100.0, strike=90.0, expiry_years=[1.0, 1.0, 0.0, 1.0], vol=0.2
    )
    result = implied_vol(batch, [5.0, 150.0, 10.0, np.nan])
    assert list(result.status) == [
        IVStatus.BELOW_LOWER_BOUND,
        IVStatus.ABOVE_UPPER_BOUND,
        IVStatus.EXPIRED,
        IVStatus.INVALID_PRICE,
    ]
    assert np.isnan(result.vol).all()
    assert result.reason(0) == (
        "price 5 is below the no-arbitrage lower bound 10 (the zero-volatility price): "
        "no volatility reproduces it"
    )
    assert "upper bound 100" in result.reason(1)
    assert "expired" in result.reason(2)


def test_price_at_lower_bound_has_zero_vol() -> None:
    batch = OptionBatch.of(is_call=False, spot=100.0, strike=120.0, expiry_years=1.0, vol=0.2)
    intrinsic = 120.0 * np.exp(0.0) - 100.0
    result = implied_vol(batch, [intrinsic])
    assert result.status[0] == IVStatus.OK
    assert result.vol[0] == 0.0


def test_american_round_trip() -> None:
    rng = np.random.default_rng(5)
    n = 300
    batch = OptionBatch.of(
        is_call=rng.random(n) < 0.5,
        is_american=True,
        spot=100.0,
        strike=rng.uniform(70, 140, n),
        expiry_years=rng.uniform(0.05, 3, n),
        rate=rng.uniform(0.0, 0.08, n),
        dividend_yield=rng.uniform(0, 0.08, n),
        vol=rng.uniform(0.1, 0.8, n),
    )
    prices = price(batch)
    result = implied_vol(batch, prices)
    solvable = result.status == IVStatus.OK
    # Deep in the money American options can sit on intrinsic value for any low vol; the
    # others must solve and reprice.
    assert solvable.mean() > 0.95
    repriced = price(batch.replace(vol=np.where(solvable, result.vol, batch.vol)))
    assert np.all(np.abs(repriced - prices)[solvable] <= 1e-9 * np.maximum(prices[solvable], 1))


def test_prices_shape_is_checked() -> None:
    batch = OptionBatch.of(is_call=True, spot=100.0, strike=100.0, expiry_years=1.0, vol=0.2)
    with pytest.raises(ValueError, match="prices"):
        implied_vol(batch, [1.0, 2.0])


@settings(max_examples=200, deadline=None)
@given(
    price_value=st.floats(allow_nan=True, allow_infinity=True),
    is_call=st.booleans(),
    k=st.floats(1.0, 500.0),
    t=st.floats(0.0, 10.0),
)
def test_any_price_gets_an_answer_or_a_reason(
    price_value: float, is_call: bool, k: float, t: float
) -> None:
    batch = OptionBatch.of(is_call=is_call, spot=100.0, strike=k, expiry_years=t, vol=0.2)
    result = implied_vol(batch, [price_value])
    assert result.status[0] != IVStatus.NO_CONVERGENCE
    assert (result.status[0] == IVStatus.OK) == np.isfinite(result.vol[0])
    assert result.reason(0)
