"""SIMM benchmark: marginflow against ORE on the same CRIF files, in the same run.

    python -m benchmarks.simm            # 10k, 100k and 1M rows
    python -m benchmarks.simm --quick    # 10k and 100k only

For each size a synthetic CRIF (every risk class and margin type, 10 portfolios, 1,000 names
per credit/equity class) is written once as CSV; then each side runs in its own subprocess,
so that its peak memory (``ru_maxrss``) is its own:

* marginflow: ``read_crif`` + ``simm_report`` (load, validate, SIMM of every portfolio and
  side), timed from after the imports; the first call includes loading Numba's compiled
  kernels from cache, the warm figure is a second call in the same process;
* ORE: its SIMM application on the same file (``OREApp.run``: CRIF load and SIMM),
  timed from after ``import ORE``.

Both report every (portfolio, side) total; the table shows the largest relative difference.
The machine is shared (2 cores, other jobs running): treat the times as indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = (10_000, 100_000, 1_000_000)


def _worker_ours(crif: str, version: str) -> dict[str, Any]:
    from marginflow.io.crif import read_crif
    from marginflow.simm.calibration import load_calibration
    from marginflow.simm.report import simm_report

    calibration = load_calibration(version)
    start = time.perf_counter()
    report = simm_report(read_crif(crif, calibration=calibration), calibration=calibration)
    first = time.perf_counter() - start
    start = time.perf_counter()
    report = simm_report(read_crif(crif, calibration=calibration), calibration=calibration)
    warm = time.perf_counter() - start
    totals = {f"{r.portfolio}|{r.side}": r.im for r in report.results}
    return {"seconds": first, "warm": warm, "totals": totals}


def _worker_ore(crif: str, version: str) -> dict[str, Any]:
    from tests.simm.ore_oracle import run_ore

    start = time.perf_counter()
    result = run_ore(crif, version=version)
    seconds = time.perf_counter() - start
    totals = {f"{p}|{side.lower()}": im for (p, side), (_, im) in result.totals.items()}
    return {"seconds": seconds, "totals": totals}


def _run_worker(kind: str, crif: Path, version: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.simm",
            "--worker",
            kind,
            str(crif),
            "--version",
            version,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} worker failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _max_rel(a: dict[str, float], b: dict[str, float]) -> float:
    keys = set(a) & set(b)
    if not keys or set(a) != set(b):
        return float("nan")
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1.0) for k in keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SIMM: marginflow vs ORE on the same CRIF")
    parser.add_argument("--quick", action="store_true", help="skip the 1,000,000-row file")
    parser.add_argument("--sizes", help="comma-separated row counts (overrides --quick)")
    parser.add_argument("--version", default="2.6", help="SIMM version (default 2.6)")
    parser.add_argument("--no-ore", action="store_true", help="time marginflow only")
    parser.add_argument("--worker", choices=("ours", "ore"), help=argparse.SUPPRESS)
    parser.add_argument("crif", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = (
            _worker_ours(args.crif, args.version)
            if args.worker == "ours"
            else _worker_ore(args.crif, args.version)
        )
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps(result))
        return 0

    import pyarrow.csv as pv

    from marginflow.sim.synthetic_crif import CrifSpec, generate_table

    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else list(SIZES[:2] if args.quick else SIZES)
    )
    print(f"SIMM {args.version}, 10-day, USD; {os.cpu_count()} CPUs (shared machine: indicative)")
    header = (
        f"{'rows':>10} {'ours s':>8} {'warm s':>8} {'ORE s':>8} {'ORE/ours':>9}"
        f" {'ours MB':>8} {'ORE MB':>8} {'max rel diff':>13}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="simm-bench-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"crif_{n}.csv"
            table = generate_table(
                CrifSpec(rows=n, portfolios=10, trades=20_000, names=1_000, seed=1)
            )
            pv.write_csv(table, path)
            ours = _run_worker("ours", path, args.version)
            ore = None if args.no_ore else _run_worker("ore", path, args.version)
            ratio = f"{ore['seconds'] / ours['seconds']:9.1f}" if ore else f"{'-':>9}"
            ore_s = f"{ore['seconds']:8.2f}" if ore else f"{'-':>8}"
            ore_mb = f"{ore['peak_mb']:8.0f}" if ore else f"{'-':>8}"
            diff = f"{_max_rel(ours['totals'], ore['totals']):13.1e}" if ore else f"{'-':>13}"
            print(
                f"{n:>10,} {ours['seconds']:8.2f} {ours['warm']:8.2f} {ore_s} {ratio}"
                f" {ours['peak_mb']:8.0f} {ore_mb} {diff}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
