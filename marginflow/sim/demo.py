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
import time
from dataclasses import dataclass, field
from pathlib import Path

from marginflow.core.book import Book
from marginflow.core.errors import RowFailure
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
from marginflow.stream.log.base import Producer
from marginflow.stream.pipeline import build_pipeline
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
    opening = session_start_ns(book.valuation_date)
    flow = TradeFlow.over(
        book.positions.accounts, book.instruments.ids, seed=seed, start_ns=opening
    )
    n += publish_trades(producer, topology, trades(flow, trades_count))
    moves = price_moves(book_spots(book), market_moves, seed=seed, start_ns=opening)
    m = publish_market(producer, topology, moves)
    return n, m


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
    durable, so a second day would add to the first)."""
    directory.mkdir(parents=True, exist_ok=True)
    from marginflow.stream.log.embedded import EmbeddedLog

    if book_dir is None:
        book_dir = (spec or BookSpec()).write(directory / "book")
    loaded = load_book(book_dir)
    rejected = list(loaded.failures)
    book = loaded.book
    log = EmbeddedLog(directory / "log")
    topology = Topology(partitions=partitions)
    log.create_topics(topology.all())
    producer = log.producer()
    if trades_file is None and market_file is None:
        n, m = publish_generated_day(
            producer, topology, book, trades_count=trades_count, market_moves=market_moves
        )
    else:
        files = read_trades(trades_file) if trades_file is not None else Replay()
        if market_file is not None:
            mk = read_market(market_file)
            files.market, files.failures = mk.market, files.failures + mk.failures
        rejected += files.failures
        n = publish_trades(producer, topology, sod_positions(book))
        stats = replay(producer, topology, trades=files.trades, market=files.market)
        n, m = n + stats.trades, stats.market
    opening = session_start_ns(book.valuation_date)
    day = dt.datetime.fromtimestamp(opening / 1e9, tz=dt.UTC).date().isoformat()
    submissions = crif_submissions(business_date=day, start_ns=opening)
    publish_crif(producer, topology, submissions)
    publish_parameter_changes(producer, topology, risk_parameter_changes(start_ns=opening))
    db_url = f"sqlite:///{(directory / 'margins.db').resolve()}"
    settings = settings or MarginSettings()
    setup = MarginSetup(book, settings, load_id(reference_files(book_dir), settings.to_json())[0])
    pipeline = build_pipeline(
        log=log, topology=topology, state_dir=directory / "state", db_url=db_url, setup=setup
    )
    record_book_load(pipeline.db, book_dir, settings.to_json())
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
        book_dir=book_dir,
        simm=list(db.simm_results().values()),
        audited=len(db.risk_parameter_audit()),
        model=describe_model(pipeline.engine),
        rejected_rows=rejected,
    )
    db.close()
    log.close()
    return result
