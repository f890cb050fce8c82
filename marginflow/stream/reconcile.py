"""Check what the stream published against a batch recompute from the input log.

Used by the crash tests and the soak benchmark: after any number of crashes, every
published result must equal the batch recompute of the inputs it names (its version), and
the latest result of every key must equal the recompute of all inputs: nothing lost, and
nothing doubled (a replayed result has the same key and the same value, so an upsert keeps
one).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from marginflow.stream import events as ev
from marginflow.stream.codec import Codec
from marginflow.stream.log.base import Log
from marginflow.stream.topics import POSITIONS, TRADES, Topology


def read_events(
    log: Log, topic: str, codec: Codec[ev.Event]
) -> dict[int, list[tuple[int, ev.Event]]]:
    """Every valid event of ``topic`` by partition, as (offset, event) in offset order."""
    n = log.partitions(topic)
    ends = log.end_offsets([(topic, p) for p in range(n)])
    reader = log.consumer()
    reader.assign({(topic, p): 0 for p in range(n)})
    out: dict[int, list[tuple[int, ev.Event]]] = {p: [] for p in range(n)}
    seen = dict.fromkeys(range(n), 0)
    idle = 0
    while any(seen[p] < ends[(topic, p)] for p in range(n)) and idle < 50:
        batch = reader.consume(10_000, 0.1)
        idle = 0 if batch else idle + 1
        for r in batch:
            seen[r.partition] = r.offset + 1
            event = codec.try_decode(r.value)
            if isinstance(event, ev.Event):
                out[r.partition].append((r.offset, event))
    reader.close()
    return out


@dataclass
class Report:
    """The outcome of a reconciliation: empty ``mismatches`` and ``lost`` mean correct."""

    keys: int = 0
    results: int = 0
    distinct_results: int = 0
    mismatches: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        """Results published more than once (at-least-once delivery), absorbed by upsert."""
        return self.results - self.distinct_results

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.lost

    def summary(self) -> str:
        return (
            f"{self.keys} keys, {self.results} results ({self.replayed} replayed), "
            f"{len(self.mismatches)} mismatches, {len(self.lost)} lost"
        )


def check_positions(log: Log, topology: Topology) -> Report:
    """Reconcile the positions topic with a recompute from the trades topic."""
    trades = read_events(log, topology.name(TRADES), Codec(topology.spec(TRADES).events))
    published = read_events(log, topology.name(POSITIONS), Codec(topology.spec(POSITIONS).events))
    report = Report()
    by_version: dict[tuple[int, int], list[ev.AccountPositions]] = defaultdict(list)
    distinct: set[tuple[str, int, tuple[tuple[str, int], ...]]] = set()
    for events in published.values():
        for _, e in events:
            assert isinstance(e, ev.AccountPositions)
            by_version[(e.source_partition, e.source_offset)].append(e)
            report.results += 1
            distinct.add(
                (e.account, e.source_offset, tuple(zip(e.instruments, e.quantities, strict=True)))
            )
    report.distinct_results = len({(a, v) for a, v, _ in distinct})

    for p, events in trades.items():
        held: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        last: dict[str, int] = {}
        for offset, e in events:
            if isinstance(e, ev.Trade):
                held[e.account][e.instrument] += e.quantity
            elif isinstance(e, ev.PositionSnapshot):
                held[e.account][e.instrument] = e.quantity
            else:
                continue
            last[e.account] = offset
            for result in by_version.pop((p, offset), ()):
                if result.account != e.account:
                    report.mismatches.append(
                        f"{result.account}@{p}:{offset}: version names a trade of {e.account}"
                    )
                    continue
                for inst, q in zip(result.instruments, result.quantities, strict=True):
                    want = held[e.account].get(inst, 0)
                    if q != want:
                        report.mismatches.append(
                            f"{e.account}@{p}:{offset} {inst}: published {q}, recomputed {want}"
                        )
        report.keys += len(last)
        latest = _latest_positions(published.get(p, []))
        for account, offset in last.items():
            version, quantities = latest.get(account, (-1, {}))
            if version != offset:
                report.lost.append(f"{account}: last result at {version}, last input at {offset}")
                continue
            expected = {k: v for k, v in held[account].items() if v}
            if expected != {k: v for k, v in quantities.items() if v}:
                report.mismatches.append(f"{account}: final positions differ")
    for (p, offset), results in by_version.items():
        report.mismatches.append(f"{len(results)} results name {p}:{offset}, not an input")
    return report


def _latest_positions(events: list[tuple[int, ev.Event]]) -> dict[str, tuple[int, dict[str, int]]]:
    """Apply position results in log order with the version guard a consumer uses."""
    out: dict[str, tuple[int, dict[str, int]]] = {}
    for _, e in events:
        assert isinstance(e, ev.AccountPositions)
        version, quantities = out.get(e.account, (-1, {}))
        if e.source_offset > version:
            quantities = dict(quantities)
            quantities.update(zip(e.instruments, e.quantities, strict=True))
            out[e.account] = (e.source_offset, quantities)
    return out
