"""The database sink: margins (with their breakdown), member partials, positions, market
events, SIMM results, risk-parameter changes and dead letters into the store
(:mod:`marginflow.store`), idempotently: every row is keyed by what it was computed from or
where it was read, so a replayed batch changes nothing (the keys are in the store's
docstring).

A batch is written in one transaction before the worker snapshots and commits (step 5 of the
commit protocol), so a crash replays at most that batch, into upserts that absorb it.

What it keeps makes every margin traceable from the store alone: each account's positions
at every version (from the positions topic) and every market-topic event (prices, vols,
reference data, risk-parameter changes) by offset, which with the start-of-day load a margin
names are the inputs ``marginflow reproduce`` recomputes it from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from marginflow.store import (
    AuditedChange,
    Database,
    MarketRecord,
    MemberPartial,
    PositionChange,
    Reject,
    SimmLine,
    StoredMargin,
    StoredSimm,
)
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection, encode
from marginflow.stream.log.base import TP
from marginflow.stream.topics import (
    DEAD_LETTERS,
    MARGINS,
    MARKET,
    MEMBER_MARGINS,
    POSITIONS,
    SIMM_RESULTS,
    Topology,
)
from marginflow.stream.worker import Output, Processor

MSG_AUDIT_CONFLICT = (
    "change {change_id!r} is already recorded ({topic} partition {partition} offset {offset}) "
    "with different content; recorded changes are never rewritten: publish a new change_id"
)


def stored_margin(e: ev.AccountMargin) -> StoredMargin:
    """An account-margin event as the store keeps it."""
    return StoredMargin(
        account=e.account,
        member=e.member,
        margin=e.margin,
        model=e.model,
        source_partition=e.source_partition,
        position_version=e.position_version,
        market_offset=e.market_offset,
        event_time=e.event_time,
        computed_time=e.computed_time,
        es=e.es,
        var=e.var,
        apc=e.apc,
        concentration=e.concentration,
        driver=e.driver,
        settings=e.settings,
        book_load=e.book_load,
        business_date=e.business_date,
        market_from=e.market_from,
        market_ticks=e.market_ticks,
        market_moves=e.market_moves,
    )


def stored_simm(r: ev.SimmResult) -> StoredSimm:
    """A SIMM-result event as the store keeps it."""
    return StoredSimm(
        party=r.party,
        portfolio=r.portfolio,
        business_date=r.business_date,
        counterparty=r.counterparty,
        submission_id=r.submission_id,
        simm_version=r.simm_version,
        mpor_days=r.mpor_days,
        currency=r.currency,
        collect_im=r.collect_im,
        post_im=r.post_im,
        collect_regulation=r.collect_regulation,
        post_regulation=r.post_regulation,
        rows=r.rows,
        breakdown=tuple(
            SimmLine(x.side, x.model, x.product_class, x.risk_class, x.margin_type, x.margin)
            for x in r.breakdown
        ),
        source_partition=r.source_partition,
        source_offset=r.source_offset,
        event_time=r.event_time,
        computed_time=r.computed_time,
    )


def audited(change: ev.RiskParameterChange, tp: TP, offset: int) -> AuditedChange:
    """A risk-parameter change read at ``offset`` of ``tp``, as the audit records it."""
    return AuditedChange(
        change_id=change.change_id,
        model=change.model,
        parameter=change.parameter,
        value=change.value,
        requested_by=change.requested_by,
        approved_by=change.approved_by,
        effective_time=change.effective_time,
        event_time=change.event_time,
        source_topic=tp[0],
        source_partition=tp[1],
        source_offset=offset,
    )


def market_record(offset: int, e: ev.Event) -> MarketRecord:
    """A market-topic event as the store keeps it: its wire bytes, type and underlying."""
    underlying = getattr(e, "underlying", "")
    event_time = int(getattr(e, "event_time", 0))
    tag = str(type(e).__struct_config__.tag)
    return MarketRecord(offset, tag, str(underlying or ""), event_time, encode(e))


class Sink(Processor):
    """Margins, member partials, positions, market events, SIMM results, risk-parameter
    changes and dead letters -> the store.

    It reads the market topic whole (one partition: one sink of the group owns it): every
    event is kept by offset, and its risk-parameter changes go to the audit table; the
    positions topic (shared by the group by key) gives each account's quantities at every
    version."""

    def __init__(self, topology: Topology, database: Database) -> None:
        self.db = database
        self._margins = topology.name(MARGINS)
        self._partials = topology.name(MEMBER_MARGINS)
        self._letters = topology.name(DEAD_LETTERS)
        self._simm = topology.name(SIMM_RESULTS)
        self._market = topology.name(MARKET)
        self._positions = topology.name(POSITIONS)
        logical = {
            self._margins: MARGINS,
            self._partials: MEMBER_MARGINS,
            self._letters: DEAD_LETTERS,
            self._simm: SIMM_RESULTS,
            self._market: MARKET,
            self._positions: POSITIONS,
        }
        self.inputs = tuple(logical)
        self._codecs: dict[str, Codec[ev.Event]] = {
            name: Codec(topology.spec(topic).events) for name, topic in logical.items()
        }
        self._batch = _Batch()

    def codec(self, topic: str) -> Codec[ev.Event]:
        return self._codecs[topic]

    def restore(self, tp: TP, data: bytes | None) -> None:
        """Nothing to restore: the database is the state."""

    def release(self, tp: TP) -> None:
        """Nothing held per partition."""

    def apply(
        self, tp: TP, events: Sequence[tuple[int, ev.Event]]
    ) -> Sequence[tuple[int, Rejection]]:
        batch = self._batch
        refused: list[tuple[int, Rejection]] = []
        market = tp[0] == self._market
        for offset, e in events:
            if market:
                batch.market.append(market_record(offset, e))
            if isinstance(e, ev.AccountMargin):
                batch.margins.append(stored_margin(e))
            elif isinstance(e, ev.AccountPositions):
                batch.positions.append(
                    PositionChange(
                        e.account,
                        e.source_offset,
                        e.source_partition,
                        e.event_time,
                        e.instruments,
                        e.quantities,
                    )
                )
            elif isinstance(e, ev.MemberMarginPartial):
                batch.partials.append(
                    MemberPartial(
                        e.member,
                        e.source_partition,
                        e.margin,
                        e.accounts,
                        e.source_offset,
                        e.event_time,
                    )
                )
            elif isinstance(e, ev.DeadLetter):
                batch.letters.append(
                    Reject(
                        e.source_topic,
                        e.source_partition,
                        e.source_offset,
                        e.field,
                        e.reason,
                        e.raw,
                        e.event_time,
                    )
                )
            elif isinstance(e, ev.SimmResult):
                batch.simm.append(stored_simm(e))
            elif isinstance(e, ev.RiskParameterChange):
                why = self._audit(audited(e, tp, offset))
                if why is not None:
                    refused.append((offset, why))
        return refused

    def _audit(self, change: AuditedChange) -> Rejection | None:
        """Queue ``change`` for the audit table, or refuse it when its ``change_id`` is
        recorded with other content. Depends only on the log (the table holds what earlier
        offsets wrote), so a replay decides the same."""
        cid = change.change_id
        known = self._batch.changes.get(cid) or self.db.audited_change(cid)
        if known is None:
            self._batch.changes[cid] = change
            return None
        if known.content() == change.content():
            return None  # the same change again (a replay, or a producer's retry)
        return Rejection(
            "change_id",
            MSG_AUDIT_CONFLICT.format(
                change_id=cid,
                topic=known.source_topic,
                partition=known.source_partition,
                offset=known.source_offset,
            ),
        )

    def recompute(self) -> list[Output]:
        b = self._batch
        if b.margins or b.partials or b.letters or b.simm or b.changes or b.positions or b.market:
            self.db.write(
                b.margins,
                b.partials,
                b.letters,
                b.simm,
                list(b.changes.values()),
                b.positions,
                b.market,
            )
        self._batch = _Batch()
        return []

    def snapshot(self, tp: TP) -> bytes:
        return b""


@dataclass
class _Batch:
    """What the sink writes at the end of one micro-batch, in one transaction."""

    margins: list[StoredMargin] = field(default_factory=list)
    partials: list[MemberPartial] = field(default_factory=list)
    letters: list[Reject] = field(default_factory=list)
    simm: list[StoredSimm] = field(default_factory=list)
    changes: dict[str, AuditedChange] = field(default_factory=dict)
    positions: list[PositionChange] = field(default_factory=list)
    market: list[MarketRecord] = field(default_factory=list)
