"""The embedded log: durable, partitioned, append-only files on one machine.

Layout under the log's root directory::

    topics/<topic>/meta.json                  partition count
    topics/<topic>/<p>/<base offset>.log      segment: frames, append-only
    topics/<topic>/<p>/<base offset>.idx      sparse index: (offset, position) per write
    topics/<topic>/<p>/.lock                  writers' lock (flock)
    groups/<group>/<topic>.offsets            committed offsets (JSON), replaced atomically
    groups/<group>/members/<id>               one file per live member, flock'ed by it
    groups/<group>/owners/<topic>-<p>         partition ownership, flock'ed by its owner

Records are written in batches (one per producer write), Kafka-style:
``u32 body_len | u32 crc32(body) | body`` with
``body = i64 base_offset | i64 timestamp_ms | u32 count | records`` and each record
``i32 key_len (-1: no key) | u32 value_len | key | value``. One checksum per batch keeps
both the writer's and the reader's per-record work to a few slices.

Durability and the fsync policy
-------------------------------
A producer buffers records in memory and writes each partition's buffer with a single
``write`` when it exceeds ``batch_bytes`` and on :meth:`EmbeddedProducer.flush`. A record
written is safe from a crash of the process (it is in the kernel's page cache). With
``fsync="flush"`` (the default) ``flush`` also fsyncs every file it wrote, so a record is
safe from a crash of the machine once ``flush`` returns; with ``fsync="never"`` the kernel
writes it back in its own time (faster; a power cut may lose the last seconds). Committed
offsets are written to a temporary file, fsynced (policy permitting) and renamed over the
old file, so a commit is either wholly there or not.

Recovery: a writer takes the partition's lock, validates the frames after the last one it
knows (or after the last index entry when it first opens the partition) and truncates a torn
tail left by a crash mid-write. Readers never truncate: they stop at the first incomplete
frame or bad checksum and see what follows once a writer has repaired it.

Consumer groups work across processes: each member holds a lock on its member file (the
kernel drops it when the process dies, however it dies), computes the same assignment as
every other live member (partitions dealt round-robin over the sorted member ids) and reads
a partition only while it holds the partition's ownership lock, so two members never read
the same partition at once and a dead member's partitions are taken over at the next check.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import json
import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from marginflow.stream.log.base import TP, LogError, OnAssign, OnRevoke, Record
from marginflow.stream.topics import TopicSpec

FsyncPolicy = Literal["flush", "never"]

_HEAD = struct.Struct("<II")  # body_len, crc32(body)
_TAIL = struct.Struct("<qqI")  # base_offset, timestamp_ms, count (start of the body)
_REC = struct.Struct("<iI")  # key_len (-1: no key), value_len
_IDX = struct.Struct("<qq")  # base offset, file position of the batch
_REC_OVERHEAD = _REC.size
_MAX_BATCH = 256 << 20
_new_record = tuple.__new__  # builds a Record without NamedTuple's Python-level __new__


def _segment_name(base: int) -> str:
    return f"{base:020d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, *, sync: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True, slots=True)
class _Batch:
    """One valid record batch read from a segment: ``data`` is the whole batch."""

    data: bytes
    base: int
    timestamp_ms: int
    count: int

    @property
    def size(self) -> int:
        return len(self.data)


def _batch_at(fd: int, pos: int) -> _Batch | None:
    """The complete, valid batch at ``pos`` of ``fd``, or None (end of data, a batch still
    being written, or a torn or damaged one)."""
    head = os.pread(fd, _HEAD.size + _TAIL.size, pos)
    if len(head) < _HEAD.size + _TAIL.size:
        return None
    body_len, crc = _HEAD.unpack_from(head)
    if body_len < _TAIL.size or body_len > _MAX_BATCH:
        return None
    data = os.pread(fd, _HEAD.size + body_len, pos)
    if len(data) < _HEAD.size + body_len:
        return None
    if zlib.crc32(memoryview(data)[_HEAD.size :]) != crc:
        return None
    base, ts, count = _TAIL.unpack_from(data, _HEAD.size)
    return _Batch(data, base, ts, count)


def _records(
    batch: _Batch, done: int, pos: int, limit: int, topic: str, partition: int
) -> tuple[list[Record], int, int]:
    """Up to ``limit`` records of ``batch`` after the first ``done`` (which end at byte
    ``pos``; 0 means the batch start); returns them, the new count read and position."""
    data, out = batch.data, []
    if done == 0:
        pos = _HEAD.size + _TAIL.size
    unpack, new, rec = _REC.unpack_from, _new_record, Record
    ts = batch.timestamp_ms
    stop = min(batch.count, done + limit)
    for offset in range(batch.base + done, batch.base + stop):
        key_len, value_len = unpack(data, pos)
        pos += 8
        if key_len >= 0:
            key: bytes | None = data[pos : pos + key_len]
            pos += key_len
        else:
            key = None
        out.append(new(rec, (topic, partition, offset, ts, key, data[pos : pos + value_len])))
        pos += value_len
    return out, stop, pos


def _valid_end(path: Path, pos: int, offset: int) -> tuple[int, int]:
    """Scan ``path`` from ``pos`` (a batch boundary holding ``offset``) to the end of its
    valid batches; returns (end position, next offset)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            batch = _batch_at(fd, pos)
            if batch is None or batch.base != offset:
                return pos, offset
            pos += batch.size
            offset += batch.count
    finally:
        os.close(fd)


class _Partition:
    """The files of one topic partition (segments and their sparse indexes)."""

    def __init__(self, root: Path, topic: str, partition: int) -> None:
        self.dir = root / "topics" / topic / str(partition)
        self.topic, self.partition = topic, partition
        self.lock_path = self.dir / ".lock"

    def bases(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.log"))

    def segment(self, base: int) -> Path:
        return self.dir / f"{_segment_name(base)}.log"

    def index(self, base: int) -> list[tuple[int, int]]:
        try:
            data = (self.dir / f"{_segment_name(base)}.idx").read_bytes()
        except FileNotFoundError:
            return []
        usable = len(data) - len(data) % _IDX.size
        return [_IDX.unpack_from(data, i) for i in range(0, usable, _IDX.size)]

    def locate(self, offset: int) -> tuple[int, int, int]:
        """(segment base, position, offset at position) of a frame at or before ``offset``."""
        bases = self.bases() or [0]
        base = bases[max(bisect.bisect_right(bases, offset) - 1, 0)]
        entries = self.index(base)
        i = bisect.bisect_right(entries, (offset, 1 << 62)) - 1
        if i >= 0:
            return base, entries[i][1], entries[i][0]
        return base, 0, base

    def tail(self) -> tuple[int, int, int]:
        """(last segment base, end position, next offset) of the valid data."""
        bases = self.bases() or [0]
        base = bases[-1]
        path = self.segment(base)
        if not path.exists():
            return base, 0, base
        entries = self.index(base)
        size = path.stat().st_size
        for off, pos in reversed(entries):
            if pos < size:
                end, nxt = _valid_end(path, pos, off)
                if nxt > off:  # the index entry points at a real frame
                    return base, end, nxt
        end, nxt = _valid_end(path, 0, base)
        return base, end, nxt


@dataclass
class _Writer:
    """Appends to one partition; the lock makes it safe against writers in other processes."""

    part: _Partition
    segment_bytes: int
    base: int = -1
    end: int = 0
    next_offset: int = 0
    dirty: set[str] = field(default_factory=set)
    new_files: bool = False

    def append(self, frames: list[tuple[bytes | None, bytes]], timestamp_ms: int) -> None:
        self.part.dir.mkdir(parents=True, exist_ok=True)
        with _flocked(self.part.lock_path):
            self._recover()
            if self.end >= self.segment_bytes:
                self.base, self.end = self.next_offset, 0
            parts = [_TAIL.pack(self.next_offset, timestamp_ms, len(frames))]
            pack = _REC.pack
            for key, value in frames:
                if key is None:
                    parts.append(pack(-1, len(value)))
                else:
                    parts.append(pack(len(key), len(value)))
                    parts.append(key)
                parts.append(value)
            body = b"".join(parts)
            data = _HEAD.pack(len(body), zlib.crc32(body)) + body
            seg = self.part.segment(self.base)
            if not seg.exists():
                self.new_files = True
            with open(seg, "ab") as f:
                f.write(data)
            # the index is a hint (rebuilt by scanning if lost), so it is never fsynced
            with open(seg.with_suffix(".idx"), "ab") as f:
                f.write(_IDX.pack(self.next_offset, self.end))
            self.dirty.add(str(seg))
            self.end += len(data)
            self.next_offset += len(frames)

    def _recover(self) -> None:
        """Catch up with what other writers appended and truncate a torn tail."""
        bases = self.part.bases()
        last = bases[-1] if bases else 0
        seg = self.part.segment(last)
        size = seg.stat().st_size if seg.exists() else 0
        if self.base == last and size == self.end:
            return
        if self.base == last and size > self.end:
            end, nxt = _valid_end(seg, self.end, self.next_offset)
        else:
            _, end, nxt = self.part.tail()
        if size > end:
            with open(seg, "r+b") as f:
                f.truncate(end)
        self.base, self.end, self.next_offset = last, end, nxt

    def sync(self) -> None:
        for name in self.dirty:
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if self.new_files:  # a new segment's name must be durable too
            _fsync_dir(self.part.dir)
            self.new_files = False
        self.dirty.clear()


class EmbeddedProducer:
    """Buffers records per partition and appends each buffer with one write."""

    def __init__(self, log: EmbeddedLog, *, batch_bytes: int = 1 << 20) -> None:
        self._log = log
        self._batch_bytes = batch_bytes
        self._buffers: dict[TP, list[tuple[bytes | None, bytes]]] = {}
        self._sizes: dict[TP, int] = {}
        self._writers: dict[TP, _Writer] = {}
        self._unsynced: set[TP] = set()

    def produce(
        self, topic: str, value: bytes, *, partition: int, key: bytes | None = None
    ) -> None:
        tp = (topic, partition)
        if len(value) > _MAX_BATCH // 2:
            raise LogError(f"record of {len(value)} bytes exceeds {_MAX_BATCH // 2} bytes")
        buf = self._buffers.get(tp)
        if buf is None:
            self._log.check_partition(topic, partition)
            buf = self._buffers[tp] = []
            self._sizes[tp] = 0
        buf.append((key, value))
        self._sizes[tp] += len(value) + _REC_OVERHEAD
        if self._sizes[tp] >= self._batch_bytes:
            self._write(tp)

    def _write(self, tp: TP) -> None:
        frames = self._buffers.pop(tp, None)
        self._sizes.pop(tp, None)
        if not frames:
            return
        writer = self._writers.get(tp)
        if writer is None:
            part = _Partition(self._log.root, *tp)
            writer = self._writers[tp] = _Writer(part, self._log.segment_bytes)
        writer.append(frames, time.time_ns() // 1_000_000)
        self._unsynced.add(tp)

    def send(self) -> None:
        # A reader of the files sees a record as soon as it is written; written but not yet
        # fsynced, a machine crash could take it back after a reader acted on it. So here,
        # sending is flushing.
        self.flush()

    def flush(self, timeout: float = 30.0) -> None:
        for tp in list(self._buffers):
            self._write(tp)
        if self._log.fsync == "flush":
            for tp in self._unsynced:
                self._writers[tp].sync()
        self._unsynced.clear()

    def close(self) -> None:
        self.flush()


class _Reader:
    """Reads one partition forward from an offset, batch by batch, following segment rolls."""

    def __init__(self, part: _Partition, offset: int) -> None:
        self.part = part
        self._fd: int | None = None
        self._batch: _Batch | None = None  # the batch being read, and how far
        self._done = 0
        self._bpos = 0
        self.seek(offset)

    def seek(self, offset: int) -> None:
        self.close()
        base, pos, at = self.part.locate(offset)
        self.base, self.pos, self.next_offset = base, pos, at
        self._batch, self._done, self._bpos = None, 0, 0
        while self.next_offset < offset:  # skip forward to the offset inside its batch
            got = self.read(min(offset - self.next_offset, 1 << 20))
            if not got:
                raise LogError(
                    f"{self.part.topic}[{self.part.partition}]: offset {offset} is beyond "
                    f"the end ({self.next_offset})"
                )

    def _open(self) -> int | None:
        if self._fd is None:
            try:
                self._fd = os.open(self.part.segment(self.base), os.O_RDONLY)
            except FileNotFoundError:
                return None
        return self._fd

    def read(self, limit: int) -> list[Record]:
        out: list[Record] = []
        topic, partition = self.part.topic, self.part.partition
        while len(out) < limit:
            batch = self._batch
            if batch is None:
                fd = self._open()
                if fd is None:
                    break
                batch = _batch_at(fd, self.pos)
                if batch is None:
                    if self._roll():
                        continue
                    break
                if batch.base != self.next_offset:
                    raise LogError(
                        f"{topic}[{partition}]: batch at offset {batch.base}, "
                        f"expected {self.next_offset}"
                    )
                self._batch, self._done, self._bpos = batch, 0, 0
            got, self._done, self._bpos = _records(
                batch, self._done, self._bpos, limit - len(out), topic, partition
            )
            out.extend(got)
            self.next_offset += len(got)
            if self._done >= batch.count:
                self.pos += batch.size
                self._batch = None
        return out

    def _roll(self) -> bool:
        """Move to the next segment if a writer started one at our offset."""
        if self.next_offset != self.base and self.part.segment(self.next_offset).exists():
            self.close()
            self.base, self.pos = self.next_offset, 0
            return True
        return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Membership:
    """This member's place in an embedded consumer group (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.members = root / "members"
        self.owners = root / "owners"
        self.members.mkdir(parents=True, exist_ok=True)
        self.owners.mkdir(parents=True, exist_ok=True)
        self.id = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = root / f".join-{self.id}"
        self._fd = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.replace(tmp, self.members / self.id)  # visible only once locked
        self._owned: dict[TP, int] = {}

    def live(self) -> list[str]:
        alive = []
        for path in self.members.iterdir():
            if path.name == self.id:
                alive.append(path.name)
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                alive.append(path.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # its process is gone: we hold its lock
            finally:
                os.close(fd)
        return sorted(alive)

    def desired(self, tps: Sequence[TP]) -> set[TP]:
        members = self.live()
        me, n = members.index(self.id), len(members)
        return {tp for k, tp in enumerate(sorted(tps)) if k % n == me}

    def owns(self, tp: TP) -> bool:
        return tp in self._owned

    def try_own(self, tp: TP) -> bool:
        fd = os.open(self.owners / f"{tp[0]}-{tp[1]}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._owned[tp] = fd
        return True

    def release(self, tp: TP) -> None:
        fd = self._owned.pop(tp, None)
        if fd is not None:
            os.close(fd)

    def leave(self) -> None:
        for tp in list(self._owned):
            self.release(tp)
        with contextlib.suppress(FileNotFoundError):
            (self.members / self.id).unlink()
        os.close(self._fd)


class EmbeddedConsumer:
    """A consumer of the embedded log: a group member (``subscribe``) or a reader (``assign``)."""

    def __init__(self, log: EmbeddedLog, group: str | None, *, rebalance_interval: float) -> None:
        self._log = log
        self._group = group
        self._readers: dict[TP, _Reader] = {}
        self._topics: list[str] = []
        self._member: _Membership | None = None
        self._on_assign: OnAssign | None = None
        self._on_revoke: OnRevoke | None = None
        self._rebalance_interval = rebalance_interval
        self._next_check = 0.0
        self._rr = 0

    # -- group membership -------------------------------------------------------------
    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: OnAssign | None = None,
        on_revoke: OnRevoke | None = None,
    ) -> None:
        if self._group is None:
            raise LogError("subscribe needs a consumer group")
        for t in topics:
            self._log.partitions(t)  # the topic must exist
        self._topics = list(topics)
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._member = _Membership(self._log.group_dir(self._group))
        self._next_check = 0.0

    def _rebalance(self) -> None:
        member = self._member
        assert member is not None
        tps = [(t, p) for t in self._topics for p in range(self._log.partitions(t))]
        want = member.desired(tps)
        lose = sorted(tp for tp in self._readers if tp not in want)
        if lose:
            if self._on_revoke is not None:
                self._on_revoke(lose)
            for tp in lose:
                self._readers.pop(tp).close()
                member.release(tp)
        gained = [tp for tp in sorted(want - set(self._readers)) if member.try_own(tp)]
        if gained:
            starts = dict(self.committed(gained))
            override = self._on_assign(gained) if self._on_assign is not None else None
            for tp in gained:
                start = (override or {}).get(tp, starts[tp])
                part = _Partition(self._log.root, *tp)
                self._readers[tp] = _Reader(part, start or 0)

    def assign(self, offsets: Mapping[TP, int]) -> None:
        for topic, p in offsets:
            self._log.check_partition(topic, p)
        for reader in self._readers.values():  # exactly these partitions from now on
            reader.close()
        self._readers = {
            (topic, p): _Reader(_Partition(self._log.root, topic, p), off)
            for (topic, p), off in offsets.items()
        }

    def assignment(self) -> set[TP]:
        return set(self._readers)

    # -- reading ------------------------------------------------------------------------
    def consume(self, max_records: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        sleep = 0.0005
        while True:
            now = time.monotonic()
            if self._member is not None and now >= self._next_check:
                self._rebalance()
                self._next_check = now + self._rebalance_interval
            out = self._read(max_records)
            if out or now >= deadline:
                return out
            time.sleep(min(sleep, max(deadline - now, 0.0)))
            sleep = min(sleep * 2, 0.01)

    def _read(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        tps = sorted(self._readers)
        if not tps:
            return out
        self._rr = (self._rr + 1) % len(tps)
        for tp in tps[self._rr :] + tps[: self._rr]:  # rotate so no partition starves
            out.extend(self._readers[tp].read(max_records - len(out)))
            if len(out) >= max_records:
                break
        return out

    def seek(self, tp: TP, offset: int) -> None:
        if tp not in self._readers:
            raise LogError(f"cannot seek {tp}: not assigned")
        self._readers[tp].seek(offset)

    def position(self, tp: TP) -> int:
        return self._readers[tp].next_offset

    # -- offsets --------------------------------------------------------------------------
    def commit(self, offsets: Mapping[TP, int]) -> None:
        if self._group is None:
            raise LogError("commit needs a consumer group")
        for tp in offsets:
            if self._member is not None and not self._member.owns(tp):
                raise LogError(f"cannot commit {tp[0]}[{tp[1]}]: not owned by this member")
        self._log.write_offsets(self._group, offsets)

    def committed(self, tps: Sequence[TP]) -> dict[TP, int | None]:
        if self._group is None:
            return dict.fromkeys(tps)
        return self._log.committed(self._group, tps)

    def close(self) -> None:
        if self._member is not None:
            if self._on_revoke is not None and self._readers:
                self._on_revoke(sorted(self._readers))
            self._member.leave()
            self._member = None
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


class EmbeddedLog:
    """The embedded log rooted at ``root`` (created if missing). Safe to open from several
    processes at once. ``fsync`` is the durability policy (see the module docstring)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "flush",
        segment_bytes: int = 64 << 20,
        rebalance_interval: float = 0.5,
    ) -> None:
        if fsync not in ("flush", "never"):
            raise LogError(f"fsync must be 'flush' or 'never', got {fsync!r}")
        self.root = Path(root)
        self.fsync: FsyncPolicy = fsync
        self.segment_bytes = segment_bytes
        self.rebalance_interval = rebalance_interval
        (self.root / "topics").mkdir(parents=True, exist_ok=True)
        (self.root / "groups").mkdir(parents=True, exist_ok=True)
        self._partitions: dict[str, int] = {}

    # -- topics -------------------------------------------------------------------------
    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            tdir = self.root / "topics" / spec.name
            meta = tdir / "meta.json"
            with _flocked(self.root / "topics" / ".lock"):
                if meta.exists():
                    have = self.partitions(spec.name)
                    if have != spec.partitions:
                        raise LogError(
                            f"topic {spec.name} exists with {have} partitions, "
                            f"not {spec.partitions}"
                        )
                    continue
                for p in range(spec.partitions):
                    (tdir / str(p)).mkdir(parents=True, exist_ok=True)
                body = json.dumps({"partitions": spec.partitions}).encode()
                _atomic_write(meta, body, sync=self.fsync == "flush")

    def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            try:
                meta = json.loads((self.root / "topics" / topic / "meta.json").read_bytes())
            except FileNotFoundError:
                raise LogError(f"topic {topic!r} does not exist") from None
            n = self._partitions[topic] = int(meta["partitions"])
        return n

    def check_partition(self, topic: str, partition: int) -> None:
        n = self.partitions(topic)
        if not 0 <= partition < n:
            raise LogError(f"topic {topic!r} has partitions 0..{n - 1}, not {partition}")

    # -- clients ------------------------------------------------------------------------
    def producer(self) -> EmbeddedProducer:
        return EmbeddedProducer(self)

    def consumer(self, group: str | None = None) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, group, rebalance_interval=self.rebalance_interval)

    # -- offsets ------------------------------------------------------------------------
    def end_offsets(self, tps: Sequence[TP]) -> dict[TP, int]:
        out = {}
        for tp in tps:
            self.check_partition(*tp)
            out[tp] = _Partition(self.root, *tp).tail()[2]
        return out

    def group_dir(self, group: str) -> Path:
        if not group or "/" in group or group.startswith("."):
            raise LogError(f"invalid consumer group name {group!r}")
        path = self.root / "groups" / group
        path.mkdir(parents=True, exist_ok=True)
        return path

    def committed(self, group: str, tps: Sequence[TP]) -> dict[TP, int | None]:
        out: dict[TP, int | None] = {}
        cache: dict[str, dict[str, int]] = {}
        for topic, p in tps:
            if topic not in cache:
                cache[topic] = self._read_offsets(group, topic)
            out[(topic, p)] = cache[topic].get(str(p))
        return out

    def _read_offsets(self, group: str, topic: str) -> dict[str, int]:
        try:
            data = json.loads((self.group_dir(group) / f"{topic}.offsets").read_bytes())
        except FileNotFoundError:
            return {}
        return {str(k): int(v) for k, v in data.items()}

    def write_offsets(self, group: str, offsets: Mapping[TP, int]) -> None:
        by_topic: dict[str, dict[int, int]] = {}
        for (topic, p), off in offsets.items():
            by_topic.setdefault(topic, {})[p] = off
        gdir = self.group_dir(group)
        for topic, parts in by_topic.items():
            with _flocked(gdir / f".{topic}.lock"):
                current = self._read_offsets(group, topic)
                current.update({str(p): off for p, off in parts.items()})
                body = json.dumps(current, sort_keys=True).encode()
                _atomic_write(gdir / f"{topic}.offsets", body, sync=self.fsync == "flush")

    def close(self) -> None:
        """Nothing to release: clients own their files."""
