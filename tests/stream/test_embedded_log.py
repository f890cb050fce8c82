"""What only the embedded log has to prove: durability across restarts, recovery from a
torn write, segment rolls, and safety with several processes appending and consuming."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.stream.log.base import LogCorruptError, LogError, Record
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.topics import Distribution, TopicSpec

REPO = Path(__file__).resolve().parents[2]


def _topic(log: EmbeddedLog, name: str = "t", partitions: int = 1) -> str:
    log.create_topics([TopicSpec(name, (), Distribution.BY_KEY, partitions)])
    return name


def _read_all(log: EmbeddedLog, topic: str, partition: int = 0, start: int = 0) -> list[Record]:
    reader = log.consumer()
    reader.assign({(topic, partition): start})
    out: list[Record] = []
    while batch := reader.consume(10_000, 0.0):
        out.extend(batch)
    reader.close()
    return out


def _append(log: EmbeddedLog, topic: str, values: list[bytes], partition: int = 0) -> None:
    producer = log.producer()
    for v in values:
        producer.produce(topic, v, partition=partition)
    producer.flush()


def _segments(log: EmbeddedLog, topic: str, partition: int = 0) -> list[Path]:
    return sorted((log.root / "topics" / topic / str(partition)).glob("*.log"))


def test_records_and_commits_survive_a_restart(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log, partitions=2)
    _append(log, topic, [b"a", b"b", b"c"], partition=1)
    c = log.consumer("g")
    c.subscribe([topic])
    assert len(c.consume(10, 1.0)) == 3
    c.commit({(topic, 1): 2})
    c.close()

    again = EmbeddedLog(tmp_path)  # a new process would see the same
    assert [r.value for r in _read_all(again, topic, 1)] == [b"a", b"b", b"c"]
    assert again.committed("g", [(topic, 1), (topic, 0)]) == {(topic, 1): 2, (topic, 0): None}
    _append(again, topic, [b"d"], partition=1)
    assert [r.offset for r in _read_all(again, topic, 1)] == [0, 1, 2, 3]


@pytest.mark.parametrize("policy", ["flush", "never"])
def test_both_fsync_policies_keep_flushed_records(tmp_path: Path, policy: str) -> None:
    log = EmbeddedLog(tmp_path, fsync=policy)  # type: ignore[arg-type]
    topic = _topic(log)
    _append(log, topic, [b"x"] * 5)
    assert len(_read_all(EmbeddedLog(tmp_path), topic)) == 5


def test_unknown_fsync_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="fsync must be"):
        EmbeddedLog(tmp_path, fsync="sometimes")  # type: ignore[arg-type]


def test_torn_tail_is_invisible_then_truncated_by_the_next_writer(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    _append(log, topic, [b"one", b"two"])
    (segment,) = _segments(log, topic)
    size = segment.stat().st_size
    with open(segment, "ab") as f:  # a crash in the middle of a write
        f.write(b"\x40\x00\x00\x00\x12\x34")
    assert [r.value for r in _read_all(log, topic)] == [b"one", b"two"]
    assert log.end_offsets([(topic, 0)]) == {(topic, 0): 2}

    _append(EmbeddedLog(tmp_path), topic, [b"three"])
    records = _read_all(EmbeddedLog(tmp_path), topic)
    assert [(r.offset, r.value) for r in records] == [(0, b"one"), (1, b"two"), (2, b"three")]
    assert segment.stat().st_size > size


def test_corrupted_batch_is_refused_with_its_file_and_offset(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    for value in (b"aaaa", b"bbbb", b"cccc"):  # three flushes: three batches
        _append(log, topic, [value])
    (segment,) = _segments(log, topic)
    data = bytearray(segment.read_bytes())
    data[data.index(b"bbbb")] ^= 0xFF  # flip bits in the second batch's record
    segment.write_bytes(bytes(data))
    with pytest.raises(
        LogCorruptError, match=rf"{segment}: damaged at byte \d+: .*offset 1 of t\[0\]"
    ):
        _read_all(log, topic)  # never a silent stop after b"aaaa"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(min_size=1, max_size=300))
def test_garbage_after_the_tail_is_never_read(tmp_path: Path, garbage: bytes) -> None:
    root = tmp_path / os.urandom(6).hex()
    log = EmbeddedLog(root)
    topic = _topic(log)
    _append(log, topic, [b"ok1", b"ok2"])
    (segment,) = _segments(log, topic)
    with open(segment, "ab") as f:
        f.write(garbage)
    assert [r.value for r in _read_all(log, topic)] == [b"ok1", b"ok2"]
    _append(log, topic, [b"ok3"])
    assert [r.value for r in _read_all(log, topic)] == [b"ok1", b"ok2", b"ok3"]


def test_segments_roll_and_seek_finds_any_offset(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, segment_bytes=4096)
    topic = _topic(log)
    producer = log.producer()
    values = [f"value-{i:05d}".encode() for i in range(5000)]
    for i, v in enumerate(values):
        producer.produce(topic, v, partition=0)
        if i % 97 == 0:
            producer.flush()
    producer.flush()
    assert len(_segments(log, topic)) > 10
    assert [r.value for r in _read_all(log, topic)] == values
    assert [r.value for r in _read_all(log, topic, start=3777)] == values[3777:]
    assert log.end_offsets([(topic, 0)]) == {(topic, 0): 5000}


def test_a_record_larger_than_the_read_chunk(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    big = os.urandom(3 << 20)
    _append(log, topic, [b"small", big, b"after"])
    assert [r.value for r in _read_all(log, topic)] == [b"small", big, b"after"]


def test_commit_of_a_partition_not_owned_is_refused(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, rebalance_interval=0.01)
    topic = _topic(log, partitions=2)
    a, b = log.consumer("g"), log.consumer("g")
    a.subscribe([topic])
    a.consume(1, 0.05)
    b.subscribe([topic])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (a.assignment() and b.assignment()):
        a.consume(1, 0.02)
        b.consume(1, 0.02)
    (mine,) = a.assignment()
    (theirs,) = b.assignment()
    a.commit({mine: 0})
    with pytest.raises(LogError, match="not owned"):
        a.commit({theirs: 0})
    a.close()
    b.close()


# --- several processes -------------------------------------------------------------------


def _python(code: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_concurrent_writers_in_two_processes_get_contiguous_offsets(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    code = """
        import sys
        from marginflow.stream.log.embedded import EmbeddedLog
        log = EmbeddedLog(sys.argv[1])
        p = log.producer()
        for i in range(2000):
            p.produce("t", f"{sys.argv[2]}-{i:05d}".encode(), partition=0)
            if i % 10 == 9:
                p.flush()
        p.flush()
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(tmp_path), name],
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for name in ("a", "b")
    ]
    assert [p.wait(60) for p in procs] == [0, 0]
    records = _read_all(log, topic)
    assert [r.offset for r in records] == list(range(4000))
    for name in ("a", "b"):
        mine = [r.value for r in records if r.value.startswith(name.encode())]
        assert mine == [f"{name}-{i:05d}".encode() for i in range(2000)]  # each in its order


@pytest.mark.slow
def test_sigkill_during_writes_leaves_a_valid_prefix(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, segment_bytes=1 << 20)
    topic = _topic(log)
    code = f"""
        from marginflow.stream.log.embedded import EmbeddedLog
        log = EmbeddedLog({str(tmp_path)!r}, segment_bytes=1 << 20)
        p = log.producer()
        i = 0
        print("ready", flush=True)
        while True:
            p.produce("t", b"%08d" % i + b"x" * 2000, partition=0)
            i += 1
            if i % 500 == 0:
                p.flush()
    """
    for round_ in range(5):
        proc = _python(code)
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(0.05 + 0.07 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        records = _read_all(EmbeddedLog(tmp_path), topic)
        assert [r.offset for r in records] == list(range(len(records)))
        assert all(len(r.value) == 2008 for r in records)
    _append(EmbeddedLog(tmp_path), topic, [b"end"])
    records = _read_all(EmbeddedLog(tmp_path), topic)
    assert records[-1].value == b"end"
    assert [r.offset for r in records] == list(range(len(records)))


@pytest.mark.slow
def test_a_killed_group_member_hands_its_partitions_over(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, rebalance_interval=0.05)
    topic = _topic(log, partitions=4)
    code = f"""
        import time
        from marginflow.stream.log.embedded import EmbeddedLog
        log = EmbeddedLog({str(tmp_path)!r}, rebalance_interval=0.05)
        c = log.consumer("g")
        c.subscribe(["t"])
        while True:
            c.consume(100, 0.05)
            print(len(c.assignment()), flush=True)
    """
    other = _python(code)
    assert other.stdout is not None
    while other.stdout.readline().strip() != b"4":
        pass
    me = log.consumer("g")
    me.subscribe([topic])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(me.assignment()) != 2:
        me.consume(100, 0.05)
    assert len(me.assignment()) == 2  # the live member gave two partitions up
    other.send_signal(signal.SIGKILL)
    other.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(me.assignment()) != 4:
        me.consume(100, 0.05)
    assert me.assignment() == {(topic, p) for p in range(4)}
    me.close()
