"""The whole pipeline: position keeper -> risk calculator -> aggregator -> sink, and CRIF
submissions -> SIMM worker -> sink beside it, either in one process (the embedded demo: the
workers take turns on one thread) or as one process per worker (``marginflow cluster up``,
through :mod:`marginflow.stream.runner`).

Both run the same processors with the same commit protocol; only the scheduling differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from marginflow.engine.state import MarginEngine
from marginflow.store import Database
from marginflow.stream.aggregator import Aggregator
from marginflow.stream.log.base import Log
from marginflow.stream.position_keeper import PositionKeeper
from marginflow.stream.risk_calculator import MarginSetup, RiskCalculator
from marginflow.stream.simm_worker import SimmSettings, SimmWorker
from marginflow.stream.sink import Sink
from marginflow.stream.snapshots import FileSnapshotStore
from marginflow.stream.topics import Topology
from marginflow.stream.worker import MicroBatchWorker, Processor, WorkerSettings

ROLES = ("position-keeper", "risk-calculator", "aggregator", "simm", "sink")
"""Worker roles in pipeline order (a role's inputs come from roles before it)."""
MARGIN_ROLES = ("position-keeper", "risk-calculator", "aggregator", "sink")
"""The roles of the clearing-house margin path alone (what its crash tests need)."""
LATENCY_ROLES = ("position-keeper", "risk-calculator")
"""The roles between a trade and its published margin: they batch for latency (``max_wait``
0); the others batch for throughput (see ``cluster.ClusterConfig.downstream_max_wait``)."""


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """Micro-batch triggers shared by the workers: ``max_batch`` records or ``max_wait``
    seconds after the first, whichever first; snapshots every ``snapshot_interval`` s."""

    max_batch: int = 10_000
    max_wait: float = 0.02
    snapshot_interval: float = 1.0

    def for_group(self, group: str, *, in_process: bool = False) -> WorkerSettings:
        """Settings of one worker. In one process the workers take turns, so nothing can
        arrive while one waits: there a batch is whatever is there, up to ``max_batch``."""
        return WorkerSettings(
            group=group,
            max_batch=self.max_batch,
            max_wait=0.0 if in_process else self.max_wait,
            snapshot_interval=self.snapshot_interval,
            poll_timeout=0.0 if in_process else 0.05,
        )


def processor_for(
    role: str,
    topology: Topology,
    *,
    engine: MarginEngine | None = None,
    db: Database | None = None,
    simm: SimmSettings | None = None,
    book_load: str = "",
) -> Processor:
    """The processor of one worker role (``engine`` for the calculator, ``db`` for the sink,
    ``simm`` for the SIMM worker: default the newest calibration, 10-day, USD; ``book_load``
    the id of the calculator's start-of-day load, named in each margin)."""
    if role == "position-keeper":
        return PositionKeeper(topology)
    if role == "risk-calculator":
        assert engine is not None
        return RiskCalculator(topology, engine, book_load=book_load)
    if role == "aggregator":
        return Aggregator(topology)
    if role == "simm":
        return SimmWorker(topology, simm)
    if role == "sink":
        assert db is not None
        return Sink(topology, db)
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


@dataclass
class InProcessPipeline:
    """All the workers in this process over one log, stepped in turn."""

    log: Log
    topology: Topology
    state_dir: Path
    db: Database
    engine: MarginEngine
    batches: BatchSettings = field(default_factory=BatchSettings)
    simm: SimmSettings = field(default_factory=SimmSettings)
    workers: list[MicroBatchWorker] = field(default_factory=list)
    book_load: str = ""

    def __post_init__(self) -> None:
        self.log.create_topics(self.topology.all())
        store = FileSnapshotStore(self.state_dir)
        for role in ROLES:
            proc = processor_for(
                role,
                self.topology,
                engine=self.engine,
                db=self.db,
                simm=self.simm,
                book_load=self.book_load,
            )
            settings = self.batches.for_group(f"{self.topology.prefix}{role}", in_process=True)
            self.workers.append(
                MicroBatchWorker(
                    proc, log=self.log, store=store, settings=settings, topology=self.topology
                )
            )

    def step(self) -> int:
        """One step of every worker; the number of records they consumed."""
        return sum(w.step() for w in self.workers)

    def run(self, *, idle_exit: float = 0.5, timeout: float | None = None) -> None:
        """Step until nothing moved for ``idle_exit`` seconds (or ``timeout`` passed)."""
        start = idle_since = time.monotonic()
        while True:
            now = time.monotonic()
            if self.step():
                idle_since = now
            elif now - idle_since >= idle_exit:
                return
            if timeout is not None and now - start > timeout:
                return

    def close(self) -> None:
        for w in self.workers:
            w.close()


def build_pipeline(
    *,
    log: Log,
    topology: Topology,
    state_dir: Path,
    db_url: str,
    setup: MarginSetup,
    batches: BatchSettings | None = None,
    db_prefix: str = "mf_",
    simm: SimmSettings | None = None,
) -> InProcessPipeline:
    """An in-process pipeline margining ``setup``'s book (builds the engine: a second or
    two); ``simm`` configures the SIMM worker (default: newest calibration, 10-day, USD)."""
    return InProcessPipeline(
        log=log,
        topology=topology,
        state_dir=state_dir,
        db=Database(db_url, prefix=db_prefix),
        engine=setup.engine(),
        book_load=setup.load,
        batches=batches or BatchSettings(),
        simm=simm or SimmSettings(),
    )
