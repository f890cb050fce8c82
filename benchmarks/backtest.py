"""Margin back-test at scale: one year of daily margins of a 1,000-account sample of the
large margin book against their realised P&L (issue 13's goal: under 5 minutes).

``python -m benchmarks.backtest`` generates the book of ``benchmarks/margin.py`` (10,000
accounts, 2,000 underlyings, 100,000 option series, 1,000,000 positions), samples 1,000
accounts (``marginflow backtest --accounts 1000``: the same sample), and back-tests them
over the last 250 business days of the history: ES 99% under 1,250-day filtered historical
scenarios (the stressed period added), 2-day horizon, static positions, the statistics of
every account, member and the firm. Stages timed: scenario generation, revaluation (premium
grids and kernel), the rest of the margin (aggregation, tails, concentration), the pricing
of the realised P&L, the statistics. The ratio is against the 300 s goal. ``--quick``: the
quick margin book (a tenth of each) and 100 accounts over 50 days. ``--days N`` and
``--accounts N`` change the window and the sample; ``--model span`` etc. add models;
``--workers N`` splits the days across N processes (stage seconds are then summed over
them; shares are of the stages' summed time).

Numba compilation is excluded (a warm-up back-test of a small book first). The machine is
shared: figures taken while others run are noisy.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.common import peak_rss_mb, print_table
from benchmarks.margin import FULL, QUICK, benchmark_book
from marginflow.backtest.coverage import coverage_table
from marginflow.backtest.run import (
    choose_window,
    columns_of,
    run_backtest,
    sample_accounts,
    static_path,
)
from marginflow.engine.settings import MarginSettings
from marginflow.sim.synthetic_book import generate_book

GOAL_SECONDS = 300.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the quick book, 100 accounts, 50 days")
    ap.add_argument("--days", type=int, default=None)
    ap.add_argument("--accounts", type=int, default=None)
    ap.add_argument("--model", action="append", default=None, help="es, span, pm (repeatable)")
    ap.add_argument(
        "--workers", type=int, default=1, help="processes splitting the days (run_backtest)"
    )
    args = ap.parse_args(argv)
    size = QUICK if args.quick else FULL
    days = args.days or (50 if args.quick else 250)
    n_accounts = args.accounts or (100 if args.quick else 1_000)
    settings = MarginSettings()
    columns = columns_of(args.model or ["es"], [], settings.confidence)

    t0 = time.perf_counter()
    warm = generate_book(accounts=20, underlyings=5, series=100, positions=200).book
    run_backtest(
        warm,
        window=choose_window(warm, settings, days=3),
        settings=settings,
        columns=columns,
        paths=[static_path(warm)],
    )
    warmup = time.perf_counter() - t0

    t0 = time.perf_counter()
    book = benchmark_book(size).book
    generate = time.perf_counter() - t0
    sample = sample_accounts(book, n_accounts)
    window = choose_window(sample, settings, days=days)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = run_backtest(
        sample,
        window=window,
        settings=settings,
        columns=columns,
        paths=[static_path(sample)],
        workers=args.workers,
    )
    run = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = coverage_table(result)
    stats = time.perf_counter() - t0
    total = run + stats

    t = result.timings
    reval = t.get("revaluation", 0.0)
    stages = [
        ("scenario generation (FHS from the history up to each day)", t.get("scenarios", 0.0)),
        (
            "revaluation: American premium grids (rebuilt daily: T moves)",
            t.get("premium grids", 0.0),
        ),
        ("revaluation: kernel (every held series × scenario)", t.get("kernel", 0.0)),
        ("margin: aggregation, tails, concentration", t.get("margin", 0.0)),
        ("grid models", t.get("grid models", 0.0)),
        ("realised P&L: pricing every held series once a day", t.get("pricing", 0.0)),
        ("realised P&L: positions × value changes", t.get("realised P&L", 0.0) - t["pricing"]),
        ("statistics (every account, member, firm)", stats),
    ]
    work = sum(s for _, s in stages)  # with workers, their stages overlap in time
    print_table(
        f"back-test: {len(result.accounts):,} accounts, {result.days.size} days "
        f"({result.days[0]}..{result.days[-1]}), {result.instruments:,} series held, "
        f"{result.scenarios:,} scenarios/day, {', '.join(c.label for c in columns)}, "
        f"{result.horizon}-day horizon"
        + (f"; {args.workers} workers, stage seconds summed over them" if args.workers > 1 else ""),
        ["stage", "seconds", "share"],
        [(name, s, f"{s / work:.1%}") for name, s in stages if s > 0]
        + [("total (run + statistics, wall)", total, "")],
    )
    firm = [r for r in rows if r.level == "firm"]
    print_table(
        "summary",
        ["figure", "value"],
        [
            ("Numba warm-up (excluded)", warmup),
            ("book generation (excluded)", generate),
            ("per day (s)", run / result.days.size),
            ("option prices per day (series × scenarios)", result.instruments * result.scenarios),
            ("share of the stages' time in revaluation", f"{reval / work:.1%}"),
            ("goal (s)", GOAL_SECONDS),
            ("total / goal", total / GOAL_SECONDS),
            ("projected 250 days / goal", total / result.days.size * 250 / GOAL_SECONDS),
            ("peak RSS (MiB; the largest worker's with workers)", peak_rss_mb(children=True)),
            (
                "load average (1 min) at the run's start / end",
                f"{load:.1f} / {os.getloadavg()[0]:.1f}",
            ),
        ]
        + [
            (
                f"firm {r.column.label}: breaches / days, zone",
                f"{r.stats.breaches}/{r.stats.n} {r.stats.zone}",
            )
            for r in firm
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
