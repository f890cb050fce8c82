"""The aggregator: account margins in, member margins out (and the firm's, their sum).

Input: the margins topic (partitioned by account). State per margins partition: the
latest margin of each account on it (greatest ``(position_version, market_offset)``; a
replayed or older result is ignored). After a micro-batch it publishes, for every member
touched, a :class:`~marginflow.stream.events.MemberMarginPartial`: the member's margin over
the accounts on that partition, versioned by the margins offset it reflects. A member's
margin is the sum of its partials over partitions, the firm's the sum over members: a
latest-value sum, never a running total, so replays cannot double anything.

Partial sums use :func:`math.fsum` (correctly rounded, independent of order), so every
worker that reaches the same offset publishes the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from marginflow.core.ids import MemberId
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection
from marginflow.stream.log.base import TP
from marginflow.stream.topics import MARGINS, MEMBER_MARGINS, Topology
from marginflow.stream.worker import Output, Processor


class _Latest(msgspec.Struct, array_like=True):
    position_version: int
    market_offset: int
    margin: float
    member: str
    event_time: int


class _Partition(msgspec.Struct, array_like=True):
    offset: int = -1  # last margins offset applied
    accounts: dict[str, _Latest] = msgspec.field(default_factory=dict)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Partition).decode


class Aggregator(Processor):
    """Account margins -> member margin partials."""

    def __init__(self, topology: Topology) -> None:
        self.inputs = (topology.name(MARGINS),)
        self._out = topology.name(MEMBER_MARGINS)
        self._codec: Codec[ev.Event] = Codec(topology.spec(MARGINS).events)
        self._parts: dict[TP, _Partition] = {}
        self._members: dict[TP, dict[str, set[str]]] = {}
        self._changed: dict[tuple[TP, str], int] = {}

    def codec(self, topic: str) -> Codec[ev.Event]:
        return self._codec

    def restore(self, tp: TP, data: bytes | None) -> None:
        part = _Partition() if data is None else _decode(data)
        self._parts[tp] = part
        members: dict[str, set[str]] = {}
        for account, latest in part.accounts.items():
            members.setdefault(latest.member, set()).add(account)
        self._members[tp] = members

    def release(self, tp: TP) -> None:
        self._parts.pop(tp, None)
        self._members.pop(tp, None)
        for key in [k for k in self._changed if k[0] == tp]:
            del self._changed[key]

    def apply(
        self, tp: TP, events: Sequence[tuple[int, ev.Event]]
    ) -> Sequence[tuple[int, Rejection]]:
        part, members = self._parts[tp], self._members[tp]
        for offset, e in events:
            assert isinstance(e, ev.AccountMargin)
            part.offset = offset
            cur = part.accounts.get(e.account)
            if cur is not None and (e.position_version, e.market_offset) <= (
                cur.position_version,
                cur.market_offset,
            ):
                continue
            if cur is not None and cur.member != e.member:  # moved to another member
                members[cur.member].discard(e.account)
                self._changed[(tp, cur.member)] = e.event_time
            part.accounts[e.account] = _Latest(
                e.position_version, e.market_offset, e.margin, e.member, e.event_time
            )
            members.setdefault(e.member, set()).add(e.account)
            self._changed[(tp, e.member)] = e.event_time
        return ()

    def recompute(self) -> list[Output]:
        out = []
        for (tp, member), event_time in self._changed.items():
            part = self._parts[tp]
            names = self._members[tp].get(member, set())
            total = math.fsum(part.accounts[a].margin for a in names)
            partial = ev.MemberMarginPartial(
                member=MemberId(member),
                margin=total,
                accounts=len(names),
                source_partition=tp[1],
                source_offset=part.offset,
                event_time=event_time,
            )
            out.append(Output(self._out, partial))
        self._changed.clear()
        return out

    def snapshot(self, tp: TP) -> bytes:
        return _encode(self._parts[tp])
