"""Pricing core against QuantLib-Python, in the same run.

For each workload: our options per second on the full vectorised batch, QuantLib's on a
sample priced one by one (the way QuantLib is used), the ratio, and the largest absolute
price difference on the sample. QuantLib's American reference is ``QdFpAmericanEngine``
with its accurate scheme for speed and its high-precision scheme for accuracy.

    python -m benchmarks.pricing [--n 1000000] [--sample 2000] [--json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import QuantLib as ql

from benchmarks.common import best_of, print_json, print_table
from marginflow.core.batch import OptionBatch
from marginflow.pricing.american import american_price, american_price_spots
from marginflow.pricing.black_scholes import european_price

TODAY = ql.Date(15, ql.June, 2026)


def random_options(n: int, seed: int, american: bool) -> OptionBatch:
    rng = np.random.default_rng(seed)
    days = rng.integers(7, 365 * 3, n)
    return OptionBatch.of(
        is_call=rng.random(n) < 0.5,
        is_american=american,
        spot=100.0,
        strike=100.0 * np.exp(rng.uniform(-0.4, 0.4, n)),
        expiry_years=days / 365.0,
        rate=rng.uniform(0.0, 0.08, n),
        dividend_yield=rng.uniform(0.0, 0.06, n),
        vol=rng.uniform(0.1, 0.6, n),
    )


class QuantLibPricer:
    """One QuantLib option whose quotes are reset per row, like a desk pricing loop."""

    def __init__(self, engine: str) -> None:
        ql.Settings.instance().evaluationDate = TODAY
        dc = ql.Actual365Fixed()
        self.spot = ql.SimpleQuote(100.0)
        self.r = ql.SimpleQuote(0.0)
        self.q = ql.SimpleQuote(0.0)
        self.vol = ql.SimpleQuote(0.2)
        self.process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(self.spot),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(self.q), dc)),
            ql.YieldTermStructureHandle(ql.FlatForward(TODAY, ql.QuoteHandle(self.r), dc)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(TODAY, ql.NullCalendar(), ql.QuoteHandle(self.vol), dc)
            ),
        )
        if engine == "european":
            self.engine = ql.AnalyticEuropeanEngine(self.process)
        elif engine == "american-accurate":
            self.engine = ql.QdFpAmericanEngine(
                self.process, ql.QdFpAmericanEngine.accurateScheme()
            )
        else:
            self.engine = ql.QdFpAmericanEngine(
                self.process, ql.QdFpAmericanEngine.highPrecisionScheme()
            )
        self.american = engine != "european"

    def price(self, b: OptionBatch, i: int) -> float:
        self.spot.setValue(float(b.spot[i]))
        self.r.setValue(float(b.rate[i]))
        self.q.setValue(float(b.dividend_yield[i]))
        self.vol.setValue(float(b.vol[i]))
        date = TODAY + round(float(b.expiry_years[i]) * 365)
        exercise = ql.AmericanExercise(TODAY, date) if self.american else ql.EuropeanExercise(date)
        kind = ql.Option.Call if b.is_call[i] else ql.Option.Put
        opt = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(b.strike[i])), exercise)
        opt.setPricingEngine(self.engine)
        return float(opt.NPV())

    def rate(self, b: OptionBatch) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        prices = np.array([self.price(b, i) for i in range(len(b))])
        return len(b) / (time.perf_counter() - t0), prices


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000, help="options in the vectorised batch")
    ap.add_argument("--sample", type=int, default=2000, help="options QuantLib prices one by one")
    ap.add_argument("--spots", type=int, default=10_000, help="spot scenarios for one option")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []

    eu = random_options(args.n, 1, american=False)
    ours = args.n / best_of(lambda: european_price(eu))
    ql_rate, ql_prices = QuantLibPricer("european").rate(eu.take(slice(0, args.sample)))
    err = np.max(np.abs(european_price(eu.take(slice(0, args.sample))) - ql_prices))
    rows.append(["European BSM", args.n, ours, ql_rate, ours / ql_rate, err])

    am = random_options(args.n, 2, american=True)
    ours = args.n / best_of(lambda: american_price(am), repeat=2)
    sample = am.take(slice(0, args.sample))
    ql_rate, _ = QuantLibPricer("american-accurate").rate(sample)
    _, ql_hp = QuantLibPricer("american-high").rate(sample)
    err = np.max(np.abs(american_price(sample) - ql_hp))
    rows.append(["American ALO (vs QdFp accurate)", args.n, ours, ql_rate, ours / ql_rate, err])

    spots = 100.0 * np.exp(np.random.default_rng(3).normal(0.0, 0.05, args.spots))
    # A whole number of days, so QuantLib (dates, ACT/365) sees the same expiry as we do.
    one = dict(strike=100.0, expiry_years=182 / 365, rate=0.04, dividend_yield=0.01, vol=0.3)

    def reval() -> np.ndarray:
        return american_price_spots(is_call=False, spots=spots, **one)

    ours = args.spots / best_of(reval)
    k = min(args.sample, args.spots)
    spot_batch = OptionBatch.of(is_call=False, is_american=True, spot=spots[:k], **one)
    ql_rate, _ = QuantLibPricer("american-accurate").rate(spot_batch)
    _, ql_hp = QuantLibPricer("american-high").rate(spot_batch)
    err = np.max(np.abs(reval()[:k] - ql_hp))
    rows.append(["American, 1 option x spots", args.spots, ours, ql_rate, ours / ql_rate, err])

    columns = ["workload", "n", "ours /s", "QuantLib /s", "ratio", "max |diff| vs QL"]
    if args.json:
        print_json([dict(zip(columns, r, strict=True)) for r in rows])
    else:
        print_table("Pricing: marginflow vs QuantLib-Python (same run)", columns, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
