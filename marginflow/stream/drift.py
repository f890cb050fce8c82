"""Drift: how far each consumer group is behind each source, and each stage behind the one
before it, read from the log alone (committed offsets and the records at them).

For every group and input partition:

* **lag in messages**: end offset - committed offset;
* **wall-time lag**: how long the oldest record not yet committed has waited (now minus
  its append time); 0 when caught up;
* **event-time lag**: event time of the partition's last record minus event time of the
  last record the group committed.

Results carry the event time of the input that triggered them, so event time flows down
the pipeline and the **drift between two consumers** (how far the risk calculator is behind
the position keeper, the sink behind the calculator) is the difference of their event-time
watermarks (the latest event time each has committed, over its inputs).

When the log is a broker that does not answer, :meth:`DriftMonitor.sample` raises
:class:`~marginflow.stream.log.base.LogUnavailableError` at once (it asks whether the broker
listens before anything else) and :meth:`DriftMonitor.broker` says since when it is
unreachable; ``marginflow lag --watch`` shows that and keeps watching, and the gauges
``marginflow_broker_up`` and ``marginflow_broker_unreachable_since_seconds`` carry it.

Committed offsets advance when a worker snapshots (every ``snapshot_interval``), so the lag
read here includes up to one interval of work done but not yet committed. Broadcast topics
(market data) show each calculator's progress under the group ``<group>.broadcast``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from marginflow.stream import events as ev
from marginflow.stream.codec import Codec
from marginflow.stream.log.base import TP, Log
from marginflow.stream.log.health import BrokerHealth, BrokerState, health_of
from marginflow.stream.topics import (
    CRIF,
    DEAD_LETTERS,
    MARGINS,
    MARKET,
    MEMBER_MARGINS,
    POSITIONS,
    SIMM_RESULTS,
    TRADES,
    Topology,
)
from marginflow.stream.worker import broadcast_group

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("position-keeper", (TRADES,)),
    ("risk-calculator", (POSITIONS,)),
    ("risk-calculator.broadcast", (MARKET,)),
    ("aggregator", (MARGINS,)),
    ("simm", (CRIF,)),
    ("sink", (MARGINS, MEMBER_MARGINS, DEAD_LETTERS, SIMM_RESULTS, MARKET)),
)
"""Each consumer group (by role) and the logical topics it reads, in pipeline order."""

DRIFT_PAIRS = (
    ("position-keeper", "risk-calculator"),
    ("risk-calculator", "aggregator"),
    ("aggregator", "sink"),
    ("simm", "sink"),
)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    end: int
    committed: int | None
    messages: int
    wall_seconds: float
    event_seconds: float
    watermark_ns: int  # event time of the last committed record (0: none)


@dataclass(frozen=True, slots=True)
class GroupLag:
    """One group's lag behind one topic, over its partitions (worst partition for times)."""

    group: str
    topic: str
    messages: int
    wall_seconds: float
    event_seconds: float
    watermark_ns: int
    alert: bool = False


@dataclass(frozen=True, slots=True)
class Drift:
    upstream: str
    downstream: str
    seconds: float  # event-time watermark difference; > 0: downstream is behind


@dataclass
class LagReport:
    taken_ns: int
    groups: list[GroupLag] = field(default_factory=list)
    partitions: list[PartitionLag] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    broker: BrokerState | None = None  # None: an embedded log

    @property
    def alerts(self) -> list[GroupLag]:
        return [g for g in self.groups if g.alert]

    def to_json(self) -> dict[str, object]:
        return {
            "taken_ns": self.taken_ns,
            "groups": [asdict(g) for g in self.groups],
            "drift": [asdict(d) for d in self.drift],
            "partitions": [asdict(p) for p in self.partitions],
            "broker": None if self.broker is None else asdict(self.broker),
        }


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Alert when a group's lag exceeds any of these (None: no limit)."""

    messages: int | None = None
    wall_seconds: float | None = None
    event_seconds: float | None = None

    def exceeded(self, g: GroupLag) -> bool:
        return (
            (self.messages is not None and g.messages > self.messages)
            or (self.wall_seconds is not None and g.wall_seconds > self.wall_seconds)
            or (self.event_seconds is not None and g.event_seconds > self.event_seconds)
        )


class DriftMonitor:
    """Samples the lag of every stage of the pipeline under ``topology``."""

    def __init__(
        self, log: Log, topology: Topology, *, thresholds: Thresholds | None = None
    ) -> None:
        self.log = log
        self.topology = topology
        self.thresholds = thresholds or Thresholds()
        self._codec: Codec[ev.Event] = Codec([*ev.INPUT_EVENTS, *ev.RESULT_EVENTS])
        self._reader = log.consumer()
        self._health: BrokerHealth | None = health_of(log)

    def broker(self) -> BrokerState | None:
        """The broker's reachability as last seen (None: the log has no broker)."""
        return None if self._health is None else self._health.state()

    def _ping(self) -> None:
        ping = getattr(self.log, "ping", None)
        if ping is not None:
            ping(5.0)

    def _record_at(self, tp: TP, offset: int) -> tuple[int, int] | None:
        """(append time ms, event time ns) of the record at ``offset`` of ``tp``."""
        self._reader.assign({tp: offset})
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for r in self._reader.consume(1, 0.2):
                if (r.topic, r.partition) == tp and r.offset == offset:
                    event = self._codec.try_decode(r.value)
                    return r.timestamp_ms, int(getattr(event, "event_time", 0))
        return None

    def _partition_lag(
        self, group: str, tp: TP, end: int, committed: int | None, now_ns: int
    ) -> PartitionLag:
        done = committed or 0
        last = self._record_at(tp, end - 1) if end > 0 else None
        mine = self._record_at(tp, done - 1) if done > 0 else None
        oldest = self._record_at(tp, done) if done < end else None
        wall = max(now_ns / 1e9 - oldest[0] / 1e3, 0.0) if oldest else 0.0
        last_event = last[1] if last else 0
        watermark = mine[1] if mine else 0
        event = max(last_event - watermark, 0) / 1e9 if done < end else 0.0
        return PartitionLag(group, tp[0], tp[1], end, committed, end - done, wall, event, watermark)

    def sample(self) -> LagReport:
        """One reading of every stage's lag and the drift between stages."""
        self._ping()  # an unreachable broker fails here, at once, not after each timeout
        now = time.time_ns()
        report = LagReport(taken_ns=now, broker=self.broker())
        prefix = self.topology.prefix
        watermarks: dict[str, int] = {}
        for role, topics in STAGES:
            group = (
                prefix + role
                if not role.endswith(".broadcast")
                else broadcast_group(prefix + role.removesuffix(".broadcast"))
            )
            for logical in topics:
                name = self.topology.name(logical)
                tps = [(name, p) for p in range(self.log.partitions(name))]
                ends = self.log.end_offsets(tps)
                committed = self.log.committed(group, tps)
                parts = [self._partition_lag(group, tp, ends[tp], committed[tp], now) for tp in tps]
                report.partitions.extend(parts)
                g = GroupLag(
                    group=group,
                    topic=name,
                    messages=sum(p.messages for p in parts),
                    wall_seconds=max((p.wall_seconds for p in parts), default=0.0),
                    event_seconds=max((p.event_seconds for p in parts), default=0.0),
                    watermark_ns=max((p.watermark_ns for p in parts), default=0),
                )
                g = GroupLag(**{**asdict(g), "alert": self.thresholds.exceeded(g)})
                report.groups.append(g)
                if logical in (TRADES, POSITIONS, MARGINS):
                    watermarks[role] = max(watermarks.get(role, 0), g.watermark_ns)
        for up, down in DRIFT_PAIRS:
            if up in watermarks and down in watermarks:
                report.drift.append(Drift(up, down, (watermarks[up] - watermarks[down]) / 1e9))
        return report

    def close(self) -> None:
        self._reader.close()


def export_metrics(report: LagReport, registry: CollectorRegistry | None = None) -> None:
    """Set the Prometheus gauges of ``report`` (registered on first use)."""
    gauges = _gauges(registry)
    for g in report.groups:
        labels = {"group": g.group, "topic": g.topic}
        gauges["messages"].labels(**labels).set(g.messages)
        gauges["wall"].labels(**labels).set(g.wall_seconds)
        gauges["event"].labels(**labels).set(g.event_seconds)
        gauges["alert"].labels(**labels).set(1.0 if g.alert else 0.0)
    for d in report.drift:
        gauges["drift"].labels(upstream=d.upstream, downstream=d.downstream).set(d.seconds)
    if report.broker is not None:
        export_broker(report.broker, registry)


def export_broker(state: BrokerState, registry: CollectorRegistry | None = None) -> None:
    """Set the broker gauges: up (1/0) and since when it is unreachable (0: it is not)."""
    gauges = _gauges(registry)
    gauges["broker_up"].labels(broker=state.address).set(1.0 if state.reachable else 0.0)
    since = 0.0 if state.unreachable_since_ns is None else state.unreachable_since_ns / 1e9
    gauges["broker_since"].labels(broker=state.address).set(since)


_GAUGES: dict[int, dict[str, Gauge]] = {}


def _gauges(registry: CollectorRegistry | None) -> dict[str, Gauge]:
    reg = registry or REGISTRY
    key = id(reg)
    if key not in _GAUGES:
        labels = ("group", "topic")
        _GAUGES[key] = {
            "messages": Gauge(
                "marginflow_lag_messages", "Records not yet committed", labels, registry=reg
            ),
            "wall": Gauge(
                "marginflow_lag_wall_seconds",
                "Age of the oldest uncommitted record",
                labels,
                registry=reg,
            ),
            "event": Gauge(
                "marginflow_lag_event_seconds",
                "Event time of the source's end minus the group's",
                labels,
                registry=reg,
            ),
            "alert": Gauge(
                "marginflow_lag_alert", "1 when a lag threshold is exceeded", labels, registry=reg
            ),
            "drift": Gauge(
                "marginflow_drift_seconds",
                "Event-time watermark of upstream minus downstream",
                ("upstream", "downstream"),
                registry=reg,
            ),
            "broker_up": Gauge(
                "marginflow_broker_up", "1 when the broker answered", ("broker",), registry=reg
            ),
            "broker_since": Gauge(
                "marginflow_broker_unreachable_since_seconds",
                "Unix time the broker stopped answering (0: it answers)",
                ("broker",),
                registry=reg,
            ),
        }
    return _GAUGES[key]


def stage_groups(topology: Topology) -> Sequence[str]:
    """The consumer groups of the pipeline under ``topology``'s prefix."""
    return [topology.prefix + role for role, _ in STAGES if not role.endswith(".broadcast")]
