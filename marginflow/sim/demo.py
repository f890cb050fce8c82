"""The embedded demo: a book and a trading day through the whole pipeline in one process
(embedded log and SQLite under one folder, no servers).

The book is the user's folder (``book_dir``) or a generated one (written to
``<directory>/book`` so it can be opened and margined by ``marginflow margin``). The day is
replayed from files (``trades_file``, ``market_file``) or generated over the book's accounts
and series, with price moves that start from the book's own spots. Every event goes
through the log; the results land in ``<directory>/margins.db``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from marginflow.core.book import Book
from marginflow.core.errors import (
    MSG_CANNOT_CLEAR,
    MSG_NOT_A_FOLDER,
    ConfigurationError,
    RowFailure,
)
from marginflow.engine.settings import MarginSettings
from marginflow.engine.state import MarginEngine
from marginflow.io.book import load_book, load_id, reference_files
from marginflow.sim.loadgen import (
    TradeFlow,
    book_spots,
    crif_submissions,
    price_moves,
    risk_parameter_changes,
    session_start_ns,
    trades,
)
from marginflow.sim.synthetic_book import BookSpec
from marginflow.store import StoredSimm
from marginflow.store.loads import record_book_load
from marginflow.stream import events as ev
from marginflow.stream.log.base import Log, Producer
from marginflow.stream.pipeline import InProcessPipeline, build_pipeline
from marginflow.stream.publish import (
    publish_crif,
    publish_market,
    publish_parameter_changes,
    publish_trades,
    sod_positions,
)
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.simm_worker import margin_submission
from marginflow.stream.sources import Replay, read_market, read_trades, replay
from marginflow.stream.topics import Topology


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
    book_dir: Path
    simm: list[StoredSimm] = field(default_factory=list)
    audited: int = 0
    model: str = ""  # the margin model at the end, risk-parameter changes applied
    rejected_rows: list[RowFailure] = field(default_factory=list)


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


def publish_generated_day(
    producer: Producer,
    topology: Topology,
    book: Book,
    *,
    trades_count: int,
    market_moves: int,
    seed: int = 7,
) -> tuple[int, int]:
    """Publish ``book``'s start-of-day positions, ``trades_count`` generated trades over its
    accounts and series, and ``market_moves`` price moves from its spots. Returns
    (trades-topic events, market events)."""
    n = publish_trades(producer, topology, sod_positions(book))
    day_trades, day_market = generated_day(
        book, trades_count=trades_count, market_moves=market_moves, seed=seed
    )
    n += publish_trades(producer, topology, day_trades)
    m = publish_market(producer, topology, day_market)
    return n, m


def generated_day(
    book: Book, *, trades_count: int, market_moves: int, seed: int = 7
) -> tuple[list[ev.Trade], list[ev.Event]]:
    """A generated day of ``book``: trades over its accounts and series and price moves
    from its spots, from the opening after its valuation date."""
    opening = session_start_ns(book.valuation_date)
    flow = TradeFlow.over(
        book.positions.accounts, book.instruments.ids, seed=seed, start_ns=opening
    )
    moves = price_moves(book_spots(book), market_moves, seed=seed, start_ns=opening)
    return list(trades(flow, trades_count)), list(moves)


DAY_SLICES = 8
"""The demo streams its day in this many slices of time, the pipeline catching up after
each, so the store holds margins through the day (what ``reproduce --at`` and ``explain``
read) as a live platform's would."""


@dataclass
class DemoRun:
    """A demo made ready in its folder: the book, its day cut into ``slices`` slices of
    time, the log and the in-process pipeline writing to ``<directory>/margins.db``.

    :meth:`publish_day` publishes the day slice by slice and the caller decides what happens
    between two slices: :func:`run_demo` lets the pipeline catch up, the live platform
    (:mod:`marginflow.sim.live`) paces the slices over wall time while stepping it."""

    directory: Path
    book: Book
    book_dir: Path
    log: Log
    topology: Topology
    producer: Producer
    pipeline: InProcessPipeline
    db_url: str
    day_trades: list[ev.Trade]
    day_market: list[ev.Event]
    slices: int
    first: int  # event time of the day's first event (ns)
    step: int  # a slice's length in event time (ns)
    rejected: list[RowFailure] = field(default_factory=list)
    events: int = 0  # published on the trades topic
    market_events: int = 0
    busy_seconds: float = 0.0  # pipeline time spent in catch_up, idle tails excluded

    @property
    def middle(self) -> int:
        """Event time of midday: when the CRIFs and the risk committee's changes arrive."""
        return self.first + self.step * (self.slices // 2)

    def submissions(self) -> list[ev.CrifSubmission]:
        day = dt.datetime.fromtimestamp(self.middle / 1e9, tz=dt.UTC).date().isoformat()
        return crif_submissions(business_date=day, start_ns=self.middle)

    def warm_simm(self) -> None:
        """Load SIMM's compiled kernels now, so the first CRIF does not pay for it."""
        sub = self.submissions()[0]
        margin_submission(sub, self.pipeline.simm, partition=0, offset=0, computed_time=1)

    def publish_day(self, start: int = 0) -> Iterator[int]:
        """Publish the day from slice ``start`` (0: from the start-of-day positions),
        flushing and yielding each slice's number after it; the last is ``slices``.
        Slice 0 is the start-of-day positions, slice k >= 1 the events of the k-th slice
        of time, midday's CRIFs and risk-parameter changes with the middle one."""
        for k in range(start, self.slices + 1):
            if k == 0:
                self.events += publish_trades(
                    self.producer, self.topology, sod_positions(self.book)
                )
            else:
                self._publish_slice(k - 1)
            self.producer.flush()
            yield k

    def _publish_slice(self, k: int) -> None:
        lo, hi = self.first + k * self.step, self.first + (k + 1) * self.step
        stats = replay(
            self.producer,
            self.topology,
            trades=[t for t in self.day_trades if lo <= t.event_time < hi],
            market=[e for e in self.day_market if lo <= int(getattr(e, "event_time", 0)) < hi],
        )
        self.events += stats.trades
        self.market_events += stats.market
        if k == self.slices // 2 - 1:
            publish_crif(self.producer, self.topology, self.submissions())
            changes = risk_parameter_changes(start_ns=self.middle)
            publish_parameter_changes(self.producer, self.topology, changes)

    def catch_up(self, idle: float = 0.3) -> None:
        """Step the pipeline until it has been idle for ``idle`` seconds."""
        t0 = busy = time.perf_counter()
        while True:  # the rate counts the busy time only
            if self.pipeline.step():
                busy = time.perf_counter()
            elif time.perf_counter() - busy >= idle:
                break
        self.busy_seconds += busy - t0

    def result(self) -> DemoResult:
        """What the store holds now."""
        db = self.pipeline.db
        return DemoResult(
            events=self.events,
            market_events=self.market_events,
            seconds=self.busy_seconds,
            accounts=len(db.account_margins()),
            members=[(x.member, x.margin, x.accounts) for x in db.member_margins()],
            firm=db.firm_margin(),
            rejects=len(db.rejects()),
            db_url=self.db_url,
            book_dir=self.book_dir,
            simm=list(db.simm_results().values()),
            audited=len(db.risk_parameter_audit()),
            model=describe_model(self.pipeline.engine),
            rejected_rows=self.rejected,
        )

    def close(self) -> None:
        """Commit the workers' state and close the store and the log."""
        self.pipeline.close()
        self.pipeline.db.close()
        self.log.close()


def prepare_demo(
    directory: Path,
    *,
    book_dir: Path | None = None,
    spec: BookSpec | None = None,
    settings: MarginSettings | None = None,
    trades_count: int = 20_000,
    market_moves: int = 200,
    trades_file: Path | None = None,
    market_file: Path | None = None,
    partitions: int = 4,
    slices: int = DAY_SLICES,
    db_url: str | None = None,
    db_prefix: str = "mf_",
) -> DemoRun:
    """Make the demo ready in ``directory``: the book (``book_dir``, else the one generated
    there earlier, else a new one from ``spec``), the day (from the files, else generated,
    the same for the same book), the log and the pipeline writing to ``db_url`` (default
    ``<directory>/margins.db``) under ``db_prefix``, the book load recorded."""
    directory.mkdir(parents=True, exist_ok=True)
    from marginflow.stream.log.embedded import EmbeddedLog

    if book_dir is None:
        book_dir = directory / "book"
        if not (book_dir / "positions.csv").is_file():
            book_dir = (spec or BookSpec()).write(book_dir)
    loaded = load_book(book_dir)
    rejected = list(loaded.failures)
    book = loaded.book
    if trades_file is None and market_file is None:
        day_trades, day_market = generated_day(
            book, trades_count=trades_count, market_moves=market_moves
        )
    else:
        files = read_trades(trades_file) if trades_file is not None else Replay()
        if market_file is not None:
            mk = read_market(market_file)
            files.market, files.failures = mk.market, files.failures + mk.failures
        rejected += files.failures
        day_trades, day_market = files.trades, files.market
    log = EmbeddedLog(directory / "log")
    topology = Topology(partitions=partitions)
    log.create_topics(topology.all())
    db_url = db_url or f"sqlite:///{(directory / 'margins.db').resolve()}"
    settings = settings or MarginSettings()
    setup = MarginSetup(book, settings, load_id(reference_files(book_dir), settings.to_json())[0])
    pipeline = build_pipeline(
        log=log,
        topology=topology,
        state_dir=directory / "state",
        db_url=db_url,
        db_prefix=db_prefix,
        setup=setup,
    )
    record_book_load(pipeline.db, book_dir, settings.to_json())
    times = [e.event_time for e in day_trades] + [
        int(getattr(e, "event_time", 0)) for e in day_market
    ]
    first = min(times, default=session_start_ns(book.valuation_date))
    last = max(times, default=first)
    return DemoRun(
        directory=directory,
        book=book,
        book_dir=book_dir,
        log=log,
        topology=topology,
        producer=log.producer(),
        pipeline=pipeline,
        db_url=db_url,
        day_trades=day_trades,
        day_market=day_market,
        slices=slices,
        first=first,
        step=max(1, (last - first) // slices + 1),
        rejected=rejected,
    )


def clear_run(directory: Path, *, option: str = "--dir") -> Path | None:
    """Remove an earlier run in ``directory`` so that a new one starts empty (the log is
    durable: a second day would add to the first). All or nothing: the folder is first
    renamed aside, so a folder that cannot be cleared is left as it was and
    :class:`ConfigurationError` says why. Returns the renamed folder if it could not then be
    deleted (nothing reads it), else None."""
    if not directory.exists():
        return None
    if not directory.is_dir():
        raise ConfigurationError(MSG_NOT_A_FOLDER.format(option=option, path=directory))
    trash = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    try:
        directory.rename(trash)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigurationError(MSG_CANNOT_CLEAR.format(path=directory, reason=reason)) from None
    try:
        shutil.rmtree(trash)
    except OSError:
        return trash
    return None


def run_demo(
    directory: Path,
    *,
    book_dir: Path | None = None,
    spec: BookSpec | None = None,
    settings: MarginSettings | None = None,
    trades_count: int = 20_000,
    market_moves: int = 200,
    trades_file: Path | None = None,
    market_file: Path | None = None,
    partitions: int = 4,
) -> DemoResult:
    """Run the demo in ``directory`` (which must not hold an earlier run: the log is
    durable, so a second day would add to the first; :func:`clear_run` clears one)."""
    if (directory / "log").exists():
        raise ConfigurationError(
            f"{directory} holds an earlier run (its log): clear it first, a second day "
            "would add to the first"
        )
    run = prepare_demo(
        directory,
        book_dir=book_dir,
        spec=spec,
        settings=settings,
        trades_count=trades_count,
        market_moves=market_moves,
        trades_file=trades_file,
        market_file=market_file,
        partitions=partitions,
    )
    try:
        run.warm_simm()  # before the clock starts (the rate is the margin path's)
        for _ in run.publish_day():
            run.catch_up()
        run.pipeline.close()
        return run.result()
    finally:
        run.pipeline.db.close()
        run.log.close()
