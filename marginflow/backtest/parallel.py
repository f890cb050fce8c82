"""A back-test's window split across worker processes: each a contiguous block of days
with its own engine, the blocks' series concatenated in day order.

Days are independent once each has its own scenarios and market: a block's first day
builds its engine afresh, which margins as a rolled one does (the engine equals a full
recompute of its book to the bit), so the series are those of one process. What a worker
gains is what the Numba kernels' own threads leave idle: the Python and NumPy work around
them (grid bookkeeping, scenario sets, tails, the realised P&L's pricing) runs on one core
at a time in one process. Each worker takes its share of the Numba threads (one each for
two workers on two cores), and the book, copied to every worker, costs its memory again
(an engine per worker: ~2 GiB each for the issue-13 benchmark's 1,000 accounts).

Workers are started with ``spawn``: a forked child of a process whose OpenMP threads have
run can hang in them.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from marginflow.core.memory import keep_freed_memory

if TYPE_CHECKING:
    from marginflow.backtest.run import BacktestResult, PositionPath, Progress, Window

_progress: Any = None  # the worker's queue to the parent


def run_in_workers(
    run: Any,
    *,
    window: Window,
    paths: list[PositionPath],
    workers: int,
    progress: Progress | None,
    **kw: Any,
) -> BacktestResult:
    """``run(window=..., paths=..., **kw)`` (the back-test itself) on ``workers`` blocks
    of the window's days at once; their results merged in day order. A worker's refusal is
    raised here as it was there."""
    import numba

    n_days = window.rows.size
    blocks = [b for b in np.array_split(np.arange(n_days), workers) if b.size]
    threads = max(1, numba.get_num_threads() // len(blocks))
    ctx = mp.get_context("spawn")
    done = ctx.Queue()
    with ProcessPoolExecutor(
        len(blocks), mp_context=ctx, initializer=_start_worker, initargs=(done, threads)
    ) as pool:
        futures: list[Future[BacktestResult]] = [
            pool.submit(
                _run_block,
                run,
                window=replace(window, rows=window.rows[b]),
                paths=[_block_path(p, b) for p in paths],
                **kw,
            )
            for b in blocks
        ]
        finished = 0
        while not all(f.done() for f in futures):
            try:
                done.get(timeout=0.5)
            except queue.Empty:
                continue
            finished += 1
            if progress is not None:
                progress(finished, n_days)
        parts = [f.result() for f in futures]  # raises a worker's error
    return merge(parts)


def _start_worker(done: Any, threads: int) -> None:
    import numba

    global _progress
    _progress = done
    keep_freed_memory()  # as the parent: each day frees and allocates the same arrays
    numba.set_num_threads(threads)


def _run_block(run: Any, **kw: Any) -> BacktestResult:
    result: BacktestResult = run(progress=lambda done, total: _progress.put(done), **kw)
    return result


def _block_path(path: PositionPath, block: np.ndarray) -> PositionPath:
    if len(path.matrices) == 1:
        return path
    return replace(path, matrices=tuple(path.matrices[k] for k in block.tolist()))


def merge(parts: list[BacktestResult]) -> BacktestResult:
    """Consecutive blocks' results as one: series concatenated by day, stage timings summed
    (seconds of work, which overlap in time), notes without repeats, the last block's
    scenario count."""
    from marginflow.backtest.run import ModeResult

    first = parts[0]
    modes = tuple(
        ModeResult(
            m.mode,
            np.concatenate([p.modes[i].pnl for p in parts]),
            {k: np.concatenate([p.modes[i].margin[k] for p in parts]) for k in m.margin},
            np.concatenate([p.modes[i].held for p in parts]),
        )
        for i, m in enumerate(first.modes)
    )
    timings: dict[str, float] = {}
    for p in parts:
        for stage, seconds in p.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    return replace(
        first,
        days=np.concatenate([p.days for p in parts]),
        ends=np.concatenate([p.ends for p in parts]),
        modes=modes,
        timings=timings,
        notes=list(dict.fromkeys(n for p in parts for n in p.notes)),
        scenarios=parts[-1].scenarios,
    )
