"""The position keeper: trades (and start-of-day positions) in, account positions out.

State per trades partition: for each account on it, the quantity of each instrument and the
offset of the last input applied to the account (its version). After each micro-batch it
publishes one :class:`~marginflow.stream.events.AccountPositions` per changed account with
the new absolute quantities of the instruments that changed, versioned by that offset:
absolute quantities make a replayed event harmless and a version makes an old one
recognisable.

Order, event time and late events
---------------------------------
Per-account order is the partition's order (trades are keyed by account). Event time and
processing time differ: each partition keeps a watermark, the greatest event time seen minus
``allowed_lateness``. Policy:

* a **late trade** (event time below the watermark) is applied all the same: positions are
  sums, which do not depend on order, so lateness changes no result; it is counted
  (``late_trades``) so the lateness of a source shows in the metrics;
* a **late start-of-day position** (event time before a trade of the same account already
  applied) is refused into the dead letters: it sets a quantity, so applying it would erase
  the trades before it. Start-of-day positions must precede the day's trades.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from marginflow.core.ids import AccountId, InstrumentId
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection
from marginflow.stream.log.base import TP
from marginflow.stream.topics import POSITIONS, TRADES, Topology
from marginflow.stream.worker import Output, Processor


class _Book(msgspec.Struct):
    """The positions of the accounts on one partition."""

    quantities: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    versions: dict[str, int] = msgspec.field(default_factory=dict)
    last_trade: dict[str, int] = msgspec.field(default_factory=dict)  # event time per account
    max_event_time: int = 0


MSG_LATE_SOD = (
    "start-of-day position is late: a trade of {account} at event time {t} was already "
    "applied; publish start-of-day positions before the day's trades"
)


def late_start_of_day(event: ev.PositionSnapshot, last_trade_time: int) -> Rejection | None:
    """The refusal of a start-of-day position arriving after a later trade of its account."""
    if event.event_time < last_trade_time:
        return Rejection(
            "event_time", MSG_LATE_SOD.format(account=event.account, t=last_trade_time)
        )
    return None


_encode = msgspec.msgpack.Encoder().encode
_decode_book = msgspec.msgpack.Decoder(_Book).decode


class PositionKeeper(Processor):
    """Trades -> positions. Group name by convention ``<prefix>position-keeper``."""

    def __init__(self, topology: Topology, *, allowed_lateness_ns: int = 5_000_000_000) -> None:
        self.topology = topology
        self.allowed_lateness_ns = allowed_lateness_ns
        self.late_trades = 0
        self.inputs = (topology.name(TRADES),)
        self._out = topology.name(POSITIONS)
        self._codec: Codec[ev.Event] = Codec(topology.spec(TRADES).events)
        self._books: dict[TP, _Book] = {}
        # changed this batch: (tp, account) -> (instruments changed, last event time)
        self._changed: dict[tuple[TP, str], tuple[set[str], int]] = {}

    def codec(self, topic: str) -> Codec[ev.Event]:
        return self._codec

    def restore(self, tp: TP, data: bytes | None) -> None:
        self._books[tp] = _Book() if data is None else _decode_book(data)

    def release(self, tp: TP) -> None:
        self._books.pop(tp, None)
        for key in [k for k in self._changed if k[0] == tp]:
            del self._changed[key]

    def apply(
        self, tp: TP, events: Sequence[tuple[int, ev.Event]]
    ) -> Sequence[tuple[int, Rejection]]:
        book = self._books[tp]
        quantities, versions, changed = book.quantities, book.versions, self._changed
        last_trade, lateness = book.last_trade, self.allowed_lateness_ns
        refused: list[tuple[int, Rejection]] = []
        for offset, event in events:
            if isinstance(event, ev.Trade):
                account, instrument, t = event.account, event.instrument, event.event_time
                held = quantities.setdefault(account, {})
                held[instrument] = held.get(instrument, 0) + event.quantity
                if t < book.max_event_time - lateness:
                    self.late_trades += 1
                elif t > book.max_event_time:
                    book.max_event_time = t
                if t > last_trade.get(account, 0):
                    last_trade[account] = t
            elif isinstance(event, ev.PositionSnapshot):
                account, instrument = event.account, event.instrument
                why = late_start_of_day(event, last_trade.get(account, 0))
                if why is not None:
                    refused.append((offset, why))
                    continue
                quantities.setdefault(account, {})[instrument] = event.quantity
            else:
                continue
            versions[account] = offset
            entry = changed.get((tp, account))
            if entry is None:
                changed[(tp, account)] = ({instrument}, event.event_time)
            else:
                entry[0].add(instrument)
                changed[(tp, account)] = (entry[0], event.event_time)
        return refused

    def recompute(self) -> list[Output]:
        out = []
        for (tp, account), (instruments, event_time) in self._changed.items():
            book = self._books[tp]
            held = book.quantities[account]
            names = tuple(sorted(instruments))
            qty = tuple(held.get(i, 0) for i in names)
            for name, q in zip(names, qty, strict=True):
                if q == 0:
                    del held[name]  # flat: keep the state as small as the book
            event = ev.AccountPositions(
                account=AccountId(account),
                instruments=tuple(InstrumentId(n) for n in names),
                quantities=qty,
                source_partition=tp[1],
                source_offset=book.versions[account],
                event_time=event_time,
            )
            out.append(Output(self._out, event))
        self._changed.clear()
        return out

    def snapshot(self, tp: TP) -> bytes:
        return _encode(self._books[tp])

    def positions(self, tp: TP) -> dict[str, dict[str, int]]:
        """The current positions of the accounts on ``tp`` (for tests and inspection)."""
        return self._books[tp].quantities
