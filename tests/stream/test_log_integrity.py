"""Integrity of the embedded log, snapshots and offsets files: damage anywhere is refused
with the file and byte, a torn tail is truncated only after the durable mark, an offset is
never reused, and ``marginflow log verify`` / ``repair`` find and fix what readers refuse."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from marginflow.core.errors import DamagedFileError
from marginflow.stream.log.base import LogCorruptError, LogError, Record
from marginflow.stream.log.embedded import HEADER, EmbeddedLog
from marginflow.stream.log.integrity import repair, verify
from marginflow.stream.snapshots import (
    FileSnapshotStore,
    Snapshot,
    SnapshotDamagedError,
    SnapshotError,
)
from marginflow.stream.topics import Distribution, TopicSpec

REPO = Path(__file__).resolve().parents[2]


def _topic(log: EmbeddedLog, name: str = "t", partitions: int = 1) -> str:
    log.create_topics([TopicSpec(name, (), Distribution.BY_KEY, partitions)])
    return name


def _read_all(log: EmbeddedLog, topic: str, partition: int = 0, start: int = 0) -> list[Record]:
    reader = log.consumer()
    reader.assign({(topic, partition): start})
    out: list[Record] = []
    try:
        while batch := reader.consume(10_000, 0.0):
            out.extend(batch)
    finally:
        reader.close()
    return out


def _flushes(log: EmbeddedLog, topic: str, n: int, per: int = 10, partition: int = 0) -> None:
    producer = log.producer()
    for i in range(n * per):
        producer.produce(topic, b"value-%06d" % i, partition=partition)
        if i % per == per - 1:
            producer.flush()
    producer.flush()


def _segments(log: EmbeddedLog, topic: str = "t", partition: int = 0) -> list[Path]:
    return sorted((log.root / "topics" / topic / str(partition)).glob("*.log"))


def _flip(path: Path, position: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= mask
    path.write_bytes(bytes(data))


def _damaged(findings: list) -> list:  # type: ignore[type-arg]
    return [f for f in findings if f.status == "damaged"]


# -- readers never stop short in silence ------------------------------------------------------
def test_a_flip_in_the_middle_is_refused_by_readers_never_truncated(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    _flushes(log, topic, 20)
    (segment,) = _segments(log)
    middle = segment.stat().st_size // 2
    _flip(segment, middle)
    size = segment.stat().st_size
    with pytest.raises(
        LogCorruptError, match=rf"^{segment}: damaged at byte \d+: .* offset \d+ of t\[0\]"
    ):
        _read_all(log, topic)
    # a writer checks from the durable mark on (damage below it is the readers' to find):
    # it appends after the mark and truncates nothing
    _flushes(EmbeddedLog(tmp_path), topic, 1)
    assert segment.stat().st_size > size
    with pytest.raises(LogCorruptError):
        _read_all(log, topic)


def test_a_flip_in_the_last_acknowledged_batch_is_damage_not_a_torn_tail(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    _flushes(log, topic, 5)
    (segment,) = _segments(log)
    size = segment.stat().st_size
    _flip(segment, size - 3)  # in the last record of the last flushed batch
    with pytest.raises(LogCorruptError, match="offset 40 of t\\[0\\]"):
        _read_all(log, topic)
    _flushes(EmbeddedLog(tmp_path), topic, 1)  # no truncation: appended after the mark
    assert segment.stat().st_size > size
    assert log.end_offsets([(topic, 0)]) == {(topic, 0): 60}  # no offset handed out again
    with pytest.raises(LogCorruptError, match=r"offset 40 of t\[0\]"):
        _read_all(log, topic)


def test_a_truncated_segment_is_refused(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    _flushes(log, topic, 5)
    (segment,) = _segments(log)
    os.truncate(segment, segment.stat().st_size - 100)  # acknowledged bytes lost
    with pytest.raises(LogCorruptError, match="runs past the end of the file"):
        _read_all(log, topic)
    with pytest.raises(LogCorruptError, match="before the durable mark"):
        _flushes(EmbeddedLog(tmp_path), topic, 1)


def test_readers_see_only_acknowledged_records(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    producer = log.producer()
    producer._batch_bytes = 64  # written to the segment at once, acknowledged at flush
    for _i in range(20):
        producer.produce(topic, b"x" * 40, partition=0)
    assert _segments(log)[0].stat().st_size > HEADER
    assert _read_all(log, topic) == []
    assert log.end_offsets([(topic, 0)]) == {(topic, 0): 0}
    producer.flush()
    assert len(_read_all(log, topic)) == 20


def test_an_unacknowledged_tail_is_truncated_and_no_offset_is_reused(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    _flushes(log, topic, 2)
    (segment,) = _segments(log)
    acknowledged = segment.stat().st_size
    producer = log.producer()
    producer._batch_bytes = 64
    for _ in range(5):
        producer.produce(topic, b"y" * 40, partition=0)  # written, never flushed: a crash
    _flip(segment, segment.stat().st_size - 2)  # ... that tore the last write
    assert len(_read_all(log, topic)) == 20  # the readers never saw it
    _flushes(EmbeddedLog(tmp_path), topic, 1)
    records = _read_all(EmbeddedLog(tmp_path), topic)
    assert [r.offset for r in records] == list(range(len(records)))
    assert segment.stat().st_size > acknowledged


def test_an_old_format_segment_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    (tmp_path / "topics" / topic / "0").mkdir(exist_ok=True)
    body = struct.pack("<qqI", 0, 0, 1) + struct.pack("<iI", -1, 3) + b"abc"
    old = struct.pack("<II", len(body), zlib.crc32(body)) + body  # format 1: no header
    (tmp_path / "topics" / topic / "0" / f"{0:020d}.log").write_bytes(old)
    with pytest.raises(LogCorruptError, match=r"written by an older marginflow \(format 1"):
        _flushes(log, topic, 1)


@pytest.mark.parametrize("name", ["offsets", "meta"])
def test_a_damaged_offsets_or_meta_file_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    _flushes(log, topic, 1)
    consumer = log.consumer("g")
    consumer.subscribe([topic])
    consumer.consume(100, 1.0)
    consumer.commit({(topic, 0): 7})
    consumer.close()
    path = tmp_path / ("groups/g/t.offsets" if name == "offsets" else "topics/t/meta.json")
    _flip(path, path.stat().st_size - 3, 0x02)  # a digit becomes another digit
    again = EmbeddedLog(tmp_path)
    with pytest.raises(LogCorruptError, match=rf"^{path}: damaged at byte \d+: checksum mismatch$"):
        again.committed("g", [(topic, 0)]) if name == "offsets" else again.partitions(topic)


# -- snapshots ---------------------------------------------------------------------------------
def test_a_snapshot_with_its_offset_changed_is_refused(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save("g", ("t", 0), Snapshot(1234, b"state" * 10))
    path = store.path("g", ("t", 0))
    _flip(path, 8)  # the offset field: format 1 left it outside the checksum
    with pytest.raises(SnapshotDamagedError, match=rf"^{path}: damaged at byte 0: checksum"):
        store.load("g", ("t", 0))


def test_an_unreadable_snapshot_is_one_line(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    store.path("g", ("t", 0)).mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(SnapshotError, match=r"t-0\.snap: cannot read"):
        store.load("g", ("t", 0))


# -- 100 of 100 random flips --------------------------------------------------------------------
def _build(root: Path) -> dict[tuple[str, int], list[Record]]:
    log = EmbeddedLog(root / "log", segment_bytes=3000)
    log.create_topics([TopicSpec(t, (), Distribution.BY_KEY, 2) for t in ("trades", "market")])
    rng = random.Random(7)
    producer = log.producer()
    for i in range(600):
        topic = "trades" if i % 3 else "market"
        key = None if i % 5 == 0 else b"k%d" % (i % 17)
        producer.produce(topic, rng.randbytes(rng.randint(1, 60)), partition=i % 2, key=key)
        if i % 25 == 24:
            producer.flush()
    producer.flush()
    for group in ("keeper", "sink"):
        consumer = log.consumer(group)
        consumer.subscribe(["trades"])
        consumer.consume(50, 1.0)
        consumer.commit({("trades", 0): 3, ("trades", 1): 5})
        consumer.close()
    store = FileSnapshotStore(root / "state")
    for p in range(2):
        store.save("keeper", ("trades", p), Snapshot(3 + 2 * p, rng.randbytes(300)))
    return {(t, p): _read_all(log, t, p) for t in ("trades", "market") for p in range(2)}


def _files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.stat().st_size and not p.name.startswith(".")
    )  # fmt: skip


def test_a_flipped_byte_anywhere_is_detected_in_100_of_100_trials(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    expected = _build(pristine)
    files = _files(pristine)
    kinds = {p.suffix or p.name for p in files}
    assert {".log", ".idx", "durable", ".offsets", ".json", ".snap"} <= kinds
    assert not _damaged(verify(pristine / "log", [pristine / "state"]))
    rng = random.Random(2024)
    detected = 0
    for trial in range(100):
        root = tmp_path / f"trial-{trial}"
        shutil.copytree(pristine, root)
        relative = rng.choice(files).relative_to(pristine)
        path = root / relative
        position = rng.randrange(path.stat().st_size)
        _flip(path, position, rng.randrange(1, 256))
        findings = _damaged(verify(root / "log", [root / "state"]))
        if any(Path(f.path) == path for f in findings):
            detected += 1
        # and nothing wrong is ever read: a reader refuses, or reads exactly what was written
        log = EmbeddedLog(root / "log")
        for (topic, p), records in expected.items():
            with contextlib.suppress(DamagedFileError):
                assert _read_all(log, topic, p) == records, (relative, position)
        shutil.rmtree(root)
    assert detected == 100


# -- log verify and log repair ------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["marginflow", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )


def test_verify_and_repair_from_the_command_line(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path, segment_bytes=1000)
    topic = _topic(log)
    _flushes(log, topic, 30)
    consumer = log.consumer("g")
    consumer.subscribe([topic])
    consumer.consume(1000, 1.0)
    consumer.commit({(topic, 0): 250})  # a group already past the damage
    consumer.close()
    segments = _segments(log)
    assert len(segments) > 5
    _flip(segments[3], 200)
    clean = _cli("log", "verify", "--log", str(tmp_path))
    assert clean.returncode == 2, clean.stdout + clean.stderr
    assert str(segments[3]) in clean.stdout
    assert "damaged" in clean.stdout

    refused = _cli("log", "repair", "--log", str(tmp_path))
    assert refused.returncode == 2
    assert "--truncate-after-last-good" in refused.stderr
    assert len(_segments(log)) == len(segments)  # nothing changed without it

    done = _cli("log", "repair", "--log", str(tmp_path), "--truncate-after-last-good", "--json")
    assert done.returncode == 0, done.stderr
    assert '"truncated"' in done.stdout
    assert "quarantine" in done.stdout
    assert not _damaged(verify(tmp_path))
    kept = sorted((tmp_path / "quarantine").rglob("*"))
    assert any(p.name.endswith(".log") for p in kept)

    # the next append takes no offset below the old end: a committed group sees only new ones
    again = EmbeddedLog(tmp_path)
    _flushes(again, topic, 1)
    records = _read_all(again, topic)
    assert records[-1].offset == 309
    assert records[-10].offset == 300
    assert [r.offset for r in _read_all(again, topic, start=250)] == list(range(300, 310))


def test_repair_rebuilds_a_damaged_index_without_dropping_records(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    topic = _topic(log)
    _flushes(log, topic, 10)
    index = _segments(log)[0].with_suffix(".idx")
    _flip(index, 20)
    assert [r.offset for r in _read_all(log, topic, start=55)] == list(range(55, 100))  # a hint
    assert [f.kind for f in _damaged(verify(tmp_path))] == ["index"]
    changes = repair(tmp_path)
    assert not any(c.first_offset is not None for c in changes)
    assert not _damaged(verify(tmp_path))
    assert len(_read_all(log, topic)) == 100


# -- full and read-only disks ----------------------------------------------------------------
_FSIZE = """
import resource, signal, sys
from pathlib import Path
from marginflow.core.errors import MarginflowError
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.snapshots import FileSnapshotStore, Snapshot
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG
root = Path(sys.argv[1])
log = EmbeddedLog(root / "log")
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
p = log.producer()
try:
    for i in range(100_000):
        p.produce("t", b"%08d" % i + b"z" * 92, partition=0)
        if i % 50 == 49:
            p.flush()
except MarginflowError as exc:
    print("log:", exc)
try:
    FileSnapshotStore(root / "state").save("g", ("t", 0), Snapshot(5, b"s" * 30_000))
except MarginflowError as exc:
    print("snapshot:", exc)
try:
    log.write_offsets("g", {("t", i): i for i in range(3000)})
except MarginflowError as exc:
    print("offsets:", exc)
"""


def test_a_write_past_the_file_size_limit_is_one_line_and_leaves_no_half_write(
    tmp_path: Path,
) -> None:
    log = EmbeddedLog(tmp_path / "log")
    topic = _topic(log)
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FSIZE), str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stdout.splitlines()
    segment = _segments(log)[0]
    assert lines[0] == f"log: {segment}: cannot write: File too large"
    assert lines[1].startswith("snapshot: ")
    assert "t-0.snap: cannot write: File too large" in lines[1]
    assert lines[2].startswith(f"offsets: {tmp_path / 'log' / 'groups' / 'g' / 't.offsets'}")
    assert not _damaged(verify(tmp_path / "log", [tmp_path / "state"]))
    records = _read_all(log, topic)
    assert len(records) % 50 == 0
    assert [r.offset for r in records] == list(range(len(records)))
    assert not list((tmp_path / "state").rglob("*.snap"))
    assert not list((tmp_path / "state").rglob(".*"))
    _flushes(log, topic, 1)  # and the log goes on
    assert len(_read_all(log, topic)) == len(records) + 10


@pytest.fixture
def small_tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_then_a_read_only_one(small_tmpfs: Path) -> None:
    log = EmbeddedLog(small_tmpfs / "log")
    topic = _topic(log)
    with pytest.raises(
        LogError, match=r"00000000000000000000.log: cannot write: No space left on device$"
    ):
        _flushes(log, topic, 10_000, per=100)
    count = len(_read_all(log, topic))
    assert count > 0
    assert not _damaged(verify(small_tmpfs / "log"))
    store = FileSnapshotStore(small_tmpfs / "state")
    with pytest.raises(SnapshotError, match=r"t-0\.snap: cannot write: No space left on device"):
        store.save("g", ("t", 0), Snapshot(1, b"s" * 400_000))
    assert not list((small_tmpfs / "state").rglob("*.snap*"))
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    with pytest.raises(LogError, match="cannot write: Read-only file system"):
        log.write_offsets("g", {(topic, 0): 1})
    with pytest.raises(LogError, match="Read-only file system"):
        _flushes(EmbeddedLog(small_tmpfs / "log"), topic, 1)
    assert len(_read_all(log, topic)) == count


def test_a_damaged_run_record_is_refused_naming_it(tmp_path: Path) -> None:
    from marginflow.core.errors import ConfigurationError
    from marginflow.stream.cluster_dir import read_run, write_run

    write_run(tmp_path, {"log": "embedded", "log_url": "embedded:///x", "book_fingerprint": ""})
    assert read_run(tmp_path) is not None
    _flip(tmp_path / "run.json", 40)
    with pytest.raises(ConfigurationError, match=r"run\.json: damaged at byte \d+: checksum"):
        read_run(tmp_path)
