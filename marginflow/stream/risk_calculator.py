"""The risk calculator: account positions and market data in, account margins out, through
the engine's incremental path (:class:`marginflow.engine.state.MarginEngine`).

Inputs: the positions topic (partitioned by account; the keeper's absolute, versioned
positions) and the market topic (broadcast: every calculator reads all of it). A
micro-batch (count or time, whichever first; see :class:`~marginflow.stream.worker.
WorkerSettings`) is applied as a whole: the last price and vol of each moved underlying are
applied once, each changed account's position deltas are applied together, and the margin
of each owned account the batch touched is recomputed once and published.

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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec

from marginflow.core.book import Book
from marginflow.core.errors import ConfigurationError, RowFailure
from marginflow.core.ids import AccountId, MemberId
from marginflow.engine.settings import MarginSettings, build_engine
from marginflow.engine.state import MarginEngine
from marginflow.io.book import load_book
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection
from marginflow.stream.log.base import TP
from marginflow.stream.topics import MARGINS, MARKET, POSITIONS, Topology
from marginflow.stream.worker import Output, Processor

MSG_UNKNOWN = "unknown {what} {name!r} (not in the engine's reference data)"
MSG_VOL_POINT = "vol surface points are not supported by the engine; send the ATM level"
MSG_CHANGE_CONFLICT = "change {id!r} was applied at market offset {offset} with other content"


@dataclass(frozen=True, slots=True)
class MarginSetup:
    """What the risk calculators margin: a book's reference data and market (its positions
    are not used: they arrive on the log as start-of-day snapshots and trades) and the
    margin settings. Every calculator of a group must be given the same."""

    book: Book
    settings: MarginSettings = field(default_factory=MarginSettings)

    @classmethod
    def from_folder(
        cls, folder: Path, settings: MarginSettings | None = None
    ) -> tuple[MarginSetup, list[RowFailure]]:
        """The setup of a book folder (the format ``marginflow margin`` reads), and the rows
        of its files that were rejected."""
        loaded = load_book(folder)
        return cls(loaded.book, settings or MarginSettings()), loaded.failures

    def engine(self) -> MarginEngine:
        """The engine for this book with every account flat."""
        return build_engine(self.book.without_positions(), self.settings)


class _Held(msgspec.Struct, array_like=True):
    version: int  # trades offset of the last change applied
    event_time: int  # event time of that change
    quantities: dict[str, int]


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


_decode_market = msgspec.msgpack.Decoder(_MarketState).decode


class RiskCalculator(Processor):
    """Positions + market data -> account margins."""

    def __init__(self, topology: Topology, engine: MarginEngine) -> None:
        self.topology = topology
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
        self._params_dirty = False  # parameter changes accepted, not yet in the engine

    def codec(self, topic: str) -> Codec[ev.Event]:
        return self._codecs[topic]

    # -- ownership --------------------------------------------------------------------------
    def restore(self, tp: TP, data: bytes | None) -> None:
        held = {} if data is None else _decode_part(data)
        self._parts[tp] = held
        changes: dict[str, dict[str, float]] = {}
        for account, h in held.items():
            self._owner[account] = tp
            changes[account] = {i: float(q) for i, q in h.quantities.items()}
            self._changed[account] = h.event_time
        if changes:
            self._engine.apply_trades(changes)

    def release(self, tp: TP) -> None:
        held = self._parts.pop(tp, {})
        flat = {a: {i: -float(q) for i, q in h.quantities.items()} for a, h in held.items()}
        for account in held:
            self._owner.pop(account, None)
            self._changed.pop(account, None)
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
        held, refused = self._parts[tp], []
        for offset, event in events:
            assert isinstance(event, ev.AccountPositions)
            why = self._check(event)
            if why is not None:
                refused.append((offset, why))
                continue
            account = event.account
            h = held.get(account)
            if h is None:
                h = held[account] = _Held(-1, 0, {})
                self._owner[account] = tp
            if event.source_offset <= h.version:
                continue  # a replayed result of the keeper: already applied
            deltas = self._deltas.setdefault(account, {})
            for instrument, q in zip(event.instruments, event.quantities, strict=True):
                dq = q - h.quantities.get(instrument, 0)
                if dq:
                    deltas[instrument] = deltas.get(instrument, 0.0) + dq
                if q:
                    h.quantities[instrument] = q
                else:
                    h.quantities.pop(instrument, None)
            h.version, h.event_time = event.source_offset, event.event_time
            self._changed[account] = event.event_time
        return refused

    def _check(self, event: ev.AccountPositions) -> Rejection | None:
        if event.account not in self._index:
            return Rejection("account", MSG_UNKNOWN.format(what="account", name=event.account))
        for i in event.instruments:
            if i not in self._instruments:
                return Rejection("instruments", MSG_UNKNOWN.format(what="instrument", name=i))
        return None

    def _apply_market(self, events: Sequence[tuple[int, ev.Event]]) -> list[tuple[int, Rejection]]:
        refused = []
        for offset, event in events:
            self._market.offset = offset
            why = self._apply_market_event(offset, event)
            if why is not None:
                refused.append((offset, why))
        return refused

    def _apply_market_event(self, offset: int, event: ev.Event) -> Rejection | None:
        if isinstance(event, ev.RiskParameterChange):
            return self._apply_parameter(offset, event)
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
        return None

    def _apply_parameter(self, offset: int, change: ev.RiskParameterChange) -> Rejection | None:
        why = accept_parameter_change(
            self._engine, self._market.params, self._market.changes, offset, change
        )
        if why is None and change.model == self._engine.model_info.name:
            self._params_dirty = True
            self._market.event_time = change.event_time
        return why

    # -- results ----------------------------------------------------------------------------
    def recompute(self) -> list[Output]:
        engine = self._engine
        if self._params_dirty:
            self._params_dirty = False
            engine.set_model(model_with(engine.model, self._market.params))
            for name in self._owner:  # every owned account: its margin may have moved
                self._changed.setdefault(name, self._market.event_time)
        if self._moves:
            # every moved underlying revalued in one call, every holder refreshed once
            touched = engine.apply_moves(self._moves)
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
        if self._deltas:
            engine.apply_trades(self._deltas)
            self._deltas = {}
        now = time.time_ns()
        out = []
        margin = engine.margin
        for account, event_time in self._changed.items():
            tp = self._owner.get(account)
            if tp is None:
                continue
            a = self._index[account]
            result = ev.AccountMargin(
                account=AccountId(account),
                member=self._member[a],
                margin=float(margin[a]),
                model=self._model,
                source_partition=tp[1],
                position_version=self._parts[tp][account].version,
                market_offset=self._market.offset,
                event_time=event_time,
                computed_time=now,
            )
            out.append(Output(self._out, result))
        self._changed.clear()
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
        moves = {
            u: (market.spot.get(u), market.vol.get(u), market.skew.get(u))
            for u in sorted(market.spot.keys() | market.vol.keys() | market.skew.keys())
        }
        if moves:
            self._engine.apply_moves(moves)
        if market.params:
            self._engine.set_model(model_with(self._engine.model, market.params))
        self._market = market


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
