"""The whole pipeline (keeper -> calculator -> aggregator -> sink) against a batch
recompute by a fresh engine: per-account margins, member sums, rejects; SQLite and
PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from marginflow.core.ids import AccountId, InstrumentId, UnderlyingId
from marginflow.engine.settings import MarginSettings
from marginflow.sim.demo import publish_generated_day
from marginflow.sim.synthetic_book import BookSpec
from marginflow.store import Database
from marginflow.stream import events as ev
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.pipeline import BatchSettings, build_pipeline
from marginflow.stream.publish import publish_market, publish_trades
from marginflow.stream.reconcile import check_margins
from marginflow.stream.risk_calculator import HOLD_SECONDS, MarginSetup
from marginflow.stream.topics import Topology
from tests.postgres import postgres_or_skip

BOOK = BookSpec(members=3, accounts=40, underlyings=6, series=120, sod_positions=200)
SETUP = MarginSetup(BOOK.book(), MarginSettings(lookback=250))
T = 1_717_000_100_000_000_000


def _run(
    tmp_path: Path, db_url: str, prefix: str = "mf_", **batch: float
) -> tuple[EmbeddedLog, Database, Topology]:
    log = EmbeddedLog(tmp_path / "log", fsync="never")  # durability is tested elsewhere
    topology = Topology(partitions=3)
    log.create_topics(topology.all())
    producer = log.producer()
    publish_generated_day(producer, topology, BOOK.book(), trades_count=3_000, market_moves=60)
    bad = [
        ev.Trade(
            trade_id="X1",
            account=AccountId("NOBODY"),
            instrument=InstrumentId("NOTHING"),
            quantity=5,
            price=1.0,
            event_time=T,
        )
    ]
    publish_trades(producer, topology, bad)
    book = BOOK.book()
    publish_market(
        producer,
        topology,
        [
            ev.PriceUpdate(underlying=UnderlyingId("ZZZ"), price=1.0, event_time=T),
            # market time passes the hold: the unknown account's positions are dead-lettered
            ev.PriceUpdate(
                underlying=UnderlyingId(book.underlyings.ids[0]),
                price=float(book.market.spot[0]) * 1.002,
                event_time=T + int((HOLD_SECONDS + 1) * 1e9),
            ),
        ],
    )
    pipeline = build_pipeline(
        log=log,
        topology=topology,
        state_dir=tmp_path / "state",
        db_url=db_url,
        setup=SETUP,
        batches=BatchSettings(**batch),  # type: ignore[arg-type]
        db_prefix=prefix,
    )
    pipeline.run(idle_exit=0.5)
    pipeline.close()
    return log, pipeline.db, topology


@pytest.mark.parametrize("max_batch", [50, 10_000])
def test_margins_equal_a_batch_recompute(tmp_path: Path, max_batch: int) -> None:
    log, db, topology = _run(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", max_batch=max_batch)
    report = check_margins(log, topology, SETUP, db)
    assert report.ok, report.mismatches[:5] + report.lost[:5]
    assert report.keys == BOOK.accounts
    assert report.members == BOOK.members
    assert report.max_rel_error < 1e-9
    assert db.firm_margin() == pytest.approx(sum(m.margin for m in db.member_margins()), rel=1e-12)


def test_unknown_reference_data_is_rejected_and_kept(tmp_path: Path) -> None:
    _, db, topology = _run(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    rejects = {(r.source_topic, r.field): r for r in db.rejects()}
    positions = rejects[(topology.name("positions"), "account")]
    assert "unknown account 'NOBODY'" in positions.reason
    market = rejects[(topology.name("market"), "underlying")]
    assert "unknown underlying 'ZZZ'" in market.reason
    assert market.raw  # the original bytes


@pytest.mark.postgres
def test_margins_in_postgresql(tmp_path: Path) -> None:
    dsn = postgres_or_skip()
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    log, db, topology = _run(tmp_path, dsn, prefix=prefix)
    try:
        report = check_margins(log, topology, SETUP, db)
        assert report.ok, report.mismatches[:5] + report.lost[:5]
        assert len(db.rejects()) == 2
    finally:
        db.drop()
        db.close()
