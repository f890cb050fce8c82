"""The risk calculator: account positions and market data in, account margins out, through
the engine's incremental path (:class:`marginflow.engine.state.MarginEngine`).

Inputs: the positions topic (partitioned by account; the keeper's absolute, versioned
positions) and the market topic (broadcast: every calculator reads all of it). A
micro-batch (count or time, whichever first; see :class:`~marginflow.stream.worker.
WorkerSettings`) is applied as a whole, in one engine call
(:meth:`~marginflow.engine.state.MarginEngine.apply_batch`): the price and vol ticks are
coalesced per underlying, in market-offset order, field by field (the last spot, the last
ATM vol and the last skew each win, so a spot-only tick and a vol-only tick of one
underlying both apply), and each moved underlying is revalued once; each changed account's
position deltas are applied together; and every account the moves or the trades touched is
re-summed and re-margined once, and published once if this worker owns it. The result is
the engine state of applying every tick and trade one by one, to the bit.

What a batch covered on the market topic travels on each margin it publishes
(``market_from`` .. ``market_offset``, ``market_ticks`` read, ``market_moves`` applied; see
:class:`~marginflow.stream.events.AccountMargin`), so an auditor can tell which market a
margin reflects and which ticks were coalesced into it, from the store alone.

Every :class:`~marginflow.stream.events.AccountMargin` carries its version: the trades
offset its positions reflect (``position_version``) and the offset of the last market event
applied (``market_offset``). Results for one account are ordered by that pair
(lexicographically); the sink keeps the greatest. Replays after a crash publish results
whose values equal, to float64 rounding, a recompute at their versions: the engine's P&L
rows are a function of the market alone, bit for bit (any history, any thread count), and
the incremental engine sums an account's P&L vector in the order changes arrive, so two
runs batching differently differ in the last bits (measured <= 1.1e-15 relative;
``tests/stream/test_determinism.py``, and the crash tests recompute every published
version through :func:`marginflow.stream.reconcile.check_margin_versions`).

That holds between processes running the same code and configuration only: a calculator
restarted on edited pricing code (or another revaluation setting) publishes other values
for versions published before (the American pricer's rewrite moved margins of the crash
test's book by up to 1.4e-7). Restart every calculator of a group together after such a
change; results published before it carry the old code's values (the snapshots hold only
holdings and market levels, so they stay valid).

The engine holds every account of the book; accounts on partitions this worker does not
own are kept flat (zero positions), so their margin is never published from here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from marginflow.core.book import Book, InstrumentKind, Instruments
from marginflow.core.errors import ConfigurationError, RowFailure, ValidationError
from marginflow.core.ids import AccountId, MemberId
from marginflow.engine.settings import MarginSettings, build_engine, fingerprint, identity
from marginflow.engine.state import MarginEngine
from marginflow.io.book import load_book, load_id, reference_files
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection, dead_letter, encode
from marginflow.stream.log.base import TP
from marginflow.stream.topics import DEAD_LETTERS, MARGINS, MARKET, POSITIONS, Topology
from marginflow.stream.worker import Output, Processor

MSG_UNKNOWN = "unknown {what} {name!r} (not in the engine's reference data)"
MSG_HELD_TOO_LONG = (
    "unknown {what} {name!r}: its reference data did not arrive within {seconds:g} s of "
    "market time (held since offset {offset})"
)
MSG_LISTED = "instrument {id!r} is already listed with other terms"
MSG_MOVED = "account {id!r} belongs to {member!r}; an account does not move between members"
MSG_NEW_UNDERLYING = (
    "underlying {name!r} is not in the start-of-day book: new underlyings join at a "
    "start-of-day load (the scenario set spans its universe)"
)
MSG_ROLL_BACK = "{date} is before the valuation date {current}"
HOLD_SECONDS = 60.0
"""How long (in market event time) a positions event naming an unknown account or
instrument waits for its reference data before it is dead-lettered."""
HOLD_MAX = 1_000
"""Positions events one account may have waiting; beyond, the oldest is dead-lettered."""
MSG_VOL_POINT = "vol surface points are not supported by the engine; send the ATM level"
MSG_CHANGE_CONFLICT = "change {id!r} was applied at market offset {offset} with other content"


@dataclass(frozen=True, slots=True)
class MarginSetup:
    """What the risk calculators margin: a book's reference data and market (its positions
    are not used: they arrive on the log as start-of-day snapshots and trades) and the
    margin settings. Every calculator of a group must be given the same."""

    book: Book
    settings: MarginSettings = field(default_factory=MarginSettings)
    load: str = ""
    """The start-of-day load's id (:func:`marginflow.io.book.load_id`: the book folder's
    reference files and the settings), named by every margin; empty for a book given in
    memory, whose margins cannot be reproduced from the store."""

    @classmethod
    def from_folder(
        cls, folder: Path, settings: MarginSettings | None = None
    ) -> tuple[MarginSetup, list[RowFailure]]:
        """The setup of a book folder (the format ``marginflow margin`` reads), and the rows
        of its files that were rejected."""
        settings = settings or MarginSettings()
        loaded = load_book(folder)
        load, _ = load_id(reference_files(folder), settings.to_json())
        return cls(loaded.book, settings, load), loaded.failures

    def engine(self) -> MarginEngine:
        """The engine for this book with every account flat."""
        return build_engine(self.book.without_positions(), self.settings)


class _Held(msgspec.Struct, array_like=True):
    version: int  # trades offset of the last change applied
    event_time: int  # event time of that change
    quantities: dict[str, int]
    # positions events waiting for reference data, in order:
    # (trades offset it reflects, its offset on the positions topic, its bytes)
    pending: list[tuple[int, int, bytes]] = []


_encode = msgspec.msgpack.Encoder().encode
_decode_part = msgspec.msgpack.Decoder(dict[str, _Held]).decode


class _MarketState(msgspec.Struct, array_like=True):
    offset: int
    event_time: int
    spot: dict[str, float]
    vol: dict[str, float]
    # risk-parameter changes applied: parameter -> value, and change_id -> its content
    params: dict[str, float | str] = {}
    changes: dict[str, tuple[int, bytes]] = {}
    skew: dict[str, float] = {}
    # reference data applied, in order: listings (id -> event bytes), accounts opened
    # (account, member, type), member names, and the valuation date after a roll
    listings: dict[str, bytes] = {}
    accounts: list[tuple[str, str, str]] = []
    members: dict[str, str] = {}
    business_date: str = ""


_decode_market = msgspec.msgpack.Decoder(_MarketState).decode
_decode_positions = msgspec.msgpack.Decoder(ev.AccountPositions).decode
_decode_listing = msgspec.msgpack.Decoder(ev.InstrumentRef).decode
_encode_event = msgspec.msgpack.Encoder().encode


class RiskCalculator(Processor):
    """Positions + market data -> account margins."""

    def __init__(self, topology: Topology, engine: MarginEngine, *, book_load: str = "") -> None:
        self.topology = topology
        self._book_load = book_load
        self.inputs = (topology.name(POSITIONS),)
        self.broadcasts = (topology.name(MARKET),)
        self._market_topic = topology.name(MARKET)
        self._out = topology.name(MARGINS)
        self._engine = engine
        book = engine.book
        self._index = {a: i for i, a in enumerate(book.positions.accounts)}
        self._member = [MemberId(book.positions.members[m]) for m in book.positions.account_member]
        self._instruments = set(book.instruments.ids)
        self._underlyings = set(book.underlyings.ids)
        self._model = engine.model_info.name
        self._codecs: dict[str, Codec[ev.Event]] = {
            topology.name(POSITIONS): Codec(topology.spec(POSITIONS).events),
            self._market_topic: Codec(topology.spec(MARKET).events),
        }
        self._parts: dict[TP, dict[str, _Held]] = {}
        self._owner: dict[str, TP] = {}
        self._deltas: dict[str, dict[str, float]] = {}
        self._changed: dict[str, int] = {}  # account -> event time that triggered it
        self._moves: dict[str, list[float | None]] = {}
        self._market = _MarketState(offset=-1, event_time=0, spot={}, vol={})
        # what the batch being read covers on the market topic (see AccountMargin)
        self._market_from: int | None = None  # first market offset read in it
        self._ticks = 0  # price and vol ticks accepted in it
        self._moved = 0  # underlying moves applied to the engine for it
        self._profile: dict[str, float] = {}  # seconds per stage of recompute, summed
        self._params_dirty = False  # parameter changes accepted, not yet in the engine
        self._waiting: set[tuple[TP, str]] = set()  # accounts with positions events held
        self._fingerprint = ""  # of the model in force
        self._fingerprint_of: ExpectedShortfallModel | None = None
        self._dead = topology.name(DEAD_LETTERS)
        self._hold_ns = int(HOLD_SECONDS * 1e9)

    def codec(self, topic: str) -> Codec[ev.Event]:
        return self._codecs[topic]

    # -- ownership --------------------------------------------------------------------------
    def restore(self, tp: TP, data: bytes | None) -> None:
        held = {} if data is None else _decode_part(data)
        self._parts[tp] = held
        changes: dict[str, dict[str, float]] = {}
        for account, h in held.items():
            self._owner[account] = tp
            if h.quantities:
                changes[account] = {i: float(q) for i, q in h.quantities.items()}
            self._changed[account] = h.event_time
            if h.pending:
                self._waiting.add((tp, account))
        if changes:
            self._engine.apply_trades(changes)

    def release(self, tp: TP) -> None:
        held = self._parts.pop(tp, {})
        flat = {
            a: {i: -float(q) for i, q in h.quantities.items()}
            for a, h in held.items()
            if a in self._index  # an account whose first positions are held has none here
        }
        for account in held:
            self._owner.pop(account, None)
            self._changed.pop(account, None)
            self._waiting.discard((tp, account))
            pending = self._deltas.pop(account, None)
            if pending:  # not yet in the engine: undo only what it holds
                for i, dq in pending.items():
                    flat[account][i] = flat[account].get(i, 0.0) + dq
        if flat:
            self._engine.apply_trades(flat)

    # -- events -----------------------------------------------------------------------------
    def apply(
        self, tp: TP, events: Sequence[tuple[int, ev.Event]]
    ) -> Sequence[tuple[int, Rejection]]:
        if tp[0] == self._market_topic:
            return self._apply_market(events)
        held = self._parts[tp]
        for offset, event in events:
            assert isinstance(event, ev.AccountPositions)
            account = event.account
            h = held.get(account)
            if h is None:
                h = held[account] = _Held(-1, 0, {})
                self._owner[account] = tp
            if event.source_offset <= h.version or (
                h.pending and event.source_offset <= h.pending[-1][0]
            ):
                continue  # a replayed result of the keeper: already applied or held
            if h.pending or self._missing(event) is not None:
                # held (in order) until its reference data arrives: see recompute
                h.pending.append((event.source_offset, offset, encode(event)))
                self._waiting.add((tp, account))
                continue
            self._take(h, event)
        return ()

    def _take(self, h: _Held, event: ev.AccountPositions) -> None:
        """Apply an account's absolute holdings (deltas go to the engine at recompute);
        holdings of expired series are not the engine's any more and are left out."""
        account = event.account
        deltas = self._deltas.setdefault(account, {})
        engine = self._engine
        for instrument, q in zip(event.instruments, event.quantities, strict=True):
            if engine.is_expired(instrument):
                continue
            dq = q - h.quantities.get(instrument, 0)
            if dq:
                deltas[instrument] = deltas.get(instrument, 0.0) + dq
            if q:
                h.quantities[instrument] = q
            else:
                h.quantities.pop(instrument, None)
        h.version, h.event_time = event.source_offset, event.event_time
        self._changed[account] = event.event_time

    def _missing(self, event: ev.AccountPositions) -> Rejection | None:
        """The reference data ``event`` names that the engine does not have yet."""
        if event.account not in self._index:
            return Rejection("account", MSG_UNKNOWN.format(what="account", name=event.account))
        for i in event.instruments:
            if i not in self._instruments:
                return Rejection("instruments", MSG_UNKNOWN.format(what="instrument", name=i))
        return None

    def _release_held(self) -> list[Output]:
        """Apply the held positions events whose reference data has arrived, in order per
        account; dead-letter those that waited longer than ``HOLD_SECONDS`` of market time
        (or beyond ``HOLD_MAX`` per account), naming the field."""
        out: list[Output] = []
        now = time.time_ns()
        for tp, account in sorted(self._waiting):
            h = self._parts[tp][account]
            while h.pending:
                _, offset, raw = h.pending[0]
                event = _decode_positions(raw)
                why = self._missing(event)
                if why is None:
                    h.pending.pop(0)
                    if event.source_offset > h.version:
                        self._take(h, event)
                    continue
                waited = self._market.event_time - event.event_time
                if waited <= self._hold_ns and len(h.pending) <= HOLD_MAX:
                    break
                h.pending.pop(0)
                what, name = (
                    ("account", account)
                    if why.field == "account"
                    else ("instrument", why.reason.split("'")[1])
                )
                reason = MSG_HELD_TOO_LONG.format(
                    what=what, name=name, seconds=HOLD_SECONDS, offset=offset
                )
                letter = dead_letter(
                    topic=tp[0],
                    partition=tp[1],
                    offset=offset,
                    raw=raw,
                    rejection=Rejection(why.field, reason),
                    now_ns=now,
                )
                out.append(Output(self._dead, letter))
            if not h.pending:
                self._waiting.discard((tp, account))
        return out

    def _apply_market(self, events: Sequence[tuple[int, ev.Event]]) -> list[tuple[int, Rejection]]:
        refused = []
        if events and self._market_from is None:
            self._market_from = events[0][0]
        for offset, event in events:
            self._market.offset = offset
            why = self._apply_market_event(offset, event)
            if why is not None:
                refused.append((offset, why))
        return refused

    def _apply_market_event(self, offset: int, event: ev.Event) -> Rejection | None:
        if isinstance(event, ev.RiskParameterChange):
            return self._apply_parameter(offset, event)
        if isinstance(event, ev.InstrumentRef | ev.AccountRef | ev.MemberRef | ev.DateRoll):
            why = self._apply_reference(event)
            if why is None:
                self._market.event_time = max(self._market.event_time, event.event_time)
            return why
        if not isinstance(event, ev.PriceUpdate | ev.VolUpdate):
            return None
        if event.underlying not in self._underlyings:
            return Rejection(
                "underlying", MSG_UNKNOWN.format(what="underlying", name=event.underlying)
            )
        if isinstance(event, ev.VolUpdate):
            if event.expiry is not None or event.strike is not None:
                return Rejection("expiry", MSG_VOL_POINT)
            if event.vol is not None and event.vol <= 0:
                return Rejection("vol", "must be > 0 for the engine")
        move = self._moves.setdefault(event.underlying, [None, None, None])
        if isinstance(event, ev.PriceUpdate):
            move[0] = event.price
        else:
            if event.vol is not None:
                move[1] = event.vol
            if event.skew is not None:
                move[2] = event.skew
        self._market.event_time = event.event_time
        self._ticks += 1
        return None

    def _apply_reference(
        self, event: ev.InstrumentRef | ev.AccountRef | ev.MemberRef | ev.DateRoll
    ) -> Rejection | None:
        """Reference data, applied to the engine as it is read (it is rare, and positions
        events of the same batch may need it). The decision depends on the log alone."""
        m = self._market
        if isinstance(event, ev.MemberRef):
            m.members[event.id] = event.name
            return None
        if isinstance(event, ev.AccountRef):
            a = self._index.get(event.id)
            if a is not None:
                if self._member[a] != event.member:
                    return Rejection(
                        "member", MSG_MOVED.format(id=event.id, member=self._member[a])
                    )
                return None
            self._open((event.id, event.member, event.account_type))
            m.accounts.append((event.id, event.member, event.account_type))
            return None
        if isinstance(event, ev.DateRoll):
            return self._roll(event.business_date)
        return self._list(event)

    def _open(self, account: tuple[str, str, str]) -> None:
        self._engine.open_accounts([account])
        self._index[account[0]] = len(self._member)
        self._member.append(MemberId(account[1]))

    def _list(self, event: ev.InstrumentRef) -> Rejection | None:
        content = _listing_content(event)
        seen = self._market.listings.get(event.id)
        if seen is not None:
            return None if seen == content else Rejection("id", MSG_LISTED.format(id=event.id))
        if event.id in self._instruments:  # in the start-of-day book
            return None
        try:
            new = listing(self._engine.book, event)
        except ValidationError as exc:
            return Rejection(exc.field, exc.reason)
        touched = self._engine.list_instruments(new)
        self._instruments.add(event.id)
        self._market.listings[event.id] = content
        self._mark(touched)
        return None

    def _roll(self, business_date: str) -> Rejection | None:
        day = dt.date.fromisoformat(business_date)
        current = self._engine.book.market.valuation_date
        if day < current:
            return Rejection("business_date", MSG_ROLL_BACK.format(date=day, current=current))
        if day == current:
            return None
        left = set(self._engine.roll(day))
        self._market.business_date = business_date
        for part in self._parts.values():  # positions in expired series are not held any more
            for h in part.values():
                for i in left & h.quantities.keys():
                    del h.quantities[i]
        for deltas in self._deltas.values():
            for i in left & deltas.keys():
                del deltas[i]
        for name in self._owner:
            self._changed.setdefault(name, self._market.event_time)
        return None

    def _mark(self, touched: Any) -> None:
        accounts = self._engine.book.positions.accounts
        for a in touched.tolist():
            name = accounts[a]
            if name in self._owner and name not in self._changed:
                self._changed[name] = self._market.event_time

    def _apply_parameter(self, offset: int, change: ev.RiskParameterChange) -> Rejection | None:
        why = accept_parameter_change(
            self._engine, self._market.params, self._market.changes, offset, change
        )
        if why is None and change.model == self._engine.model_info.name:
            self._params_dirty = True
            self._market.event_time = change.event_time
        return why

    # -- results ----------------------------------------------------------------------------
    def replay_market(self, events: Sequence[tuple[int, ev.Event]]) -> list[tuple[int, Rejection]]:
        """Apply market-topic events (offset, event) as one batch would and bring the engine
        up to them: how a stored margin's market is rebuilt from the store's copy of the
        topic. Returns the events refused, as the stream dead-lettered them."""
        refused = self._apply_market(events)
        self._settle()
        return refused

    def _settle(self, trades: dict[str, dict[str, float]] | None = None) -> None:
        """Parameter changes, the coalesced moves read so far and ``trades`` (position
        deltas by account), into the engine: one call, every account touched refreshed
        once."""
        engine = self._engine
        if self._params_dirty:
            self._params_dirty = False
            engine.set_model(model_with(engine.model, self._market.params))
            for name in self._owner:  # every owned account: its margin may have moved
                self._changed.setdefault(name, self._market.event_time)
        if self._moves or trades:
            t0 = time.perf_counter()
            grid, kernel = engine.timings.get("eep_grid", 0.0), engine.timings.get("kernel", 0.0)
            # every moved underlying revalued in one call, every account touched refreshed
            # once (accounts a trade touched are already marked, with the trade's time)
            touched = engine.apply_batch(moves=self._moves, trades=trades)
            spent = time.perf_counter() - t0
            grid = engine.timings.get("eep_grid", 0.0) - grid
            kernel = engine.timings.get("kernel", 0.0) - kernel
            self._time("revaluation: premium grids", grid)
            self._time("revaluation: kernel", kernel)
            self._time("refresh (P&L sums, tails, add-ons)", spent - grid - kernel)
            self._moved += len(self._moves)
            for underlying, (spot, vol, skew) in self._moves.items():
                if spot is not None:
                    self._market.spot[underlying] = spot
                if vol is not None:
                    self._market.vol[underlying] = vol
                if skew is not None:
                    self._market.skew[underlying] = skew
            accounts = engine.book.positions.accounts
            for a in touched.tolist():
                name = accounts[a]
                if name in self._owner and name not in self._changed:
                    self._changed[name] = self._market.event_time
            self._moves.clear()

    def _time(self, stage: str, seconds: float) -> None:
        self._profile[stage] = self._profile.get(stage, 0.0) + seconds

    def timings(self) -> dict[str, float]:
        """Seconds spent so far in each stage of :meth:`recompute`: the premium grids and
        the kernel of the revaluation of moved underlyings, the refresh of the accounts
        touched (P&L sums, tail statistics, add-ons), and building the margin events."""
        return dict(self._profile)

    def recompute(self) -> list[Output]:
        engine = self._engine
        # held positions first: their reference data may have come in this batch
        out: list[Output] = self._release_held() if self._waiting else []
        deltas, self._deltas = self._deltas, {}
        self._settle(deltas)
        t0 = time.perf_counter()
        now = time.time_ns()
        margin, labels = engine.margin, engine.scenarios.labels
        if self._fingerprint_of is not engine.model:
            self._fingerprint = fingerprint(identity(engine))
            self._fingerprint_of = engine.model
        m = self._market
        market_from = m.offset + 1 if self._market_from is None else self._market_from
        ticks, moves = self._ticks, self._moved
        self._market_from, self._ticks, self._moved = None, 0, 0
        for account, event_time in self._changed.items():
            tp = self._owner.get(account)
            if tp is None:
                continue
            version = self._parts[tp][account].version
            if version < 0:
                continue  # nothing of it applied yet (its first positions are held)
            a = self._index[account]
            result = ev.AccountMargin(
                account=AccountId(account),
                member=self._member[a],
                margin=float(margin[a]),
                model=self._model,
                source_partition=tp[1],
                position_version=version,
                market_offset=self._market.offset,
                event_time=event_time,
                computed_time=now,
                es=float(engine.es_base[a]),
                apc=float(engine.apc[a]),
                concentration=float(engine.concentration[a]),
                var=float(engine.var[a]),
                driver=labels[int(engine.worst[a])],
                settings=self._fingerprint,
                book_load=self._book_load,
                business_date=engine.book.market.valuation_date.isoformat(),
                market_from=market_from,
                market_ticks=ticks,
                market_moves=moves,
            )
            out.append(Output(self._out, result))
        self._changed.clear()
        self._time("results (margin events)", time.perf_counter() - t0)
        return out

    # -- snapshots --------------------------------------------------------------------------
    def snapshot(self, tp: TP) -> bytes:
        return _encode(self._parts[tp])

    def snapshot_broadcast(self) -> bytes:
        return _encode(self._market)

    def restore_broadcast(self, data: bytes | None) -> None:
        if data is None:
            return
        market = _decode_market(data)
        for account in market.accounts:
            if account[0] not in self._index:
                self._open(account)
        for raw in market.listings.values():
            event = _decode_listing(raw)
            if event.id not in self._instruments:
                self._engine.list_instruments(listing(self._engine.book, event))
                self._instruments.add(event.id)
        if market.business_date:
            self._engine.roll(dt.date.fromisoformat(market.business_date))
        moves = {
            u: (market.spot.get(u), market.vol.get(u), market.skew.get(u))
            for u in sorted(market.spot.keys() | market.vol.keys() | market.skew.keys())
        }
        if moves:
            self._engine.apply_moves(moves)
        if market.params:
            self._engine.set_model(model_with(self._engine.model, market.params))
        self._market = market


def listing(book: Book, event: ev.InstrumentRef) -> Instruments:
    """A listed series as one instrument of ``book`` (resolved on its valuation date);
    raises :class:`ValidationError` naming the field the engine cannot take."""
    u = book.underlyings.index().get(event.underlying)
    if u is None:
        raise ValidationError("underlying", MSG_NEW_UNDERLYING.format(name=event.underlying))
    if event.kind == "future":
        raise ValidationError("kind", "futures are not in the engine's model (stocks and options)")
    option = event.kind in ("call", "put")
    expiry = np.datetime64(event.expiry, "D") if option and event.expiry else np.datetime64("NaT")
    new = Instruments(
        ids=(event.id,),
        underlying=np.array([u], dtype=np.int32),
        kind=np.array(
            [
                {"equity": InstrumentKind.STOCK, "call": InstrumentKind.CALL}.get(
                    event.kind, InstrumentKind.PUT
                )
            ],
            dtype=np.int8,
        ),
        strike=np.array([float(event.strike or 0.0) if option else 0.0]),
        expiry=np.array([expiry], dtype="datetime64[D]"),
        is_american=np.array([option and event.style == "american"]),
        multiplier=np.array([event.multiplier]),
        valuation_date=book.market.valuation_date,
    )
    if new.expired()[0]:
        raise ValidationError(
            "expiry", f"{event.expiry} is before the valuation date {book.market.valuation_date}"
        )
    return new


def _listing_content(event: ev.InstrumentRef) -> bytes:
    """A listing's terms (not when it was sent): a producer's retry is the same listing."""
    return _encode_event(msgspec.structs.replace(event, event_time=1))


def model_with(
    model: ExpectedShortfallModel, params: dict[str, float | str]
) -> ExpectedShortfallModel:
    """``model`` with ``params`` (risk-parameter changes: field name -> value) applied."""
    return replace(model, **{k: _parse_param(k, v) for k, v in params.items()})


def accept_parameter_change(
    engine: MarginEngine,
    params: dict[str, float | str],
    changes: dict[str, tuple[int, bytes]],
    offset: int,
    change: ev.RiskParameterChange,
) -> Rejection | None:
    """Decide an approved change of the margin model's settings against those accepted so
    far (``params``, and ``changes`` by change id with their market offset and content);
    accept it into both, or say why not. A change for another model is not the engine's: it
    passes untouched (the sink audits it all the same). The decision depends on the log
    alone, so a calculator's replay and a batch recompute decide alike. The change takes
    effect when read, in market-offset order; ``effective_time`` is the publisher's to honour
    (publish the change when it is due)."""
    if change.model != engine.model_info.name:
        return None
    content = _encode(change)
    seen = changes.get(change.change_id)
    if seen is not None:
        if seen[1] == content:
            return None  # the same change again (a producer's retry)
        return Rejection(
            "change_id", MSG_CHANGE_CONFLICT.format(id=change.change_id, offset=seen[0])
        )
    try:
        engine.check_model(model_with(engine.model, {**params, change.parameter: change.value}))
    except ConfigurationError as exc:
        field = "parameter" if "unknown parameter" in str(exc) else "value"
        return Rejection(field, str(exc))
    params[change.parameter] = change.value
    changes[change.change_id] = (offset, content)
    return None


def _parse_param(parameter: str, value: float | str) -> Any:
    """``value`` as the expected-shortfall model's field ``parameter`` holds it."""
    parsed = ExpectedShortfallModel.from_params({parameter: str(value)})
    return getattr(parsed, parameter)
