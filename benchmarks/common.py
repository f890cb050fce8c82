"""Shared benchmark helpers: timing, peak memory, and a printed table."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from marginflow.sim.synthetic_book import SyntheticBook, generate_book


def warm_book() -> SyntheticBook:
    """A small book whose options include American ones (a book of three underlyings has
    none: the first names are European index options), so that a warm-up on it compiles
    the premium-grid kernels too. On a fresh machine (no Numba cache on disk) a warm-up
    without them left ~30 s of compilation inside the first timed grid stage."""
    return generate_book(members=2, accounts=5, underlyings=12, series=120, positions=200, seed=0)


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, in seconds (first call excluded as warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_rss_mb(*, children: bool = False) -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB); with
    ``children``, the larger of it and its largest finished child's."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if children:
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return peak / 1024.0


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, justify="left" if c == columns[0] else "right")
    for r in rows:
        table.add_row(*(_fmt(x) for x in r))
    Console(width=160).print(table)


def print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=float))


def _fmt(x: Any) -> str:
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    if isinstance(x, float):
        if x == 0 or 1e-3 <= abs(x) < 1e7:
            return f"{x:,.4g}" if abs(x) < 100 else f"{x:,.0f}"
        return f"{x:.3e}"
    return str(x)
