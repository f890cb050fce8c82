"""Shared pieces of the SIMM-worker and audit tests: a database per dialect, and the SIMM
worker and sink run over a log until they have read everything."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from marginflow.store import Database
from marginflow.stream.log.base import Log
from marginflow.stream.simm_worker import SimmSettings, SimmWorker
from marginflow.stream.sink import Sink
from marginflow.stream.snapshots import FileSnapshotStore
from marginflow.stream.topics import Topology
from marginflow.stream.worker import MicroBatchWorker, Processor, WorkerSettings
from tests.postgres import postgres_or_skip

MAX_STEPS = 5_000  # a bound on the loop, not a clock: a broken worker fails, never hangs


def open_database(kind: str, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of ``kind`` (``sqlite`` or ``postgresql``, own table prefix)."""
    if kind == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'sink.db'}")
        yield db
        db.close()
        return
    db = Database(postgres_or_skip(), prefix=f"t{uuid.uuid4().hex[:8]}_")
    try:
        yield db
    finally:
        db.drop()
        db.close()


def worker(
    processor: Processor,
    log: Log,
    topology: Topology,
    state: Path,
    group: str,
    *,
    static: bool = False,
) -> MicroBatchWorker:
    """A worker stepped by the test (no waiting: a batch is whatever is there)."""
    parts = tuple(range(topology.partitions)) if static else None
    settings = WorkerSettings(
        group=topology.prefix + group, max_wait=0.0, poll_timeout=0.05, partitions=parts
    )
    return MicroBatchWorker(
        processor, log=log, store=FileSnapshotStore(state), settings=settings, topology=topology
    )


def run_until(workers: Sequence[MicroBatchWorker], *, records: Sequence[int]) -> None:
    """Step every worker in turn until each has consumed ``records[i]`` records, then close
    them (snapshot and commit)."""
    for _ in range(MAX_STEPS):
        for w in workers:
            w.step()
        if all(w.stats.records >= n for w, n in zip(workers, records, strict=True)):
            break
    for w in workers:
        w.close()
    got = [w.stats.records for w in workers]
    assert all(g >= n for g, n in zip(got, records, strict=True)), (got, records)


def simm_and_sink(
    log: Log,
    topology: Topology,
    db: Database,
    state: Path,
    *,
    settings: SimmSettings | None = None,
    simm_group: str = "simm",
    static: bool = False,
) -> tuple[MicroBatchWorker, MicroBatchWorker]:
    """A SIMM worker and a sink over ``log``."""
    simm = worker(SimmWorker(topology, settings), log, topology, state, simm_group, static=static)
    sink = worker(Sink(topology, db), log, topology, state, "sink", static=static)
    return simm, sink
