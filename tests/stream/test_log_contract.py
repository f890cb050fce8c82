"""The log contract (see ``marginflow/stream/log/base.py``), run against the embedded log
and against the real Kafka-protocol broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from marginflow.stream.log.base import TP, Consumer, Log, LogError, Record
from marginflow.stream.topics import Distribution, TopicSpec, Topology


def _spec(topology: Topology, name: str, partitions: int) -> TopicSpec:
    return TopicSpec(topology.prefix + name, (), Distribution.BY_KEY, partitions)


def _produce(log: Log, topic: str, n: int, partitions: int) -> dict[int, list[bytes]]:
    producer = log.producer()
    sent: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for i in range(n):
        p = i % partitions
        value = f"v{i}".encode()
        producer.produce(topic, value, partition=p, key=f"k{i}".encode() if i % 2 else None)
        sent[p].append(value)
    producer.flush()
    producer.close()
    return sent


def _by_partition(records: list[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r)
    return out


def test_create_topics_is_idempotent_and_checks_partitions(log: Log, topology: Topology) -> None:
    spec = _spec(topology, "a", 3)
    log.create_topics([spec])
    log.create_topics([spec])
    assert log.partitions(spec.name) == 3
    with pytest.raises(LogError, match="partition"):
        log.create_topics([_spec(topology, "a", 5)])


def test_missing_topic_is_an_error(log: Log, topology: Topology) -> None:
    with pytest.raises(LogError, match="does not exist"):
        log.partitions(topology.prefix + "nope")


def test_records_come_back_in_offset_order_per_partition(
    log: Log, topology: Topology, drain: Callable[..., list[Any]]
) -> None:
    spec = _spec(topology, "orders", 3)
    log.create_topics([spec])
    sent = _produce(log, spec.name, 3000, 3)
    reader = log.consumer()
    reader.assign({(spec.name, p): 0 for p in range(3)})
    got = _by_partition(drain(reader, 3000))
    reader.close()
    for p in range(3):
        assert [r.value for r in got[p]] == sent[p]
        assert [r.offset for r in got[p]] == list(range(len(sent[p])))
    first = got[0][1]  # i = 3: key k3
    assert first.key == b"k3"
    assert got[0][0].key is None  # i = 0 had no key
    assert first.timestamp_ms > 1_600_000_000_000


def test_end_offsets_count_records_not_batches(log: Log, topology: Topology) -> None:
    spec = _spec(topology, "ends", 2)
    log.create_topics([spec])
    _produce(log, spec.name, 1001, 2)  # flushed as one batch per partition
    ends = log.end_offsets([(spec.name, 0), (spec.name, 1)])
    assert ends == {(spec.name, 0): 501, (spec.name, 1): 500}


def test_group_resumes_from_committed_offsets(
    log: Log, topology: Topology, drain: Callable[..., list[Any]]
) -> None:
    spec = _spec(topology, "resume", 2)
    log.create_topics([spec])
    _produce(log, spec.name, 200, 2)
    group = topology.prefix + "g"
    first = log.consumer(group)
    first.subscribe([spec.name])
    got = drain(first, 200)
    assert len(got) == 200
    commit = {(spec.name, 0): 40, (spec.name, 1): 60}
    first.commit(commit)
    first.close()
    assert log.committed(group, list(commit)) == commit

    second = log.consumer(group)
    second.subscribe([spec.name])
    again = _by_partition(drain(second, 100))
    second.close()
    assert [r.offset for r in again[0]] == list(range(40, 100))
    assert [r.offset for r in again[1]] == list(range(60, 100))


def test_uncommitted_records_are_delivered_again(
    log: Log, topology: Topology, drain: Callable[..., list[Any]]
) -> None:
    spec = _spec(topology, "again", 1)
    log.create_topics([spec])
    _produce(log, spec.name, 50, 1)
    group = topology.prefix + "g"
    for _ in range(2):  # at least once: nothing committed, so everything comes twice
        c = log.consumer(group)
        c.subscribe([spec.name])
        assert [r.offset for r in drain(c, 50)] == list(range(50))
        c.close()


def test_on_assign_can_choose_start_offsets(
    log: Log, topology: Topology, drain: Callable[..., list[Any]]
) -> None:
    spec = _spec(topology, "snap", 2)
    log.create_topics([spec])
    _produce(log, spec.name, 100, 2)
    group = topology.prefix + "g"
    seen: list[list[TP]] = []

    def on_assign(tps: list[TP]) -> dict[TP, int]:
        seen.append(tps)
        return {tp: 45 for tp in tps}

    c = log.consumer(group)
    c.subscribe([spec.name], on_assign=on_assign)
    got = _by_partition(drain(c, 10))
    c.close()
    assert sorted(tp for tps in seen for tp in tps) == [(spec.name, 0), (spec.name, 1)]
    assert [r.offset for r in got[0]] == [45, 46, 47, 48, 49]
    assert [r.offset for r in got[1]] == [45, 46, 47, 48, 49]


def test_seek_rereads(log: Log, topology: Topology, drain: Callable[..., list[Any]]) -> None:
    spec = _spec(topology, "seek", 1)
    log.create_topics([spec])
    _produce(log, spec.name, 30, 1)
    reader = log.consumer()
    tp = (spec.name, 0)
    reader.assign({tp: 0})
    assert len(drain(reader, 30)) == 30
    assert reader.position(tp) == 30
    reader.seek(tp, 7)
    assert [r.offset for r in drain(reader, 23)] == list(range(7, 30))
    reader.close()


def _settle(consumers: list[Consumer], total: int, timeout: float = 30.0) -> list[Record]:
    """Poll every member until the group's assignments are disjoint and cover ``total``."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            records.extend(c.consume(1000, 0.1))
        sets = [c.assignment() for c in consumers]
        if all(sets) and sum(map(len, sets)) == total and len(set().union(*sets)) == total:
            return records
    raise AssertionError(f"group did not settle: {[c.assignment() for c in consumers]}")


@pytest.mark.slow
def test_group_members_share_partitions_and_take_over(
    log: Log, topology: Topology, drain: Callable[..., list[Any]]
) -> None:
    spec = _spec(topology, "share", 4)
    log.create_topics([spec])
    group = topology.prefix + "g"
    a, b = log.consumer(group), log.consumer(group)
    a.subscribe([spec.name])
    _settle([a], 4)
    b.subscribe([spec.name])
    _settle([a, b], 4)
    assert a.assignment().isdisjoint(b.assignment())
    b.close()
    _settle([a], 4)  # a takes the partitions b left
    assert a.assignment() == {(spec.name, p) for p in range(4)}
    a.close()


def test_produce_to_a_missing_partition_fails(log: Log, topology: Topology) -> None:
    spec = _spec(topology, "narrow", 1)
    log.create_topics([spec])
    producer = log.producer()

    def produce_and_flush() -> None:  # the embedded log refuses at once, Kafka at delivery
        producer.produce(spec.name, b"x", partition=5)
        producer.flush(timeout=10)

    with pytest.raises(LogError):
        produce_and_flush()


def test_assign_replaces_the_assignment(
    log: Log, topology: Topology, drain: Callable[..., list[Any]]
) -> None:
    spec = _spec(topology, "assign", 2)
    log.create_topics([spec])
    _produce(log, spec.name, 20, 2)
    reader = log.consumer()
    reader.assign({(spec.name, 0): 0})
    reader.assign({(spec.name, 1): 3})
    assert reader.assignment() == {(spec.name, 1)}
    got = drain(reader, 7)
    reader.close()
    assert {r.partition for r in got} == {1}
    assert [r.offset for r in got] == list(range(3, 10))
