"""The log interface every worker is written against, and its contract.

Two implementations: :mod:`~marginflow.stream.log.embedded` (durable segment files on one
machine, the default) and :mod:`~marginflow.stream.log.kafka` (any Kafka-protocol broker
through ``confluent-kafka``). ``tests/stream/test_log_contract.py`` runs the same tests on
both.

Contract
--------
* A topic has a fixed number of partitions. Each partition is an append-only sequence of
  records with offsets 0, 1, 2, ... in the order they were appended.
* :meth:`Producer.produce` is asynchronous; :meth:`Producer.flush` returns only when every
  record produced before it is durable in the log (acknowledged by the broker, or written
  and synced to the embedded log per its fsync policy), and raises :class:`LogError` if
  any was not. Records are never reordered within a partition by one producer.
* A :class:`Consumer` either joins a consumer group (``subscribe``), sharing the topics'
  partitions with the group's other members, or reads given partitions without a group
  (``assign``, used for broadcast topics). Within a partition it returns records in offset
  order. Delivery is **at least once**: after a crash or a rebalance, records after the
  last committed offset are delivered again. Nothing here offers transactions.
* Committed offsets name the next offset to read; they are durable when
  :meth:`Consumer.commit` returns.
* Rebalance callbacks run inside :meth:`Consumer.consume`: ``on_revoke`` before the member
  loses partitions (it may still commit them), ``on_assign`` when it gains some; it may
  return a start offset per partition (from a state snapshot), overriding the committed one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

from marginflow.core.errors import DamagedFileError, MarginflowError
from marginflow.stream.topics import TopicSpec

TP = tuple[str, int]
"""A topic partition: (topic name, partition number)."""

OnAssign = Callable[[list[TP]], Mapping[TP, int] | None]
OnRevoke = Callable[[list[TP]], None]


class LogError(MarginflowError):
    """The log refused or lost an operation (a failed delivery, a missing topic, ...)."""


class LogCorruptError(LogError, DamagedFileError):
    """A file of the embedded log failed its checksum or format check: ``path`` and
    ``position`` name where. Readers and writers refuse it; nothing is skipped or truncated
    silently (``marginflow log verify`` and ``marginflow log repair``)."""


class LogUnavailableError(LogError):
    """The log could not be reached (the broker is down, restarting or too slow to answer):
    nothing was refused or lost, and the same operation may succeed when retried."""


class Record(NamedTuple):
    """One record read from the log. ``timestamp_ms`` is the append (or create) time in
    milliseconds since the Unix epoch; event time, when there is one, is in the value."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


class Producer(Protocol):
    def produce(
        self, topic: str, value: bytes, *, partition: int, key: bytes | None = None
    ) -> None:
        """Queue one record for ``partition`` of ``topic``."""

    def send(self) -> None:
        """Hand the queued records to the log without waiting for them; a reader never sees
        a record a crash could take back (a log with no such lag makes this :meth:`flush`).
        Failures surface at the next :meth:`flush`."""

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every queued record is durable; raise :class:`LogError` otherwise."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: OnAssign | None = None,
        on_revoke: OnRevoke | None = None,
    ) -> None:
        """Join the consumer group for ``topics``; partitions arrive through ``on_assign``."""

    def assign(self, offsets: Mapping[TP, int]) -> None:
        """Read exactly these partitions (replacing any earlier assignment) from these
        offsets, outside the group's rebalancing."""

    def assignment(self) -> set[TP]: ...

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first."""

    def seek(self, tp: TP, offset: int) -> None:
        """Read ``tp`` from ``offset`` next (``tp`` must be assigned)."""

    def position(self, tp: TP) -> int:
        """The next offset this consumer will return for ``tp``."""

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Durably commit ``offsets`` (the next offset to read) for the group."""

    def committed(self, tps: Sequence[TP]) -> dict[TP, int | None]:
        """The group's committed offsets (None where nothing was committed)."""

    def close(self) -> None: ...


class Log(Protocol):
    """A log: creates topics, hands out producers and consumers, reports offsets."""

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics that do not exist yet; an existing one must have the same
        partition count (:class:`LogError` otherwise)."""

    def partitions(self, topic: str) -> int: ...

    def producer(self) -> Producer: ...

    def consumer(self, group: str | None = None) -> Consumer:
        """A consumer in ``group`` (None: a reader that only uses ``assign``)."""

    def end_offsets(self, tps: Sequence[TP]) -> dict[TP, int]:
        """The offset after the last record of each partition (0 for an empty one)."""

    def committed(self, group: str, tps: Sequence[TP]) -> dict[TP, int | None]:
        """A group's committed offsets, read from outside the group (for lag monitoring)."""

    def close(self) -> None: ...
