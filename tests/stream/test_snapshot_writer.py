"""The background snapshot writer: order kept, durability reported, failures raised."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginflow.stream.log.base import TP
from marginflow.stream.snapshots import (
    FileSnapshotStore,
    Snapshot,
    SnapshotError,
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
