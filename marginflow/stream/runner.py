"""Run one worker process: ``python -m marginflow.stream.runner ROLE --log URL --state DIR``.

This is what ``marginflow cluster up`` starts once per worker, and what the crash tests
kill. ``--chaos P`` makes the worker SIGKILL itself with probability ``P`` at each point of
the commit protocol (see :data:`marginflow.stream.worker.PHASES`), to test recovery from a
crash at every step.

``kill -USR1 PID`` makes a running worker print every thread's Python stack to its log
(standard error) and carry on: what a worker that seems stuck is doing, without stopping it.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numba
import numpy as np

from marginflow.core.errors import ConfigurationError, MarginflowError
from marginflow.core.memory import keep_freed_memory
from marginflow.engine.settings import MarginSettings
from marginflow.engine.state import MarginEngine
from marginflow.io.source import read_json
from marginflow.store import Database
from marginflow.stream.log import Log, LogUnavailableError, open_log
from marginflow.stream.log.health import Backoff, health_of, say
from marginflow.stream.pipeline import ROLES, processor_for
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.simm_worker import SimmSettings, newest_version
from marginflow.stream.snapshots import FileSnapshotStore
from marginflow.stream.topics import Topology
from marginflow.stream.worker import MicroBatchWorker, Processor, WorkerSettings


def _engine(args: argparse.Namespace) -> tuple[MarginEngine, str]:
    """The calculator's engine for ``--book`` under ``--settings``; the book's rejected rows
    are named in this worker's log (``cluster up`` and ``demo`` name them to the user); and
    the id of the start-of-day load, which every margin names."""
    if args.book is None:
        raise SystemExit("risk-calculator: --book DIR is required (a book folder)")
    try:
        settings = (
            MarginSettings.from_json(read_json(args.settings))
            if args.settings
            else MarginSettings()
        )
        setup, failures = MarginSetup.from_folder(args.book, settings)
        for f in failures:
            print(f"book: {f}", flush=True)
        return setup.engine(), setup.load
    except MarginflowError as exc:
        raise SystemExit(f"risk-calculator: {exc}") from None


def _simm_settings(args: argparse.Namespace) -> SimmSettings:
    try:
        return SimmSettings(
            version=args.simm_version or newest_version(),
            mpor_days=args.mpor,
            currency=args.simm_currency,
        )
    except ConfigurationError as exc:
        raise SystemExit(f"simm: {exc}") from None


def _processor(role: str, topology: Topology, args: argparse.Namespace) -> Processor:
    engine, load = _engine(args) if role == "risk-calculator" else (None, "")
    db = _database(args) if role == "sink" else None
    simm = _simm_settings(args) if role == "simm" else None
    return processor_for(role, topology, engine=engine, db=db, simm=simm, book_load=load)


def _database(args: argparse.Namespace) -> Database:
    # No default: a default file would be relative to wherever the worker happens to start,
    # and a sink restarted by hand there would write results nobody reads.
    if not args.db:
        raise SystemExit(
            "sink: --db is required (sqlite:///PATH or postgresql://...); a cluster's "
            "database is shown by marginflow cluster status --dir D"
        )
    try:
        return Database(args.db, prefix=args.db_prefix)
    except MarginflowError as exc:
        raise SystemExit(f"sink: {exc}") from None


def _phase_hook(probability: float, seed: int | None) -> Callable[[str], None]:
    """Announce each assignment on stdout (a supervisor waits for it) and, with
    ``probability`` > 0, SIGKILL this process at random points of the commit protocol."""
    rng = random.Random(seed)  # noqa: S311 (fault injection, not a secret)

    def on_phase(phase: str) -> None:
        if phase == "assigned":
            print("assigned", flush=True)
        if probability > 0 and rng.random() < probability:
            os.kill(os.getpid(), signal.SIGKILL)

    return on_phase


def _partitions(text: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(
            f"--assign must be comma-separated partition numbers, got {text!r}"
        ) from None
    if not parts or min(parts) < 0:
        raise SystemExit(f"--assign must name partitions >= 0, got {text!r}")
    return parts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m marginflow.stream.runner")
    p.add_argument("role", choices=ROLES)
    p.add_argument("--log", required=True, help="embedded:///dir or kafka://host:port")
    p.add_argument("--state", required=True, type=Path, help="snapshot directory")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--prefix", default="mf.")
    p.add_argument("--group", default=None, help="consumer group (default: PREFIX + ROLE)")
    p.add_argument("--max-batch", type=int, default=10_000)
    p.add_argument("--max-wait", type=float, default=0.02)
    p.add_argument("--snapshot-interval", type=float, default=1.0)
    p.add_argument("--idle-exit", type=float, default=None, help="exit after S idle seconds")
    p.add_argument(
        "--assign", default=None, help="static partitions, e.g. 0,1 (default: group rebalancing)"
    )
    p.add_argument(
        "--gate",
        type=Path,
        default=None,
        help="join and build state, print 'ready', then wait for this file to exist before "
        "consuming (benchmarks release all workers at once)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for this worker's compiled kernels (default: every core; `cluster up` "
        "gives each calculator its share of the cores)",
    )
    p.add_argument("--chaos", type=float, default=0.0, help="SIGKILL probability per phase")
    p.add_argument("--seed", type=int, default=None)
    book = p.add_argument_group("book (risk calculator; every calculator must agree)")
    book.add_argument(
        "--book", type=Path, default=None, help="book folder (reference data, market, history)"
    )
    book.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="margin settings, a JSON file (default: the defaults of marginflow margin)",
    )
    simm = p.add_argument_group("SIMM worker")
    simm.add_argument(
        "--simm-version",
        default=None,
        help="SIMM calibration by ISDA name (default: the newest shipped, "
        f"{newest_version()}); a submission may name its own",
    )
    simm.add_argument(
        "--mpor", type=int, default=10, choices=(10, 1), help="margin period of risk, days"
    )
    simm.add_argument("--simm-currency", default="USD", help="calculation currency of results")
    sink = p.add_argument_group("sink")
    sink.add_argument(
        "--db",
        default=None,
        help="sqlite:///PATH or postgresql:// URL, required: a cluster's is in "
        "`marginflow cluster status --dir D`",
    )
    sink.add_argument("--db-prefix", default="mf_", help="table name prefix")
    return p


def _percentiles(values: Sequence[float], qs: tuple[float, ...]) -> list[float]:
    if not values:
        return []
    return [round(float(x), 2) for x in np.percentile(np.asarray(values), qs)]


def _create_topics(log: Log, topology: Topology) -> None:
    """Create the topics, waiting (with backoff) for a broker that is not there yet: a
    worker restarted during an outage waits for it instead of crashing again."""
    backoff = Backoff()
    while True:
        try:
            log.create_topics(topology.all())
            return
        except LogUnavailableError:
            time.sleep(backoff.next())


def main(argv: list[str] | None = None) -> int:
    # A worker shares the machine's cores with the other stages and the log. OpenMP's
    # default lets the threads of a finished parallel region spin for a while, burning the
    # CPU those need; passive threads sleep. Read when the thread pool first starts (the
    # engine build, after this), and only if the operator did not set it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()  # a batch's arrays are freed and allocated again every batch
    args = parser().parse_args(argv)
    try:
        return _main(args)
    except MarginflowError as exc:  # one line for the log, never a stack trace
        say(f"{args.role}: {exc}")
        return 1


def _set_threads(n: int) -> None:
    """Numba's thread count for this process; refuses a count outside 1..cores in one line."""
    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if not 1 <= n <= most:
        raise ConfigurationError(f"--threads must be between 1 and {most}, got {n}")
    numba.set_num_threads(n)


def _main(args: argparse.Namespace) -> int:
    if args.role == "sink" and not args.db:
        _database(args)  # refuses before anything is created
    if args.threads is not None:
        _set_threads(args.threads)
    topology = Topology(partitions=args.partitions, prefix=args.prefix)
    log = open_log(args.log)
    health = health_of(log)
    if health is not None:  # one line in this worker's log each time the broker goes or comes
        health.report = say
    _create_topics(log, topology)
    processor = _processor(args.role, topology, args)
    # The engine and reference data built above live as long as the process: keep them out
    # of the cyclic collector's full passes, which otherwise rescan them every few seconds
    # and stall a batch for tens of milliseconds.
    gc.collect()
    gc.freeze()
    settings = WorkerSettings(
        group=args.group or f"{args.prefix}{args.role}",
        max_batch=args.max_batch,
        max_wait=args.max_wait,
        snapshot_interval=args.snapshot_interval,
        partitions=None if args.assign is None else _partitions(args.assign),
    )
    worker = MicroBatchWorker(
        processor,
        log=log,
        store=FileSnapshotStore(args.state),
        settings=settings,
        topology=topology,
        on_phase=_phase_hook(args.chaos, args.seed),
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks on demand, see above
    print(f"{args.role} started (pid {os.getpid()})", flush=True)
    try:
        if args.gate is not None:
            worker.start()
            print("ready", flush=True)
            while not args.gate.exists() and not worker.stopping:
                time.sleep(0.005)
        worker.run(idle_exit=args.idle_exit)
    finally:
        worker.close()
        log.close()
    st = worker.stats
    summary = {
        "role": args.role,
        "records": st.records,
        "batches": st.batches,
        "dead_letters": st.dead_letters,
        "first_record_ns": st.first_record_ns,
        "last_record_ns": st.last_record_ns,
        "max_batch_seconds": st.max_batch_seconds,
        "busy_seconds": st.busy_seconds,
        "timings": processor.timings(),
        "arrival_ms_p50_p90_p99": _percentiles(st.arrival_ms, (50, 90, 99)),
    }
    print(f"{args.role} stopped: {st.records} records", flush=True)
    print("summary " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
