"""Reference data as events on the market topic: a series listed during the day is revalued
and traded without a restart, a new account opens, the date roll drops expired series, and a
positions event naming reference data not yet seen is held until it arrives (or, past the
bound, dead-lettered naming the field). The stored margins equal a batch recompute and every
published version recomputes to its value."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from marginflow.core.ids import AccountId, InstrumentId, MemberId, UnderlyingId
from marginflow.engine.settings import MarginSettings
from marginflow.sim.synthetic_book import BookSpec
from marginflow.stream import events as ev
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.pipeline import BatchSettings, build_pipeline
from marginflow.stream.publish import publish_market, publish_trades, sod_positions
from marginflow.stream.reconcile import check_margins
from marginflow.stream.risk_calculator import HOLD_SECONDS, MarginSetup
from marginflow.stream.topics import Topology

BOOK = BookSpec(members=3, accounts=20, underlyings=4, series=60, sod_positions=80, seed=3)
FULL = BOOK.book()
OPTIONS = np.flatnonzero(FULL.instruments.is_option)
LISTED = OPTIONS[[2, 9]]  # in the full book, listed during the day
KEEP = np.setdiff1d(np.arange(len(FULL.instruments)), LISTED)
START = replace(
    FULL,
    instruments=FULL.instruments.take(KEEP),
    positions=FULL.positions.with_matrix(sp.csr_matrix(FULL.positions.matrix[:, KEEP])),
)
SETUP = MarginSetup(START, MarginSettings(lookback=250))
DAY = dt.datetime.combine(
    FULL.market.valuation_date + dt.timedelta(days=1), dt.time(9, 30), tzinfo=dt.UTC
)
T0 = int(DAY.timestamp()) * 1_000_000_000
SECOND = 1_000_000_000


def _listing(j: int, t: int) -> ev.InstrumentRef:
    ins = FULL.instruments
    return ev.InstrumentRef(
        id=InstrumentId(ins.ids[j]),
        underlying=UnderlyingId(FULL.underlyings.ids[ins.underlying[j]]),
        kind="call" if ins.kind[j] == 1 else "put",
        strike=float(ins.strike[j]),
        expiry=str(ins.expiry[j]),
        style="american" if ins.is_american[j] else "european",
        multiplier=float(ins.multiplier[j]),
        event_time=t,
    )


def _trade(n: int, account: str, instrument: str, q: int, t: int) -> ev.Trade:
    return ev.Trade(
        trade_id=f"R{n}",
        account=AccountId(account),
        instrument=InstrumentId(instrument),
        quantity=q,
        price=1.0,
        event_time=t,
    )


def test_reference_data_during_the_day(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", fsync="never")
    topology = Topology(partitions=2)
    log.create_topics(topology.all())
    producer = log.producer()
    publish_trades(producer, topology, sod_positions(START))
    ids, accounts = FULL.instruments.ids, START.positions.accounts
    a, b = ids[LISTED[0]], ids[LISTED[1]]
    old = ids[OPTIONS[0]]
    # a new member's account, and series a listed before its trades ...
    publish_market(
        producer,
        topology,
        [
            ev.MemberRef(id=MemberId("M-NEW"), name="New Clearing LLC", event_time=T0),
            ev.AccountRef(id=AccountId("N-1"), member=MemberId("M-NEW"), event_time=T0),
            _listing(LISTED[0], T0),
        ],
    )
    publish_trades(
        producer,
        topology,
        [
            _trade(1, "N-1", a, -7, T0 + SECOND),
            _trade(2, accounts[0], a, 3, T0 + 2 * SECOND),
            _trade(3, accounts[1], b, -4, T0 + 3 * SECOND),  # b is listed later: held
            _trade(4, accounts[2], "NEVER 1", 1, T0 + 4 * SECOND),  # never listed
            _trade(5, "N-1", old, 2, T0 + 5 * SECOND),
        ],
    )
    pipeline = build_pipeline(
        log=log,
        topology=topology,
        state_dir=tmp_path / "state",
        db_url=f"sqlite:///{tmp_path / 'm.db'}",
        setup=SETUP,
        batches=BatchSettings(max_batch=50),
    )
    pipeline.run(idle_exit=0.3)
    # ... b listed within the hold; then the market moves past it and the date rolls
    roll = (FULL.market.valuation_date + dt.timedelta(days=12)).isoformat()
    publish_market(
        producer,
        topology,
        [
            _listing(LISTED[1], T0 + 10 * SECOND),
            ev.PriceUpdate(
                underlying=UnderlyingId(START.underlyings.ids[0]),
                price=float(START.market.spot[0]) * 1.01,
                event_time=T0 + int((HOLD_SECONDS + 30) * SECOND),
            ),
            ev.DateRoll(business_date=roll, event_time=T0 + int((HOLD_SECONDS + 40) * SECOND)),
        ],
    )
    pipeline.run(idle_exit=0.3)
    pipeline.close()
    db = pipeline.db
    letters = db.rejects()
    assert len(letters) == 1, letters
    (letter,) = letters
    assert letter.field == "instruments"
    assert "unknown instrument 'NEVER 1'" in letter.reason
    assert f"within {HOLD_SECONDS:g} s of market time" in letter.reason
    stored = db.account_margins()
    assert stored["N-1"].margin > 0  # the new account, margined
    report = check_margins(log, topology, SETUP, db)
    assert report.ok, report.summary()
    assert report.versions > 0
    engine = pipeline.engine
    assert str(engine.book.market.valuation_date) == roll
    expired = [i for i in engine.book.instruments.ids if engine.is_expired(i)]
    assert expired, "the roll drops the series that expired"
    db.close()
    log.close()
