"""State snapshots: a worker's state for one input partition, stored with the offset it
reflects, so a restarted or reassigned worker resumes from the snapshot and replays only
the records after it.

A snapshot is valid whoever wrote it: a worker's state after offset ``n`` is a function of
the log up to ``n`` (processing is deterministic), so two owners of a partition racing to
save (a zombie after a rebalance, say) each save a true pair of (state, offset), and
whichever lands last is as good a starting point as the other.

Still, a zombie should not write at all: its snapshot can take a partition's state back
behind the offsets its owner has committed, and it keeps publishing for a partition it does
not own. So ownership is fenced here, whatever the broker says: a worker **claims** a
partition when it is assigned it (:meth:`FileSnapshotStore.claim`, before it loads the
snapshot), which raises the partition's epoch, and every save names the epoch of its claim;
a save with an older epoch than the partition's is refused with :class:`SnapshotFencedError`
(checked and written under one file lock, so a claim cannot land between the two).
"""

from __future__ import annotations

import fcntl
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import google_crc32c

from marginflow.core.errors import (
    MSG_BAD_CHECKSUM,
    MSG_OLD_FORMAT,
    MSG_SNAPSHOT_FENCED,
    DamagedFileError,
    MarginflowError,
)
from marginflow.stream.durable import atomic_write, checked_json, load_checked_json, write_failed
from marginflow.stream.log.base import TP

_MAGIC = b"MFSNAP02"
_OLD_MAGIC = b"MFSNAP01"  # format 1: a zlib CRC32 of the payload only
# magic, offset, payload length, crc32c(magic, offset and length, then the payload)
_HEADER = struct.Struct("<8sqQI")
_COVERED = struct.calcsize("<8sqQ")  # the header bytes the checksum covers


class SnapshotError(MarginflowError):
    """A snapshot could not be saved or read back."""


class SnapshotDamagedError(SnapshotError, DamagedFileError):
    """A snapshot file failed its checksum or format check (names the file and byte)."""


class SnapshotFencedError(SnapshotError):
    """A save by a former owner of the partition (see the module docstring)."""

    def __init__(self, group: str, tp: TP, epoch: int, current: int) -> None:
        super().__init__(
            MSG_SNAPSHOT_FENCED.format(
                group=group, topic=tp[0], partition=tp[1], epoch=epoch, current=current
            )
        )
        self.tp = tp


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A worker's state of one input partition after reading up to ``offset`` (exclusive:
    the next record to apply)."""

    offset: int
    data: bytes


class SnapshotStore(Protocol):
    def claim(self, group: str, tp: TP) -> int:
        """Make the caller the owner of ``tp``'s snapshots for ``group``: an epoch higher than
        any claimed before; saves that name an older one are refused from now on."""

    def save(self, group: str, tp: TP, snapshot: Snapshot, *, epoch: int | None = None) -> None:
        """Durably replace the snapshot of ``tp`` for ``group`` (atomic: all or nothing);
        with ``epoch``, only if no later claim was made (else :class:`SnapshotFencedError`)."""

    def load(self, group: str, tp: TP) -> Snapshot | None:
        """The last snapshot saved, or None if there is none."""


def encode_snapshot(snapshot: Snapshot) -> list[bytes]:
    """The file's bytes, in two parts (the payload is not copied)."""
    head = _HEADER.pack(_MAGIC, snapshot.offset, len(snapshot.data), 0)[:_COVERED]
    crc = int(google_crc32c.extend(google_crc32c.value(head), snapshot.data))
    return [head + struct.pack("<I", crc), snapshot.data]


def decode_snapshot(path: Path, raw: bytes) -> Snapshot:
    """The snapshot in the bytes ``raw`` of file ``path``; :class:`SnapshotDamagedError`
    naming the file and byte if any byte of it was changed."""
    if raw[:8] == _OLD_MAGIC:
        raise SnapshotDamagedError(path, 0, MSG_OLD_FORMAT.format(found=1, expected=2))
    if len(raw) < _HEADER.size:
        raise SnapshotDamagedError(path, len(raw), "truncated header")
    magic, offset, length, crc = _HEADER.unpack_from(raw)
    if magic != _MAGIC:
        raise SnapshotDamagedError(path, 0, "not a marginflow snapshot")
    data = raw[_HEADER.size :]
    if len(data) != length:
        raise SnapshotDamagedError(
            path, _HEADER.size, f"payload of {len(data)} bytes, header says {length}"
        )
    head = raw[:_COVERED]
    if int(google_crc32c.extend(google_crc32c.value(head), data)) != crc:
        raise SnapshotDamagedError(path, 0, MSG_BAD_CHECKSUM)
    return Snapshot(offset, data)


class FileSnapshotStore:
    """Snapshots as files ``<root>/<group>/<topic>-<partition>.snap``, replaced atomically
    (write a temporary file, fsync it, rename it over the old one, fsync the directory).

    Format 2: ``"MFSNAP02" | i64 offset | u64 payload length | u32 crc32c | payload``, the
    checksum over the 24 header bytes before it and the payload, so a change to any byte,
    the offset included, is refused with the file's name.

    A partition's epoch is in ``<topic>-<partition>.epoch`` beside it (a checked JSON file,
    :mod:`marginflow.stream.durable`), and its claims and saves take turns on
    ``<topic>-<partition>.lock`` (``flock``: across processes too; its name has no leading
    dot, which marks a half-written file)."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync

    def path(self, group: str, tp: TP) -> Path:
        return self.root / group / f"{tp[0]}-{tp[1]}.snap"

    @contextmanager
    def _locked(self, group: str, tp: TP) -> Iterator[Path]:
        path = self.path(group, tp)
        lock = path.with_suffix(".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_failed(lock, exc, SnapshotError) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield path
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def _epoch(path: Path) -> int:
        epoch_file = path.with_suffix(".epoch")
        try:
            raw = epoch_file.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise SnapshotError(f"{epoch_file}: cannot read: {exc.strerror or exc}") from None
        epoch = load_checked_json(epoch_file, raw, SnapshotDamagedError)
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise SnapshotDamagedError(epoch_file, 0, "not an epoch number")
        return epoch

    def claim(self, group: str, tp: TP) -> int:
        with self._locked(group, tp) as path:
            epoch = self._epoch(path) + 1
            atomic_write(
                path.with_suffix(".epoch"),
                [checked_json(epoch)],
                sync=self.fsync,
                error=SnapshotError,
            )
        return epoch

    def save(self, group: str, tp: TP, snapshot: Snapshot, *, epoch: int | None = None) -> None:
        with self._locked(group, tp) as path:
            if epoch is not None and (current := self._epoch(path)) > epoch:
                raise SnapshotFencedError(group, tp, epoch, current)
            atomic_write(path, encode_snapshot(snapshot), sync=self.fsync, error=SnapshotError)

    def load(self, group: str, tp: TP) -> Snapshot | None:
        path = self.path(group, tp)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a directory in its place, no permission, an I/O error
            raise SnapshotError(f"{path}: cannot read: {exc.strerror or exc}") from None
        return decode_snapshot(path, raw)


class SnapshotWriter:
    """Saves snapshots on a background thread, in submission order, so a worker's loop does
    not stall on fsync (tens of milliseconds on a busy disk, once per partition per
    interval) while results wait behind it.

    The state is encoded to bytes by the caller, at a consistent point of its loop; only
    the I/O moves here. :meth:`completed` hands back, on the caller's thread, the keys and
    offsets whose snapshots are durable, so the caller commits offsets only behind a
    durable snapshot. A failed save is raised to the caller at its next call, never lost.
    """

    def __init__(self, store: SnapshotStore, *, on_saved: Callable[[], None] | None = None):
        self.store = store
        self._on_saved = on_saved
        self._queue: queue.Queue[tuple[str, TP, Snapshot, object, int | None] | None] = (
            queue.Queue()
        )
        self._done: list[tuple[TP, int, object]] = []
        self._fenced: list[SnapshotFencedError] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
        self._thread.start()

    def submit(
        self,
        group: str,
        tp: TP,
        snapshot: Snapshot,
        tag: object = None,
        *,
        epoch: int | None = None,
    ) -> None:
        """Queue ``snapshot`` of ``tp``, saved under ``epoch`` (see :meth:`SnapshotStore.save`);
        ``tag`` comes back with it from :meth:`completed`."""
        self._raise()
        if self._closed:
            raise SnapshotError("the snapshot writer is closed")
        self._queue.put((group, tp, snapshot, tag, epoch))

    def fenced(self) -> list[SnapshotFencedError]:
        """The saves refused since the last call because another member claimed the
        partition: not errors of this worker, but news that it lost the partition."""
        with self._lock:
            fenced, self._fenced = self._fenced, []
        return fenced

    def completed(self) -> list[tuple[TP, int, object]]:
        """(tp, offset, tag) of the snapshots saved since the last call, in saving order."""
        self._raise()
        with self._lock:
            done, self._done = self._done, []
        return done

    def wait(self) -> list[tuple[TP, int, object]]:
        """Block until everything submitted is saved; then as :meth:`completed`."""
        self._queue.join()
        return self.completed()

    def close(self) -> None:
        """Save what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise SnapshotError(f"saving a snapshot failed: {self._error}") from self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is not None:
                    continue  # the worker stops at its next call; save nothing after a failure
                group, tp, snapshot, tag, epoch = item
                try:
                    self.store.save(group, tp, snapshot, epoch=epoch)
                    with self._lock:
                        self._done.append((tp, snapshot.offset, tag))
                    if self._on_saved is not None:
                        self._on_saved()
                except SnapshotFencedError as exc:
                    with self._lock:
                        self._fenced.append(exc)
                except BaseException as exc:  # handed to the worker's thread, never lost
                    # (a raising callback too: the thread must live on to serve the queue,
                    # or the next ``wait`` blocks forever)
                    self._error = exc
            finally:
                self._queue.task_done()
