"""European BSM and Black-76 against QuantLib and published values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.batch import OptionBatch
from marginflow.pricing.black_scholes import black76_price, european_price
from marginflow.pricing.greeks import european_greeks

TODAY = ql.Date(15, ql.June, 2026)


def random_european(n: int, seed: int) -> OptionBatch:
    """Options across the ranges the issue names: deep ITM/OTM, negative rates, q > r."""
    rng = np.random.default_rng(seed)
    days = rng.integers(1, 365 * 5, n)
    return OptionBatch.of(
        is_call=rng.random(n) < 0.5,
        spot=100.0,
        strike=100.0 * np.exp(rng.uniform(-0.7, 0.7, n)),
        expiry_years=days / 365.0,
        rate=rng.uniform(-0.02, 0.10, n),
        dividend_yield=rng.uniform(0.0, 0.10, n),
        vol=rng.uniform(0.02, 1.0, n),
    )


def quantlib_european(batch: OptionBatch, i: int) -> ql.VanillaOption:
    ql.Settings.instance().evaluationDate = TODAY
    dc = ql.Actual365Fixed()
    days = round(batch.expiry_years[i] * 365)
    kind = ql.Option.Call if batch.is_call[i] else ql.Option.Put
    option = ql.VanillaOption(
        ql.PlainVanillaPayoff(kind, float(batch.strike[i])),
        ql.EuropeanExercise(TODAY + days),
    )
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(float(batch.spot[i]))),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, float(batch.dividend_yield[i]), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, float(batch.rate[i]), dc)),
        ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(TODAY, ql.NullCalendar(), float(batch.vol[i]), dc)
        ),
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return option


def test_prices_and_greeks_match_quantlib_on_random_options() -> None:
    # Both sides evaluate the same closed form; differences are floating-point rounding and
    # the normal CDF implementation (~1e-15 relative). 1e-9 absolute on prices up to ~200
    # and 1e-7 relative on Greeks leave room for that and nothing else.
    batch = random_european(3000, seed=7)
    g = european_greeks(batch)
    assert np.allclose(g.price, european_price(batch), rtol=0, atol=1e-13)
    for i in range(len(batch)):
        opt = quantlib_european(batch, i)
        assert g.price[i] == pytest.approx(opt.NPV(), abs=1e-9)
        assert g.delta[i] == pytest.approx(opt.delta(), rel=1e-7, abs=1e-10)
        assert g.gamma[i] == pytest.approx(opt.gamma(), rel=1e-7, abs=1e-10)
        assert g.vega[i] == pytest.approx(opt.vega(), rel=1e-7, abs=1e-8)
        assert g.theta[i] == pytest.approx(opt.theta(), rel=1e-7, abs=1e-8)
        assert g.rho[i] == pytest.approx(opt.rho(), rel=1e-7, abs=1e-8)


@pytest.mark.parametrize(
    ("is_call", "s", "k", "t", "r", "q", "vol", "expected"),
    [
        # Hull / Haug (2007) p. 3: call S=60, K=65, T=0.25, r=0.08, vol=0.30 -> 2.1334
        (True, 60.0, 65.0, 0.25, 0.08, 0.0, 0.30, 2.1334),
        # Haug (2007) p. 8, generalised BSM put with cost of carry b = r - q = 0.05 -> 4.0870
        (False, 75.0, 70.0, 0.5, 0.10, 0.05, 0.35, 4.0870),
    ],
)
def test_published_european_values(
    is_call: bool, s: float, k: float, t: float, r: float, q: float, vol: float, expected: float
) -> None:
    # Published to four decimals, so half a unit in the last place.
    batch = OptionBatch.of(
        is_call=is_call, spot=s, strike=k, expiry_years=t, rate=r, dividend_yield=q, vol=vol
    )
    assert european_price(batch)[0] == pytest.approx(expected, abs=5e-5)


def test_black76_equals_quantlib_black_formula() -> None:
    rng = np.random.default_rng(3)
    n = 500
    f, k = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    t, r, v = rng.uniform(0.01, 3, n), rng.uniform(-0.01, 0.08, n), rng.uniform(0.05, 0.9, n)
    calls = rng.random(n) < 0.5
    ours = black76_price(is_call=calls, forward=f, strike=k, expiry_years=t, rate=r, vol=v)
    for i in range(n):
        kind = ql.Option.Call if calls[i] else ql.Option.Put
        ref = ql.blackFormula(kind, k[i], f[i], v[i] * math.sqrt(t[i]), math.exp(-r[i] * t[i]))
        assert ours[i] == pytest.approx(ref, abs=1e-10)


def test_expiry_today_is_intrinsic_and_zero_vol_is_discounted_forward_intrinsic() -> None:
    batch = OptionBatch.of(
        is_call=[True, False, True, False],
        spot=100.0,
        strike=[90.0, 90.0, 110.0, 110.0],
        expiry_years=[0.0, 0.0, 1.0, 1.0],
        rate=0.05,
        dividend_yield=0.02,
        vol=[0.3, 0.3, 0.0, 0.0],
    )
    fwd = 100 * math.exp(-0.02) - 110 * math.exp(-0.05)
    expected = [10.0, 0.0, max(fwd, 0.0), max(-fwd, 0.0)]
    assert european_price(batch) == pytest.approx(expected, abs=1e-12)
    g = european_greeks(batch)
    assert g.delta[:2] == pytest.approx([1.0, 0.0])
    assert np.all(g.gamma == 0.0)
    assert np.all(g.vega == 0.0)


def test_deep_out_of_the_money_keeps_relative_precision() -> None:
    # erfc-based N(x) keeps tiny prices positive and accurate; a 1 - N(x) form returns 0.
    batch = OptionBatch.of(is_call=True, spot=100.0, strike=400.0, expiry_years=0.1, vol=0.2)
    opt = quantlib_european(batch, 0)
    assert 0 < european_price(batch)[0] == pytest.approx(opt.NPV(), rel=1e-6)


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    s=st.floats(1.0, 1000.0),
    k=st.floats(1.0, 1000.0),
    t=st.floats(0.0, 10.0),
    r=st.floats(-0.05, 0.2),
    q=st.floats(0.0, 0.2),
    vol=st.floats(0.0, 3.0),
)
def test_put_call_parity_and_no_arbitrage_bounds(
    s: float, k: float, t: float, r: float, q: float, vol: float
) -> None:
    batch = OptionBatch.of(
        is_call=[True, False], spot=s, strike=k, expiry_years=t, rate=r, dividend_yield=q, vol=vol
    )
    call, put = european_price(batch)
    fs, fk = s * math.exp(-q * t), k * math.exp(-r * t)
    scale = 1e-12 * (fs + fk) + 1e-14
    assert call - put == pytest.approx(fs - fk, abs=1e-10 * (fs + fk))
    assert max(fs - fk, 0.0) - scale <= call <= fs + scale
    assert max(fk - fs, 0.0) - scale <= put <= fk + scale
