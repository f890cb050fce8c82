"""The log on a Kafka-protocol broker, through ``confluent-kafka``.

Thin wrappers that give :mod:`confluent_kafka` the :mod:`marginflow.stream.log.base`
contract: producers that report failed deliveries at ``flush``, consumers that drain
batches with ``consume(n)`` and never commit on their own, and rebalance callbacks that
may seek to snapshot offsets.

Client settings (each overridable through ``config``):

* ``session.timeout.ms=6000``: a new group otherwise waits ~23 s on the test broker before
  its first member joins;
* ``fetch.queue.backoff.ms=10``: fetch again quickly once the local queue drains;
* ``fetch.wait.max.ms=5``: the broker answers an empty fetch after 5 ms, not 500 (measured
  on the test broker: one hop p50 2 ms instead of 128 ms);
* ``enable.auto.commit=false``: offsets are committed by the worker's commit protocol only;
* ``auto.offset.reset=earliest``: a group with no committed offset reads from the start;
* ``acks=all`` and ``linger.ms=2`` for producers: durable on acknowledgement, small batches
  (``linger.ms=0`` floods the test broker with requests: trade-to-margin p99 went from
  ~55 ms to 17 s at 10,000 trades/s);
* ``message.timeout.ms=0`` for producers: a record is retried until the broker takes it,
  however long the broker is away, so an outage never fails a delivery (a failed delivery
  is only ever a refusal, which no retry would cure).

The broker going away
---------------------
librdkafka reconnects on its own (``reconnect.backoff.ms`` doubling to
``reconnect.backoff.max.ms``, with jitter). What it reports here is turned into
:class:`~marginflow.stream.log.base.LogUnavailableError` (the operation may be retried) and into
the :class:`~marginflow.stream.log.health.BrokerHealth` the log's clients share, which
reports each change once; librdkafka's own log lines (one per reconnect attempt) go to the
``marginflow.kafka.client`` logger, silent unless an application configures logging.

Nothing here uses transactions or log compaction (see ``docs/stream.md``).
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from marginflow.core.errors import MSG_BROKER_UNREACHABLE
from marginflow.stream.log.base import TP, LogError, LogUnavailableError, OnAssign, OnRevoke, Record
from marginflow.stream.log.health import BrokerHealth
from marginflow.stream.topics import TopicSpec

CONSUMER_DEFAULTS: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "fetch.queue.backoff.ms": 10,
    "fetch.wait.max.ms": 5,
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": False,
    "partition.assignment.strategy": "range",
}
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 2,
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 1_000_000,
    "delivery.report.only.error": True,
    "message.timeout.ms": 0,
}

CLIENT_LOG = logging.getLogger("marginflow.kafka.client")
CLIENT_LOG.addHandler(logging.NullHandler())  # not Python's last-resort handler either

E = ck.KafkaError
UNREACHABLE = frozenset(
    {
        E._TRANSPORT,
        E._ALL_BROKERS_DOWN,
        E._RESOLVE,
        E._TIMED_OUT,
        E._TIMED_OUT_QUEUE,
        E._WAIT_COORD,
        E._MSG_TIMED_OUT,
        E.NETWORK_EXCEPTION,
        E.REQUEST_TIMED_OUT,
        E.COORDINATOR_NOT_AVAILABLE,
        E.NOT_COORDINATOR,
        E.COORDINATOR_LOAD_IN_PROGRESS,
        E.LEADER_NOT_AVAILABLE,
        E.NOT_LEADER_FOR_PARTITION,
    }
)
"""Error codes that mean "the broker did not answer", not "the broker said no"."""

REJOINING = frozenset(
    {
        E._MAX_POLL_EXCEEDED,
        E._ASSIGNMENT_LOST,
        E.UNKNOWN_MEMBER_ID,
        E.ILLEGAL_GENERATION,
        E.REBALANCE_IN_PROGRESS,
    }
)
"""Group states a member passes through after an outage; librdkafka rejoins by itself."""


def _code(exc: ck.KafkaException) -> int | None:
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, ck.KafkaError) else None


def _failed(health: BrokerHealth, what: str, exc: ck.KafkaException) -> LogError:
    """``exc`` as :class:`LogUnavailableError` (and ``health`` marked down) when the broker did
    not answer, else as :class:`LogError`."""
    if _code(exc) in UNREACHABLE:
        health.down(f"{what}: {exc.args[0].str()}")
        return LogUnavailableError(
            MSG_BROKER_UNREACHABLE.format(
                address=health.address, reason=f"{what}: {exc.args[0].str()}"
            )
        )
    return LogError(f"{what}: {exc}")


def _client_callbacks(health: BrokerHealth) -> dict[str, Any]:
    """Settings every client gets: librdkafka's log lines to :data:`CLIENT_LOG`, and its
    connection errors (one per attempt) to ``health`` (one line per change)."""

    def on_error(err: ck.KafkaError) -> None:
        if err.code() in UNREACHABLE:
            health.suspect(err.str())

    return {"logger": CLIENT_LOG, "error_cb": on_error}


class KafkaProducer:
    """A ``confluent_kafka.Producer``; delivery failures surface at :meth:`flush`."""

    def __init__(self, config: Mapping[str, Any], health: BrokerHealth) -> None:
        self._errors: list[str] = []
        self._health = health
        self._sent = 0  # records produced since the last flush (the queue also holds events)
        conf = {
            **PRODUCER_DEFAULTS,
            **_client_callbacks(health),
            **config,
            "on_delivery": self._on_delivery,
        }
        self._producer = ck.Producer(conf)

    def _on_delivery(self, err: ck.KafkaError | None, msg: ck.Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def produce(
        self, topic: str, value: bytes, *, partition: int, key: bytes | None = None
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition)
                self._sent += 1
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.05)
            except ck.KafkaException as exc:
                raise _failed(self._health, f"cannot produce to {topic}[{partition}]", exc) from exc

    def send(self) -> None:
        # a zero-timeout flush wakes librdkafka's sender at once (a micro-batch is whole: no
        # point lingering for more) and serves delivery reports; it waits for nothing.
        # Consumers see a record only once the broker has it (acks=all).
        self._producer.flush(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Raises :class:`LogUnavailableError` when records are still queued after ``timeout``
        (they stay queued: flush again), :class:`LogError` when any delivery failed."""
        started = time.monotonic()
        left = self._producer.flush(timeout)
        if left:
            reason = f"{left} records not delivered within {timeout:g} s"
            self._health.down(reason)
            raise LogUnavailableError(
                MSG_BROKER_UNREACHABLE.format(address=self._health.address, reason=reason)
            )
        if self._sent and not self._errors:  # records went out: the broker took them
            self._health.up(started)
        self._sent = 0
        if self._errors:
            errors, self._errors = self._errors, []
            raise LogError(f"{len(errors)} records not delivered; first: {errors[0]}")

    def close(self) -> None:
        self.flush()


class KafkaConsumer:
    """A ``confluent_kafka.Consumer`` in a group (``subscribe``) or reading given partitions."""

    def __init__(self, config: Mapping[str, Any], health: BrokerHealth, *, grouped: bool) -> None:
        self._grouped = grouped
        self._health = health
        self._consumer = ck.Consumer({**CONSUMER_DEFAULTS, **_client_callbacks(health), **config})
        self._assigned: set[TP] = set()
        self._positions: dict[TP, int] = {}
        self._on_assign: OnAssign | None = None
        self._on_revoke: OnRevoke | None = None

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: OnAssign | None = None,
        on_revoke: OnRevoke | None = None,
    ) -> None:
        if not self._grouped:
            raise LogError("subscribe needs a consumer group")
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._consumer.subscribe(
            list(topics), on_assign=self._assigned_cb, on_revoke=self._revoked_cb
        )

    def _assigned_cb(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        override = (self._on_assign(tps) if self._on_assign is not None else None) or {}
        # ask the broker only for what the callback did not decide (a worker decides all)
        rest = [tp for tp in tps if tp not in override]
        committed = self.committed(rest) if rest else {}
        assign = []
        for tp in tps:
            start = override.get(tp, committed.get(tp))
            start = ck.OFFSET_BEGINNING if start is None else start
            assign.append(ck.TopicPartition(tp[0], tp[1], start))
            self._positions[tp] = max(start, 0)
        consumer.assign(assign)
        self._assigned.update(tps)

    def _revoked_cb(self, consumer: ck.Consumer, partitions: list[ck.TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if self._on_revoke is not None and tps:
            self._on_revoke(tps)
        consumer.unassign()
        self._assigned.difference_update(tps)
        for tp in tps:
            self._positions.pop(tp, None)

    def assign(self, offsets: Mapping[TP, int]) -> None:
        self._assigned = set(offsets)  # exactly these partitions from now on
        self._positions = dict(offsets)
        self._consumer.assign([ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()])

    def assignment(self) -> set[TP]:
        return set(self._assigned)

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        # ``Consumer.consume(n, t)`` blocks until n messages or t seconds: it would add up
        # to t of latency to every batch that is not full. Take what is queued; if nothing
        # is, wait for the first message only, then take what came with it.
        started = time.monotonic()
        msgs = self._consumer.consume(max_records, 0)
        if not msgs and timeout > 0:
            first = self._consumer.poll(timeout)
            if first is None:
                return []
            msgs = (
                [first, *self._consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
            )
        out: list[Record] = []
        positions = self._positions
        for m in msgs:
            err = m.error()
            if err is not None:
                self._consume_error(err)
                continue
            tp = cast(TP, (m.topic(), m.partition()))
            if tp not in positions:
                continue  # a record fetched before a revocation: no longer ours
            offset = cast(int, m.offset())
            positions[tp] = offset + 1
            value = cast(bytes, m.value())
            out.append(Record(tp[0], tp[1], offset, m.timestamp()[1], m.key(), value))
        if out:
            self._health.up(started)
        return out

    def _consume_error(self, err: ck.KafkaError) -> None:
        """An error event from ``consume``: the broker not answering and the group
        re-forming after it are passing states librdkafka recovers from; the rest stops."""
        code = err.code()
        if not err.fatal() and code in UNREACHABLE:
            self._health.suspect(f"consume: {err.str()}")
        elif err.fatal() or not (err.retriable() or code in REJOINING):
            raise LogError(f"consume failed: {err.str()}")

    def seek(self, tp: TP, offset: int) -> None:
        if tp not in self._assigned:
            raise LogError(f"cannot seek {tp}: not assigned")
        self._positions[tp] = offset
        deadline = time.monotonic() + 10.0
        while True:  # a partition just assigned may not be seekable for a moment
            try:
                self._consumer.seek(ck.TopicPartition(tp[0], tp[1], offset))
                return
            except ck.KafkaException as exc:
                if time.monotonic() > deadline:
                    raise _failed(self._health, f"cannot seek {tp}", exc) from exc
                self._consumer.poll(0.01)

    def position(self, tp: TP) -> int:
        return self._positions[tp]

    def commit(self, offsets: Mapping[TP, int]) -> None:
        if not self._grouped:
            raise LogError("commit needs a consumer group")
        if not offsets:
            return
        parts = [ck.TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        started = time.monotonic()
        try:
            result = self._consumer.commit(offsets=parts, asynchronous=False)
        except ck.KafkaException as exc:
            raise _failed(self._health, "commit failed", exc) from exc
        bad = [p for p in result or [] if p.error is not None]
        if bad:
            raise LogError(f"commit failed for {bad[0].topic}[{bad[0].partition}]: {bad[0].error}")
        self._health.up(started)

    def committed(self, tps: Sequence[TP]) -> dict[TP, int | None]:
        if not self._grouped or not tps:
            return dict.fromkeys(tps)
        try:
            parts = self._consumer.committed([ck.TopicPartition(t, p) for t, p in tps], timeout=10)
        except ck.KafkaException as exc:
            raise _failed(self._health, "cannot read committed offsets", exc) from exc
        return {(p.topic, p.partition): (p.offset if p.offset >= 0 else None) for p in parts}

    def close(self) -> None:
        self._consumer.close()


CONSUMER_ONLY = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.",
    "group.",
    "auto.offset.reset",
    "enable.auto.",
    "partition.assignment.strategy",
    "isolation.level",
)
"""Settings that only consumers take (given to a producer, librdkafka warns)."""


class KafkaLog:
    """A Kafka-protocol broker at ``bootstrap`` (``host:port[,host:port]``); ``config``
    adds client settings (consumer-only ones go to consumers only)."""

    def __init__(self, bootstrap: str, *, config: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        extra = dict(config or {})
        consumer = {k: v for k, v in extra.items() if k.startswith(CONSUMER_ONLY)}
        self._config = {
            "bootstrap.servers": bootstrap,
            "log.connection.close": False,
            **{k: v for k, v in extra.items() if k not in consumer},
        }
        self._consumer_config = {**self._config, **consumer}
        self.health = BrokerHealth(bootstrap)
        self._admin = AdminClient({**self._config, **_client_callbacks(self.health)})
        self._partitions: dict[str, int] = {}
        self._probe: ck.Consumer | None = None

    # -- reachability -------------------------------------------------------------------
    def ping(self, timeout: float = 5.0) -> None:
        """Return when the broker answers a metadata request; raise :class:`LogUnavailableError`
        when it does not within ``timeout`` seconds (at once when no bootstrap address
        accepts a connection: nothing listens there)."""
        if not self._listening(min(timeout, 1.0)):
            reason = "connection refused"
            self.health.down(reason)
            raise LogUnavailableError(
                MSG_BROKER_UNREACHABLE.format(address=self.bootstrap, reason=reason)
            )
        self._topics(timeout)

    def _listening(self, timeout: float) -> bool:
        for address in self.bootstrap.split(","):
            host, _, port = address.strip().rpartition(":")
            try:
                socket.create_connection(
                    (host.strip("[]") or "localhost", int(port)), timeout
                ).close()
                return True
            except (OSError, ValueError):
                continue
        return False

    def _topics(self, timeout: float = 10.0) -> dict[str, Any]:
        """The broker's topic metadata (all topics: asking for one may auto-create it)."""
        started = time.monotonic()
        try:
            topics: dict[str, Any] = self._admin.list_topics(timeout=timeout).topics
        except ck.KafkaException as exc:
            raise _failed(self.health, "cannot read metadata", exc) from exc
        self.health.up(started)
        return topics

    # -- topics -------------------------------------------------------------------------
    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        if not specs:
            return
        self.ping()  # a broker not there fails now, not after each request's timeout
        futures = self._admin.create_topics(
            [NewTopic(s.name, s.partitions, 1) for s in specs], operation_timeout=10
        )
        for name, fut in futures.items():
            try:
                fut.result()
            except ck.KafkaException as exc:
                if _code(exc) != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise _failed(self.health, f"cannot create topic {name}", exc) from exc
        want = {s.name: s.partitions for s in specs}
        deadline = time.monotonic() + 10.0
        while True:  # wait until the metadata shows every partition
            md = self._topics()
            have = {n: len(md[n].partitions) for n in want if n in md}
            if have == want:
                break
            wrong = {n: h for n, h in have.items() if h and h != want[n]}
            if wrong:
                raise LogError(f"topics exist with other partition counts: {wrong}")
            if time.monotonic() > deadline:
                raise LogError(f"topics not ready after 10 s: {sorted(set(want) - set(have))}")
            time.sleep(0.05)
        self._partitions.update(want)

    def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            md = self._topics().get(topic)
            if md is None or md.error is not None or not md.partitions:
                raise LogError(f"topic {topic!r} does not exist")
            n = self._partitions[topic] = len(md.partitions)
        return n

    # -- clients ------------------------------------------------------------------------
    def producer(self) -> KafkaProducer:
        return KafkaProducer(self._config, self.health)

    def consumer(self, group: str | None = None) -> KafkaConsumer:
        grouped = group is not None
        gid = group if grouped else f"marginflow-reader-{uuid.uuid4().hex}"
        return KafkaConsumer(
            {**self._consumer_config, "group.id": gid}, self.health, grouped=grouped
        )

    # -- offsets ------------------------------------------------------------------------
    def end_offsets(self, tps: Sequence[TP]) -> dict[TP, int]:
        """The offset after the last record of each partition.

        Reads the high watermark, then confirms it by reading from one before it: some
        Kafka-protocol brokers (the Tansu test broker among them) report the base offset of
        the last record batch plus one, not the last offset plus one. On a conforming broker
        the confirmation finds the watermark unchanged.
        """
        probe = self._probe_consumer()
        out: dict[TP, int] = {}
        for t, p in tps:
            try:
                _, high = probe.get_watermark_offsets(ck.TopicPartition(t, p), timeout=10)
            except ck.KafkaException as exc:
                raise _failed(self.health, f"cannot read the end of {t}[{p}]", exc) from exc
            out[(t, p)] = high
        start = {tp: high - 1 for tp, high in out.items() if high > 0}
        if start:
            probe.assign([ck.TopicPartition(t, p, o) for (t, p), o in start.items()])
            pending = set(start)
            deadline = time.monotonic() + 5.0
            while pending and time.monotonic() < deadline:
                for m in probe.consume(10000, 0.2):
                    if m.error() is None:
                        tp = cast(TP, (m.topic(), m.partition()))
                        out[tp] = max(out[tp], cast(int, m.offset()) + 1)
                        pending.discard(tp)
            probe.unassign()
        return out

    def _probe_consumer(self) -> ck.Consumer:
        if self._probe is None:
            conf = {**CONSUMER_DEFAULTS, **_client_callbacks(self.health), **self._consumer_config}
            conf["group.id"] = f"marginflow-probe-{uuid.uuid4().hex}"
            conf["fetch.max.bytes"] = 1 << 20
            self._probe = ck.Consumer(conf)
        return self._probe

    def committed(self, group: str, tps: Sequence[TP]) -> dict[TP, int | None]:
        request = ck.ConsumerGroupTopicPartitions(group, [ck.TopicPartition(t, p) for t, p in tps])
        futures = self._admin.list_consumer_group_offsets([request], request_timeout=10)
        out: dict[TP, int | None] = dict.fromkeys(tps)
        for fut in futures.values():
            try:
                parts = fut.result().topic_partitions or []
            except ck.KafkaException as exc:
                raise _failed(self.health, f"cannot read the offsets of {group}", exc) from exc
            for p in parts:
                if p.error is None and p.offset >= 0:
                    out[(p.topic, p.partition)] = p.offset
        return out

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None
