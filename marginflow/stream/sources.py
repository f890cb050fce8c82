"""Input files as events: a day of trades and of market data to replay, CSV or Parquet.

==========  ===============================================================================
trades      ``time, account, instrument, quantity[, price, trade_id]`` — ``quantity`` whole
            contracts (options) or shares (stock), + bought / - sold, never 0; ``price``
            per unit (default 0: margin does not use it); ``trade_id`` default
            ``<file name>:<line>``, so a file published twice is recognisably the same
market      ``time, underlying, spot[, atm_vol, skew]`` — a row moves the spot, and the ATM
            vol and smile slope where those cells are filled (blank = unchanged)
==========  ===============================================================================

``time`` is an ISO 8601 timestamp (``2019-01-02T09:30:00.250``, ``...Z`` or ``+01:00``; no
zone = UTC) or whole nanoseconds since the epoch. Rows are replayed in time order (a stable
sort: rows with equal times keep their file order); trades and market rows of one replay are
merged by time.

Bad rows are returned as :class:`~marginflow.core.errors.RowFailure` (file, line, field,
reason, raw text) and every good row is still replayed, as every loader here does.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from marginflow.core.errors import RowFailure, ValidationError
from marginflow.core.ids import AccountId, InstrumentId, UnderlyingId
from marginflow.io import bounds
from marginflow.io.book import read_table
from marginflow.io.csv_rows import Column, FieldError, ParsedRows, nonnegative
from marginflow.stream import events as ev
from marginflow.stream.codec import encode
from marginflow.stream.log.base import Producer
from marginflow.stream.topics import MARKET, TRADES, Topology, partition_for


def timestamp_ns(text: str) -> int:
    """Nanoseconds since the epoch of an ISO 8601 timestamp (no zone = UTC) or of a whole
    number of nanoseconds."""
    if text.isascii() and text.isdigit():
        value = int(text[:20])  # more digits than an int64 holds are out of range anyway
        if len(text) > 19 or value >= 1 << 63:
            raise FieldError(f"is outside 1970-01-01 .. 2262-04-11 (int64 nanoseconds): {text!r}")
        return value
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(f"is not an ISO 8601 time or whole nanoseconds: {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    whole = int(t.replace(microsecond=0).timestamp())
    value = whole * 1_000_000_000 + t.microsecond * 1_000
    if not 0 < value < 1 << 63:  # events carry int64 nanoseconds after the epoch
        raise FieldError(f"is outside 1970-01-01 .. 2262-04-11 (int64 nanoseconds): {text!r}")
    return value


def _text(value: str) -> str:
    if not value:
        raise FieldError("is missing")
    return value


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            raise FieldError(f"is not a whole number: {text!r}") from None
        if not as_float.is_integer():
            raise FieldError(f"is not a whole number: {text!r}") from None
        value = int(as_float)
    if value == 0:
        raise FieldError("must not be 0")
    bounds.quantity(text)
    return value


def _optional(parse: Callable[[str], float]) -> Callable[[str], float | None]:
    def inner(text: str) -> float | None:
        return None if text == "" else parse(text)

    return inner


def _price(text: str) -> float:
    """A trade price: 0 (not given) or a price within the bounds."""
    return 0.0 if nonnegative(text) == 0 else bounds.price(text)


def _skew(text: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise FieldError(f"is not a number: {text!r}") from None
    if not -5.0 <= value <= 5.0:
        raise FieldError(f"must be within [-5, 5] (vol per unit of ln K/S), got {text!r}")
    return value


TRADE_COLUMNS = (
    Column("time", timestamp_ns),
    Column("account", _text),
    Column("instrument", _text),
    Column("quantity", _whole),
    Column("price", _price, required=False, default="0"),
    Column("trade_id", str, required=False),
)
MARKET_COLUMNS = (
    Column("time", timestamp_ns),
    Column("underlying", _text),
    Column("spot", bounds.price),
    Column("atm_vol", _optional(bounds.vol), required=False),
    Column("skew", _skew, required=False),
)


@dataclass(slots=True)
class Replay:
    """Events read from files, in time order, and the rows refused on the way."""

    trades: list[ev.Trade] = field(default_factory=list)
    market: list[ev.Event] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)


def read_trades(path: Path) -> Replay:
    """The trades of a trades file, in time order."""
    rows = read_table(path, TRADE_COLUMNS)
    out = Replay(failures=list(rows.failures))
    v = rows.values
    for i, line in enumerate(rows.lines):
        try:
            out.trades.append(
                ev.Trade(
                    trade_id=v["trade_id"][i] or f"{path.name}:{line}",
                    account=AccountId(v["account"][i]),
                    instrument=InstrumentId(v["instrument"][i]),
                    quantity=v["quantity"][i],
                    price=v["price"][i],
                    event_time=v["time"][i],
                )
            )
        except ValidationError as exc:
            out.failures.append(_failure(path, rows, i, exc))
    out.trades.sort(key=lambda t: t.event_time)
    return out


def read_market(path: Path) -> Replay:
    """The market events of a market file, in time order: a price update per row, and a
    vol update where the row moves the ATM vol or the smile slope."""
    rows = read_table(path, MARKET_COLUMNS)
    out = Replay(failures=list(rows.failures))
    v = rows.values
    for i in range(len(rows.lines)):
        t, u = v["time"][i], UnderlyingId(v["underlying"][i])
        try:
            events: list[ev.Event] = [
                ev.PriceUpdate(underlying=u, price=v["spot"][i], event_time=t)
            ]
            vol, skew = v["atm_vol"][i], v["skew"][i]
            if vol is not None or skew is not None:
                events.append(ev.VolUpdate(underlying=u, vol=vol, skew=skew, event_time=t))
        except ValidationError as exc:
            out.failures.append(_failure(path, rows, i, exc))
            continue
        out.market.extend(events)
    out.market.sort(key=lambda e: _time_of(e))
    return out


def _time_of(event: ev.Event) -> int:
    t = getattr(event, "event_time", 0)
    return int(t)


def _failure(path: Path, rows: ParsedRows, i: int, exc: ValidationError) -> RowFailure:
    raw = ",".join(rows.raw[i].values())
    return RowFailure(str(path), rows.lines[i], exc.field, exc.reason, raw)


@dataclass(frozen=True, slots=True)
class ReplayStats:
    trades: int
    market: int
    seconds: float


def replay(
    producer: Producer,
    topology: Topology,
    *,
    trades: Sequence[ev.Trade] = (),
    market: Sequence[ev.Event] = (),
    speed: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayStats:
    """Publish ``trades`` and ``market`` merged in time order. ``speed`` None publishes as
    fast as the log takes them, with the files' times as event times; ``speed`` X paces
    them at X times real time and stamps each event with the wall-clock time it is sent
    (so lag reads as real seconds): the first event now, the others at their files'
    spacing divided by X. ``progress(sent, total)`` is called after each flush."""
    if speed is not None and not speed > 0:
        raise ValidationError("speed", f"must be > 0, got {speed!r}")
    merged = merge_by_time(trades, market)
    total = len(merged)
    t_topic, parts = topology.name(TRADES), topology.spec(TRADES).partitions
    m_topic = topology.name(MARKET)
    first = _time_of(merged[0]) if merged else 0
    wall0, mono0 = time.time_ns(), time.monotonic()
    n_trades = n_market = 0
    for k, event in enumerate(merged):
        t = _time_of(event)
        if speed is not None:
            due = (t - first) / 1e9 / speed
            ahead = due - (time.monotonic() - mono0)
            if ahead > 0:
                producer.flush()
                time.sleep(ahead)
            event = _stamped(event, wall0 + int(due * 1e9))
        if isinstance(event, ev.Trade):
            key = event.account
            producer.produce(
                t_topic, encode(event), partition=partition_for(key, parts), key=key.encode()
            )
            n_trades += 1
        else:
            producer.produce(m_topic, encode(event), partition=0)
            n_market += 1
        if (k + 1) % 10_000 == 0:
            producer.flush()
            if progress is not None:
                progress(k + 1, total)
    producer.flush()
    if progress is not None:
        progress(total, total)
    return ReplayStats(n_trades, n_market, time.monotonic() - mono0)


def merge_by_time(trades: Iterable[ev.Trade], market: Iterable[ev.Event]) -> list[ev.Event]:
    """Trades and market events in one time order (market first at equal times)."""
    # market first at equal times: a trade at the same instant is margined at the new price
    tagged = [(_time_of(e), 0, i, e) for i, e in enumerate(market)]
    tagged += [(t.event_time, 1, i, t) for i, t in enumerate(trades)]
    tagged.sort(key=lambda x: (x[0], x[1], x[2]))
    return [e for *_, e in tagged]


def _stamped(event: ev.Event, t: int) -> ev.Event:
    return msgspec.structs.replace(event, event_time=t)
