"""The background snapshot writer: order kept, durability reported, failures raised, and a
former owner's saves fenced off."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginflow.stream.log.base import TP
from marginflow.stream.snapshots import (
    FileSnapshotStore,
    Snapshot,
    SnapshotDamagedError,
    SnapshotError,
    SnapshotFencedError,
    SnapshotWriter,
)


def test_saves_in_order_and_reports_what_is_durable(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    writer = SnapshotWriter(store)
    tp: TP = ("t", 0)
    for offset in range(1, 30):
        writer.submit("g", tp, Snapshot(offset, b"x" * offset), tag=None)
    done = writer.wait()
    assert [o for _, o, _ in done] == list(range(1, 30))
    assert store.load("g", tp) == Snapshot(29, b"x" * 29)  # the last submitted wins
    assert writer.completed() == []
    writer.close()


def test_a_failed_save_is_raised_on_the_workers_thread(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")  # the store's root is a file: every save fails in the OS
    writer = SnapshotWriter(FileSnapshotStore(blocker))
    writer.submit("g", ("t", 0), Snapshot(1, b""))
    with pytest.raises(SnapshotError, match="saving a snapshot failed"):
        writer.wait()
    with pytest.raises(SnapshotError):
        writer.submit("g", ("t", 0), Snapshot(2, b""))


def test_a_closed_writer_refuses_rather_than_hangs(tmp_path: Path) -> None:
    writer = SnapshotWriter(FileSnapshotStore(tmp_path))
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(SnapshotError, match="closed"):
        writer.submit("g", ("t", 0), Snapshot(1, b""))


def test_a_failing_on_saved_callback_is_raised_rather_than_hangs(tmp_path: Path) -> None:
    """The callback runs on the writer's thread (the worker's phase hook): if it raises, the
    thread must go on serving the queue and hand the error over, not die silently and leave
    the next ``wait`` blocked forever."""

    def on_saved() -> None:
        raise RuntimeError("hook failed")

    writer = SnapshotWriter(FileSnapshotStore(tmp_path), on_saved=on_saved)
    writer.submit("g", ("t", 0), Snapshot(1, b"a"))
    with pytest.raises(SnapshotError, match="hook failed"):
        writer.wait()
    with pytest.raises(SnapshotError):
        writer.submit("g", ("t", 0), Snapshot(2, b"b"))
    with pytest.raises(SnapshotError):
        writer.close()  # the thread is still there to stop


def test_a_save_under_an_older_claim_is_refused_and_reported(tmp_path: Path) -> None:
    """Fencing: once another owner claimed the partition, a former owner's save is refused
    (the snapshot stays the new owner's), and the writer reports it instead of failing."""
    store = FileSnapshotStore(tmp_path)
    tp: TP = ("t", 3)
    old = store.claim("g", tp)
    store.save("g", tp, Snapshot(10, b"old"), epoch=old)
    new = store.claim("g", tp)
    assert new > old
    with pytest.raises(SnapshotFencedError, match=r"g: t\[3\] belongs to another member now"):
        store.save("g", tp, Snapshot(5, b"zombie"), epoch=old)
    store.save("g", tp, Snapshot(20, b"new"), epoch=new)
    writer = SnapshotWriter(store)
    writer.submit("g", tp, Snapshot(7, b"zombie"), epoch=old)
    assert writer.wait() == []  # not durable: nothing to commit
    assert [f.tp for f in writer.fenced()] == [tp]
    assert writer.fenced() == []
    assert store.load("g", tp) == Snapshot(20, b"new")
    writer.close()  # a refusal is not a failure of the writer
    assert FileSnapshotStore(tmp_path).claim("g", tp) == new + 1  # epochs survive a restart
    epoch_file = tmp_path / "g" / "t-3.epoch"
    raw = bytearray(epoch_file.read_bytes())
    raw[-2] ^= 0x01  # one bit of the epoch
    epoch_file.write_bytes(bytes(raw))
    with pytest.raises(SnapshotDamagedError, match=r"t-3\.epoch: damaged at byte"):
        store.claim("g", tp)
