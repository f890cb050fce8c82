"""American prices against QuantLib's QdFpAmericanEngine (high-precision scheme) on random
options across the ranges of the issue: spot 100, strikes 50..150, T up to 5 years, vol
5%..100%, r in [-2%, 10%], q in [0, 10%], calls and puts.

QuantLib prices one option at a time at ~10 ms each in its high-precision scheme, so the
sample is 2,000 options (~25 s); the reference is computed once per test session.
"""

from __future__ import annotations

import numpy as np
import pytest
import QuantLib as ql

from marginflow.core.batch import OptionBatch
from marginflow.pricing.american import DEFAULT_SCHEME, HIGH_PRECISION_SCHEME, american_price

TODAY = ql.Date(15, ql.June, 2026)
N_OPTIONS = 2000


def random_american(n: int, seed: int) -> OptionBatch:
    rng = np.random.default_rng(seed)
    # Whole days, so QuantLib (Actual/365F, expiry = today + days) sees the same T.
    days = rng.integers(1, 5 * 365 + 1, n)
    return OptionBatch.of(
        is_call=rng.random(n) < 0.5,
        is_american=True,
        spot=100.0,
        strike=rng.uniform(50.0, 150.0, n),
        expiry_years=days / 365.0,
        rate=rng.uniform(-0.02, 0.10, n),
        dividend_yield=rng.uniform(0.0, 0.10, n),
        vol=rng.uniform(0.05, 1.0, n),
    )


def quantlib_prices(batch: OptionBatch) -> np.ndarray:
    ql.Settings.instance().evaluationDate = TODAY
    dc = ql.Actual365Fixed()
    spot, rate, div, vol = (
        ql.SimpleQuote(100.0),
        ql.SimpleQuote(0.0),
        ql.SimpleQuote(0.0),
        (ql.SimpleQuote(0.2)),
    )
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(spot),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(div), dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(rate), dc)),
        ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(TODAY, ql.NullCalendar(), ql.QuoteHandle(vol), dc)
        ),
    )
    engine = ql.QdFpAmericanEngine(process, ql.QdFpAmericanEngine.highPrecisionScheme())
    out = np.empty(len(batch))
    for i in range(len(batch)):
        spot.setValue(float(batch.spot[i]))
        rate.setValue(float(batch.rate[i]))
        div.setValue(float(batch.dividend_yield[i]))
        vol.setValue(float(batch.vol[i]))
        kind = ql.Option.Call if batch.is_call[i] else ql.Option.Put
        option = ql.VanillaOption(
            ql.PlainVanillaPayoff(kind, float(batch.strike[i])),
            ql.AmericanExercise(TODAY, TODAY + round(float(batch.expiry_years[i]) * 365)),
        )
        option.setPricingEngine(engine)
        out[i] = option.NPV()
    return out


@pytest.fixture(scope="module")
def sample() -> tuple[OptionBatch, np.ndarray]:
    batch = random_american(N_OPTIONS, seed=2026)
    return batch, quantlib_prices(batch)


def regions(batch: OptionBatch) -> dict[str, np.ndarray]:
    t, k, call = batch.expiry_years, batch.strike, batch.is_call
    itm = np.where(call, k < 95.0, k > 105.0)
    otm = np.where(call, k > 105.0, k < 95.0)
    return {
        "T <= 3m": t <= 0.25,
        "3m < T <= 1y": (t > 0.25) & (t <= 1.0),
        "1y < T <= 3y": (t > 1.0) & (t <= 3.0),
        "T > 3y": t > 3.0,
        "in the money": itm,
        "at the money": ~itm & ~otm,
        "out of the money": otm,
        "calls with q > r": call & (batch.dividend_yield > batch.rate),
        "negative rates": batch.rate < 0.0,
        "vol < 15%": batch.vol < 0.15,
    }


def error_table(err: np.ndarray, batch: OptionBatch) -> str:
    rows = [f"{'all':<18} n={err.size:5d} max {err.max():.2e} mean {err.mean():.2e}"]
    for name, mask in regions(batch).items():
        e = err[mask]
        rows.append(f"{name:<18} n={e.size:5d} max {e.max():.2e} mean {e.mean():.2e}")
    return "\n".join(rows)


def test_default_scheme_within_a_tenth_of_a_cent(sample: tuple[OptionBatch, np.ndarray]) -> None:
    # The accuracy target: 0.001 in price at spot 100. Measured on this sample: max
    # 2.3e-4, mean 5.6e-6 (and 4.2e-4 max on 20,000 options of the same distribution).
    batch, reference = sample
    err = np.abs(american_price(batch, scheme=DEFAULT_SCHEME) - reference)
    table = error_table(err, batch)
    assert err.max() < 1e-3, table
    for name, mask in regions(batch).items():
        assert err[mask].max() < 1e-3, f"{name}\n{table}"
    # The mean guards against a systematic drift hiding under the maximum (measured 5e-6).
    assert err.mean() < 2e-5, table


def test_high_precision_scheme_agrees_with_quantlib_high_precision(
    sample: tuple[OptionBatch, np.ndarray],
) -> None:
    # Two converged implementations of the same method with different discretisations
    # (angle-substituted Gauss-Legendre here, tanh-sinh there): measured mean 8e-8, max
    # 9.2e-6 on one long-dated in-the-money put where ours is stable to 3e-7 from 32 to 64
    # nodes, so the gap is QuantLib's. Tolerance 2e-5 and 2e-7.
    batch, reference = sample
    err = np.abs(american_price(batch, scheme=HIGH_PRECISION_SCHEME) - reference)
    assert err.max() < 2e-5, error_table(err, batch)
    assert err.mean() < 2e-7, error_table(err, batch)
