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

from marginflow.core.book import Book
from marginflow.core.ids import AccountId, InstrumentId
from marginflow.engine.state import MarginEngine
from marginflow.sim.loadgen import (
    TradeFlow,
    crif_submissions,
    price_moves,
    publish_crif,
    publish_market,
    publish_parameter_changes,
    publish_trades,
    risk_parameter_changes,
    trades,
)
from marginflow.stream import events as ev
from marginflow.stream.aggregator import Aggregator
from marginflow.stream.log.base import Log, Producer
from marginflow.stream.position_keeper import PositionKeeper
from marginflow.stream.risk_calculator import (
    EngineSpec,
    RiskCalculator,
    build_engine,
    start_of_day,
)
from marginflow.stream.simm_worker import SimmSettings, SimmWorker, margin_submission
from marginflow.stream.sink import Database, Sink, StoredSimm
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
) -> Processor:
    """The processor of one worker role (``engine`` for the calculator, ``db`` for the sink,
    ``simm`` for the SIMM worker: default the newest calibration, 10-day, USD)."""
    if role == "position-keeper":
        return PositionKeeper(topology)
    if role == "risk-calculator":
        assert engine is not None
        return RiskCalculator(topology, engine)
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

    def __post_init__(self) -> None:
        self.log.create_topics(self.topology.all())
        store = FileSnapshotStore(self.state_dir)
        for role in ROLES:
            proc = processor_for(
                role, self.topology, engine=self.engine, db=self.db, simm=self.simm
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


def publish_day(
    producer: Producer,
    topology: Topology,
    spec: EngineSpec,
    *,
    trades_count: int,
    market_moves: int,
    seed: int = 7,
) -> tuple[int, int]:
    """Publish a trading day for ``spec``'s book: its start-of-day positions, then
    ``trades_count`` trades and ``market_moves`` price updates. Returns (trades-topic
    events, market events)."""
    book = start_of_day(spec)
    sod = sod_positions(book)
    n = publish_trades(producer, topology, sod)
    flow = TradeFlow.over(book.positions.accounts, book.instruments.ids, seed=seed)
    n += publish_trades(producer, topology, trades(flow, trades_count))
    m = publish_market(
        producer, topology, price_moves(book.underlyings.ids, market_moves, seed=seed)
    )
    return n, m


def sod_positions(book: Book) -> list[ev.PositionSnapshot]:
    """A book's positions as start-of-day events (integer quantities)."""
    x = book.positions.matrix.tocoo()
    accounts, ids = book.positions.accounts, book.instruments.ids
    date = book.market.valuation_date.isoformat()
    out = []
    for a, j, q in zip(x.row.tolist(), x.col.tolist(), x.data.tolist(), strict=True):
        qty = round(q)
        if qty:
            out.append(
                ev.PositionSnapshot(
                    account=AccountId(accounts[a]),
                    instrument=InstrumentId(ids[j]),
                    quantity=qty,
                    business_date=date,
                    event_time=1_717_000_000_000_000_000,
                )
            )
    return out


def build_pipeline(
    *,
    log: Log,
    topology: Topology,
    state_dir: Path,
    db_url: str,
    spec: EngineSpec,
    batches: BatchSettings | None = None,
    db_prefix: str = "mf_",
    simm: SimmSettings | None = None,
) -> InProcessPipeline:
    """An in-process pipeline for ``spec``'s book (builds the engine: a second or two);
    ``simm`` configures the SIMM worker (default: newest calibration, 10-day, USD)."""
    return InProcessPipeline(
        log=log,
        topology=topology,
        state_dir=state_dir,
        db=Database(db_url, prefix=db_prefix),
        engine=build_engine(spec),
        batches=batches or BatchSettings(),
        simm=simm or SimmSettings(),
    )


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the embedded demo did: inputs, throughput, the margins it stored, the SIMM
    results of the CRIF submissions and the risk-parameter changes audited."""

    events: int
    market_events: int
    seconds: float
    accounts: int
    members: list[tuple[str, float, int]]
    firm: float
    rejects: int
    db_url: str
    simm: list[StoredSimm] = field(default_factory=list)
    audited: int = 0
    model: str = ""  # the margin model at the end, risk-parameter changes applied


def describe_model(engine: MarginEngine) -> str:
    """The engine's margin model in a few words, e.g. ``99% ES, 2-day MPOR, APC buffer 25%``."""
    m = engine.model
    text = (
        f"{m.confidence:.1%}".replace(".0%", "%") + f" ES, {engine.scenarios.horizon_days}-day MPOR"
    )
    if m.apc == "buffer":
        text += f", APC buffer {m.apc_buffer:.0%}"
    elif m.apc == "stressed-weight":
        text += f", APC stressed weight {m.stressed_weight:.0%}"
    elif m.apc != "none":
        text += f", APC {m.apc}"
    return text


def run_demo(
    directory: Path,
    *,
    spec: EngineSpec | None = None,
    trades_count: int = 20_000,
    market_moves: int = 200,
    partitions: int = 4,
) -> DemoResult:
    """The embedded demo: a generated book and trading day through the whole pipeline in
    this process (embedded log and SQLite under ``directory``, no servers)."""
    spec = spec or EngineSpec()
    directory.mkdir(parents=True, exist_ok=True)
    from marginflow.stream.log.embedded import EmbeddedLog

    log = EmbeddedLog(directory / "log")
    topology = Topology(partitions=partitions)
    log.create_topics(topology.all())
    producer = log.producer()
    n, m = publish_day(
        producer, topology, spec, trades_count=trades_count, market_moves=market_moves
    )
    submissions = crif_submissions()
    publish_crif(producer, topology, submissions)
    publish_parameter_changes(producer, topology, risk_parameter_changes())
    db_url = f"sqlite:///{(directory / 'margins.db').resolve()}"
    pipeline = build_pipeline(
        log=log, topology=topology, state_dir=directory / "state", db_url=db_url, spec=spec
    )
    # load SIMM's compiled kernels before the clock starts (the rate is the margin path's)
    margin_submission(submissions[0], pipeline.simm, partition=0, offset=0, computed_time=1)
    t0 = time.perf_counter()
    pipeline.run(idle_exit=0.3)
    seconds = time.perf_counter() - t0 - 0.3
    pipeline.close()
    db = pipeline.db
    result = DemoResult(
        events=n,
        market_events=m,
        seconds=seconds,
        accounts=len(db.account_margins()),
        members=[(x.member, x.margin, x.accounts) for x in db.member_margins()],
        firm=db.firm_margin(),
        rejects=len(db.rejects()),
        db_url=db_url,
        simm=list(db.simm_results().values()),
        audited=len(db.risk_parameter_audit()),
        model=describe_model(pipeline.engine),
    )
    db.close()
    return result
