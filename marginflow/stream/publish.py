"""Producing input events onto the log: trades and start-of-day positions keyed by account,
market data and approved risk-parameter changes on the broadcast market topic, CRIF
submissions keyed by portfolio. Used by ``marginflow publish``, the demo, ``cluster up``'s
load generator, the tests and the benchmarks alike, so every producer partitions the same
way (:func:`marginflow.stream.topics.partition_for` of the key).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from marginflow.core.book import Book
from marginflow.core.errors import ValidationError
from marginflow.core.ids import AccountId, InstrumentId
from marginflow.stream import events as ev
from marginflow.stream.codec import encode
from marginflow.stream.log.base import Producer
from marginflow.stream.topics import CRIF, MARKET, TRADES, Topology, partition_for


def publish_trades(
    producer: Producer,
    topology: Topology,
    events: Iterable[ev.Event],
    *,
    flush_every: int = 10_000,
) -> int:
    """Produce trade-topic events keyed (and partitioned) by account; returns the count."""
    topic, parts = topology.name(TRADES), topology.spec(TRADES).partitions
    n = 0
    for event in events:
        key = event.key()
        assert key is not None
        producer.produce(
            topic, encode(event), partition=partition_for(key, parts), key=key.encode()
        )
        n += 1
        if n % flush_every == 0:
            producer.flush()
    producer.flush()
    return n


def publish_market(producer: Producer, topology: Topology, events: Iterable[ev.Event]) -> int:
    """Produce market events on the (single-partition) broadcast market topic."""
    topic = topology.name(MARKET)
    n = 0
    for event in events:
        producer.produce(topic, encode(event), partition=0)
        n += 1
    producer.flush()
    return n


def publish_parameter_changes(
    producer: Producer, topology: Topology, events: Sequence[ev.RiskParameterChange]
) -> int:
    """Produce risk-parameter changes on the market topic (the calculators apply them in
    order with market data, so a margin's market offset versions its parameters too)."""
    return publish_market(producer, topology, events)


def publish_crif(
    producer: Producer, topology: Topology, submissions: Sequence[ev.CrifSubmission]
) -> int:
    """Produce CRIF submissions keyed (and partitioned) by portfolio; returns the count."""
    topic, parts = topology.name(CRIF), topology.spec(CRIF).partitions
    for s in submissions:
        key = s.portfolio
        producer.produce(topic, encode(s), partition=partition_for(key, parts), key=key.encode())
    producer.flush()
    return len(submissions)


def start_of_day_ns(valuation_date: dt.date) -> int:
    """Event time of a book's start-of-day positions: midnight UTC of its valuation date,
    before any trade of the day (a snapshot after a trade of its account is refused as
    late, see :func:`marginflow.stream.position_keeper.late_start_of_day`)."""
    midnight = dt.datetime.combine(valuation_date, dt.time(), tzinfo=dt.UTC)
    return int(midnight.timestamp()) * 1_000_000_000


def sod_positions(book: Book) -> Iterator[ev.PositionSnapshot]:
    """A book's positions as start-of-day events (whole contracts and shares; a fractional
    holding is refused by the event's schema, not rounded)."""
    x = book.positions.matrix.tocoo()
    accounts, ids = book.positions.accounts, book.instruments.ids
    date = book.market.valuation_date
    t0 = start_of_day_ns(date)
    for a, j, q in zip(x.row.tolist(), x.col.tolist(), x.data.tolist(), strict=True):
        if q:
            yield ev.PositionSnapshot(
                account=AccountId(accounts[a]),
                instrument=InstrumentId(ids[j]),
                quantity=_whole(q),
                business_date=date.isoformat(),
                event_time=t0,
            )


def _whole(q: float) -> int:
    if q != int(q):
        raise ValidationError("quantity", f"start-of-day positions are whole units, got {q!r}")
    return int(q)


def crif_row(row: Mapping[str, Any]) -> ev.CrifRow:
    """A CRIF row given as canonical columns (as a CRIF file and
    :func:`marginflow.sim.synthetic_crif.generate` have them) as the event's row."""

    def text(name: str) -> str:
        value = row.get(name)
        return "" if value is None else str(value)

    return ev.CrifRow(
        im_model=text("IMModel") or "SIMM",
        product_class=text("ProductClass"),
        risk_type=text("RiskType"),
        qualifier=text("Qualifier"),
        bucket=text("Bucket"),
        label1=text("Label1"),
        label2=text("Label2"),
        amount=float(row["Amount"]),
        amount_currency=text("AmountCurrency") or "USD",
        amount_usd=float(row["AmountUSD"]),
        trade_id=text("TradeID"),
        end_date=text("EndDate"),
        collect_regulation=text("CollectRegulation"),
        post_regulation=text("PostRegulation"),
    )
