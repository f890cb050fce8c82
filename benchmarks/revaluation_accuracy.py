"""American options in the P&L matrix against QuantLib high precision, on the margin
benchmark's book and scenarios.

``python -m benchmarks.revaluation_accuracy`` builds the book and the Student-t copula Monte
Carlo scenarios of ``benchmarks.margin --quick`` (the same seed), samples American option
rows and scenarios, and compares each scenario P&L of the engine (premium grids, the
default; and ``method="exact"``) with QuantLib's ``QdFpAmericanEngine`` (high-precision
scheme) priced at today's and the scenario's market. Errors are per unit of underlying at
spot 100 (the P&L error over the contract's notional, times 100), against the pricing
core's bound of 1e-3; the pricing core's own American pricer, priced per scenario, is the
peer measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks.common import print_table
from benchmarks.margin import QUICK
from benchmarks.pricing import QuantLibPricer
from marginflow.core.batch import OptionBatch
from marginflow.core.book import InstrumentKind, Instruments, Market
from marginflow.engine.revaluation import METHODS, RevaluationSettings, revalue
from marginflow.scenarios.montecarlo import student_t_copula
from marginflow.sim.synthetic_book import generate_book

BOUND = 1e-3  # per unit of underlying at spot 100


def quantlib_pnl(
    inst: Instruments,
    market: Market,
    rows: np.ndarray,
    spot: np.ndarray,
    vol: np.ndarray,
    vol_floor: float = 0.01,
) -> np.ndarray:
    """P&L per contract of ``rows`` under the scenario columns given, QuantLib HP."""
    pricer = QuantLibPricer("american-hp")
    out = np.empty((rows.size, spot.shape[1]))
    for k, i in enumerate(rows):
        u = int(inst.underlying[i])
        strike = float(inst.strike[i])
        s = market.spot[u] * np.r_[1.0, 1.0 + spot[u].astype(np.float64)]
        vm = np.r_[1.0, 1.0 + vol[u].astype(np.float64)]
        smile = market.atm_vol[u] + market.skew[u] * np.log(strike / s)
        batch = OptionBatch.of(
            is_call=bool(inst.kind[i] == InstrumentKind.CALL),
            is_american=True,
            spot=s,
            strike=strike,
            expiry_years=inst.expiry_years[i],
            rate=market.rate[u],
            dividend_yield=market.dividend_yield[u],
            vol=vm * np.maximum(vol_floor, smile),
        )
        p = np.array([pricer.price(batch, j) for j in range(len(batch))])
        out[k] = (p[1:] - p[0]) * inst.multiplier[i]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.revaluation_accuracy")
    ap.add_argument("--rows", type=int, default=60, help="American rows sampled")
    ap.add_argument("--scenarios-sampled", type=int, default=200, help="scenarios compared")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    size = QUICK
    sb = generate_book(
        members=size["accounts"] // 100,
        accounts=size["accounts"],
        underlyings=size["underlyings"],
        series=size["series"],
        positions=size["positions"],
        seed=args.seed,
    )
    book = sb.book
    scen = student_t_copula(
        sb.universe.history, sb.universe.factors, n_scenarios=size["scenarios"], seed=args.seed
    )
    spot, vol = scen.aligned(book.underlyings.ids)
    inst, market = book.instruments, book.market
    rng = np.random.default_rng(args.seed)
    american = np.flatnonzero(inst.is_american & inst.is_option & (inst.expiry_years > 0))
    rows = np.sort(rng.choice(american, min(args.rows, american.size), replace=False))
    cols = np.sort(rng.choice(spot.shape[1], min(args.scenarios_sampled, spot.shape[1]), False))
    # Revalued under all scenarios (the grids span the whole set, as in a margin run); the
    # sampled columns are compared.
    results: dict[str, Any] = {}
    for method in METHODS:
        t0 = time.perf_counter()
        pnl = revalue(
            instruments=inst,
            market=market,
            spot_shock=spot,
            vol_shock=vol,
            rows=rows,
            settings=RevaluationSettings(method=method),
        )
        results[method] = (pnl[:, cols].astype(np.float64), time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref = quantlib_pnl(
        inst, market, rows, np.ascontiguousarray(spot[:, cols]), np.ascontiguousarray(vol[:, cols])
    )
    t_ql = time.perf_counter() - t0
    per_100 = 100.0 / (market.spot[inst.underlying[rows]] * inst.multiplier[rows])[:, None]
    table = []
    for method, label in (("grid", "engine, premium grids (default)"),
                          ("exact", "engine, exact (ALO per scenario)")):  # fmt: skip
        pnl, seconds = results[method]
        err = np.abs(pnl - ref) * per_100
        table.append(
            (label, float(err.max()), float(err.mean()), float(err.max()) / BOUND,
             f"{seconds:.1f} s for {rows.size} rows × {spot.shape[1]:,} scenarios")
        )  # fmt: skip
    print(
        f"{rows.size} American rows × {cols.size} scenarios of the quick margin book "
        f"({spot.shape[1]:,} Student-t MC scenarios, seed {args.seed}); QuantLib HP "
        f"reference: {t_ql:.1f} s"
    )
    print_table(
        "scenario P&L error against QuantLib QdFp high precision, per unit at spot 100",
        ("revaluation", "worst", "mean", "worst / 1e-3 bound", "time"),
        table,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
