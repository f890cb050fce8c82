"""The embedded log: durable, partitioned, append-only files on one machine.

Layout under the log's root directory::

    topics/<topic>/meta.json                  partition count (checked JSON)
    topics/<topic>/<p>/<base offset>.log      segment: a header, then batches, append-only
    topics/<topic>/<p>/<base offset>.idx      sparse index: (offset, position) per batch
    topics/<topic>/<p>/durable                the durable mark (see below)
    topics/<topic>/<p>/gaps.json              offsets dropped by ``log repair`` (checked JSON)
    topics/<topic>/<p>/.lock                  writers' lock (flock)
    groups/<group>/<topic>.offsets            committed offsets (checked JSON), replaced atomically
    groups/<group>/members/<id>               one file per live member, flock'ed by it
    groups/<group>/owners/<topic>-<p>         partition ownership, flock'ed by its owner

Format 2 (checksummed; a log of format 1 is refused with a message naming the file)
-------------------------------------------------------------------------------------
A segment starts with the 8 bytes ``MFLOG\\0\\2\\n``. Records follow in batches (one per
producer write), Kafka-style: ``u32 body_len | u32 crc32c(body) | body`` with
``body = i64 base_offset | i64 timestamp_ms | u32 count | records`` and each record
``i32 key_len (-1: no key) | u32 value_len | key | value``. One CRC32C per batch (as Kafka's
record batches carry) detects any change to a batch; the length field, outside it, cannot
change unnoticed either, since it selects the bytes the checksum must match. An index entry
is only a hint: it is used only when it points at a valid batch holding its offset.
``meta.json``, ``gaps.json`` and offsets files are checked JSON
(:mod:`marginflow.stream.durable`).

The durable mark
----------------
``durable`` holds two 36-byte slots ``u64 seq | i64 segment base | i64 end position |
i64 next offset | u32 crc32c``, written in place alternately (a torn write spoils one slot,
never both); the valid slot with the higher ``seq`` is the mark. It says how far the
partition is acknowledged: a producer's :meth:`EmbeddedProducer.flush` fsyncs the segments
(with ``fsync="flush"``), then writes the mark (and fdatasyncs it), then returns.

* Readers read only below the mark. Every batch there must be valid and hold the next
  offset, so damage anywhere below it, a missing segment or a truncated one raises
  :class:`LogCorruptError` naming the file, the byte and the offset; a reader never stops
  short in silence, and never sees a record a crash could take back.
* Writer recovery (a writer taking the partition's lock) scans from the mark: valid batches
  after it (appended by a live writer, not yet flushed) are kept; the first invalid byte
  after it starts a torn tail, never acknowledged, which is truncated. Data missing below
  the mark (a segment shorter than the mark says) is refused (:class:`LogCorruptError`).
  A writer does not re-read what is below the mark: damage there is for readers and
  ``marginflow log verify`` to find, and no writer ever truncates below the mark.
* Offsets are never reused. An offset exists for anyone only once it is below the mark: no
  reader saw, and no group could commit, an offset of the torn tail, so the next append
  takes the first offset after the last valid batch. ``log repair`` drops damaged batches
  below the mark only when asked, and then the next append starts at the mark's old next
  offset (a gap recorded in ``gaps.json``, which readers step over), so an offset some
  group committed is never handed out again.
* With ``fsync="never"`` the mark is written but not synced: a power cut may lose records
  that were acknowledged, and the log then refuses to read past the loss until
  ``log repair``. A process crash loses nothing flushed under either policy.

A write that fails (a full disk: ENOSPC; a read-only one: EROFS, EACCES; a file-size limit:
EFBIG) is undone (the segment and index truncated to where they were) and raised as a
one-line :class:`LogError` naming the file; bytes left by a crash mid-write are after the
mark and truncated by the next writer. Committed offsets are written to a temporary file,
fsynced (policy permitting) and renamed over the old file, so a commit is either wholly
there or not.

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
import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from marginflow.core.errors import MSG_BAD_CHECKSUM, MSG_OLD_FORMAT
from marginflow.stream.durable import (
    atomic_write,
    checked_json,
    crc32c,
    fsync_path,
    load_checked_json,
    write_failed,
)
from marginflow.stream.log.base import (
    TP,
    LogCorruptError,
    LogError,
    OnAssign,
    OnRevoke,
    Record,
)
from marginflow.stream.topics import TopicSpec

FsyncPolicy = Literal["flush", "never"]

FORMAT = 2
SEGMENT_MAGIC = b"MFLOG\x00\x02\n"  # the first 8 bytes of every segment of format 2
HEADER = len(SEGMENT_MAGIC)  # where a segment's first batch starts
MARK_FILE = "durable"
GAPS_FILE = "gaps.json"
_HEAD = struct.Struct("<II")  # body_len, crc32c(body)
_TAIL = struct.Struct("<qqI")  # base_offset, timestamp_ms, count (start of the body)
_REC = struct.Struct("<iI")  # key_len (-1: no key), value_len
_IDX = struct.Struct("<qq")  # base offset, file position of the batch
_MARK = struct.Struct("<QqqqI")  # seq, segment base, end position, next offset, crc32c
_MARK_BODY = _MARK.size - 4
_REC_OVERHEAD = _REC.size
_MAX_BATCH = 256 << 20
_new_record = tuple.__new__  # builds a Record without NamedTuple's Python-level __new__


def _segment_name(base: int) -> str:
    return f"{base:020d}"


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True, slots=True)
class Batch:
    """One valid record batch read from a segment: ``body`` is everything after the
    8-byte head (length and checksum)."""

    body: bytes
    base: int
    timestamp_ms: int
    count: int

    @property
    def size(self) -> int:
        return _HEAD.size + len(self.body)


def batch_at(fd: int, pos: int) -> Batch | None:
    """The complete, valid batch at ``pos`` of ``fd``, or None (end of data, or a torn or
    damaged batch: :func:`why_not_batch` says which)."""
    head = os.pread(fd, _HEAD.size, pos)
    if len(head) < _HEAD.size:
        return None
    body_len, crc = _HEAD.unpack(head)
    if body_len < _TAIL.size or body_len > _MAX_BATCH:
        return None
    body = os.pread(fd, body_len, pos + _HEAD.size)
    if len(body) < body_len or crc32c(body) != crc:
        return None
    base, ts, count = _TAIL.unpack_from(body)
    return Batch(body, base, ts, count)


def why_not_batch(fd: int, pos: int) -> str:
    """Why there is no valid batch at ``pos`` (the slow path of :func:`batch_at`)."""
    size = os.fstat(fd).st_size
    if pos >= size:
        return f"the file ends at byte {size}"
    head = os.pread(fd, _HEAD.size, pos)
    if len(head) < _HEAD.size:
        return f"a batch head cut short by the end of the file at byte {size}"
    body_len, _ = _HEAD.unpack(head)
    if body_len < _TAIL.size or body_len > _MAX_BATCH:
        return f"an impossible batch length {body_len}"
    if pos + _HEAD.size + body_len > size:
        return f"a batch of {body_len} bytes runs past the end of the file at byte {size}"
    return MSG_BAD_CHECKSUM


def _records(
    batch: Batch, done: int, pos: int, limit: int, topic: str, partition: int
) -> tuple[list[Record], int, int]:
    """Up to ``limit`` records of ``batch`` after the first ``done`` (which end at byte
    ``pos`` of the body; 0 means the batch start); returns them, the new count read and
    position."""
    data, out = batch.body, []
    if done == 0:
        pos = _TAIL.size
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


def _old_format(fd: int) -> bool:
    """Whether the segment ``fd`` starts with a batch of format 1 (zlib CRC32, no header)."""
    head = os.pread(fd, 8, 0)
    if len(head) < 8:
        return False
    body_len, crc = _HEAD.unpack(head)
    body = os.pread(fd, min(body_len, _MAX_BATCH), 8)
    return len(body) == body_len and bool(zlib.crc32(body) == crc)


def check_header(fd: int, path: Path) -> None:
    """Refuse a segment that does not start with the format 2 header."""
    head = os.pread(fd, HEADER, 0)
    if head == SEGMENT_MAGIC:
        return
    if _old_format(fd):
        raise LogCorruptError(path, 0, MSG_OLD_FORMAT.format(found=1, expected=FORMAT))
    raise LogCorruptError(path, 0, "not a marginflow log segment (bad header)")


@dataclass(frozen=True, slots=True)
class Mark:
    """The durable mark of a partition: everything before offset ``next`` (which ends at
    byte ``end`` of segment ``base``) is acknowledged as durable."""

    seq: int
    base: int
    end: int
    next: int


def mark_slots(raw: bytes) -> list[Mark | None]:
    """Both slots of a mark file's bytes: a Mark, or None where the slot is not valid."""
    out: list[Mark | None] = []
    for k in range(2):
        slot = raw[k * _MARK.size : (k + 1) * _MARK.size]
        if len(slot) == _MARK.size and crc32c(slot[:_MARK_BODY]) == _MARK.unpack(slot)[4]:
            seq, base, end, nxt, _ = _MARK.unpack(slot)
            out.append(Mark(seq, base, end, nxt))
        else:
            out.append(None)
    return out


def parse_mark(path: Path, raw: bytes) -> Mark | None:
    """The mark in the bytes of its file (None: nothing acknowledged yet)."""
    if not raw:
        return None  # created, never written (a crash before the first flush finished)
    slots = mark_slots(raw)
    for k, slot in enumerate(slots):
        # A slot never written is zeros. Any other invalid slot is damage, refused even
        # though the other slot may be valid: falling back to an older mark would hide
        # acknowledged records from readers and let a writer truncate them.
        if slot is None and raw[k * _MARK.size : (k + 1) * _MARK.size].strip(b"\0"):
            raise LogCorruptError(path, k * _MARK.size, f"slot {k} of the durable mark damaged")
    if len(raw) > 2 * _MARK.size:
        raise LogCorruptError(path, 2 * _MARK.size, "bytes after the two slots")
    valid = [m for m in slots if m is not None]
    if not valid:
        raise LogCorruptError(path, 0, "no valid slot in the durable mark")
    return max(valid, key=lambda m: m.seq)


class Partition:
    """The files of one topic partition (segments, their sparse indexes, the mark)."""

    def __init__(self, root: Path, topic: str, partition: int) -> None:
        self.root = root
        self.dir = root / "topics" / topic / str(partition)
        self.topic, self.partition = topic, partition
        self.lock_path = self.dir / ".lock"
        self.mark_path = self.dir / MARK_FILE

    def bases(self) -> list[int]:
        return sorted(int(p.stem) for p in self.dir.glob("*.log"))

    def segment(self, base: int) -> Path:
        return self.dir / f"{_segment_name(base)}.log"

    def index_path(self, base: int) -> Path:
        return self.dir / f"{_segment_name(base)}.idx"

    def index(self, base: int) -> list[tuple[int, int]]:
        try:
            data = self.index_path(base).read_bytes()
        except FileNotFoundError:
            return []
        usable = len(data) - len(data) % _IDX.size
        return [_IDX.unpack_from(data, i) for i in range(0, usable, _IDX.size)]

    def mark(self) -> Mark | None:
        try:
            raw = self.mark_path.read_bytes()
        except FileNotFoundError:
            return None
        return parse_mark(self.mark_path, raw)

    def gaps(self) -> dict[int, int]:
        """Offsets dropped by ``log repair``: {first dropped: first kept after}."""
        path = self.dir / GAPS_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        doc = load_checked_json(path, raw, LogCorruptError)
        return {int(a): int(b) for a, b in doc["gaps"]}

    def next_segment(self, offset: int, current: int) -> int | None:
        """The base of the segment that holds ``offset`` once segment ``current`` ended there:
        the segment named ``offset``, or the one after a recorded gap from ``offset``."""
        if offset != current and self.segment(offset).exists():
            return offset
        after = self.gaps().get(offset)
        if after is not None and self.segment(after).exists():
            return after
        return None

    def damage(self, path: Path, pos: int, offset: int, why: str) -> LogCorruptError:
        return LogCorruptError(
            path,
            pos,
            f"{why}, where offset {offset} of {self.topic}[{self.partition}] should be; "
            f"`marginflow log verify --log {self.root}` lists the damage",
        )

    def locate(self, offset: int) -> tuple[int, int, int]:
        """(segment base, position, offset at position) of a batch at or before ``offset``.
        An index entry is used only if it points at a valid batch holding its offset."""
        bases = self.bases() or [0]
        base = bases[max(bisect.bisect_right(bases, offset) - 1, 0)]
        entries = self.index(base)
        i = bisect.bisect_right(entries, (offset, 1 << 62)) - 1
        if i >= 0 and base <= entries[i][0] <= offset:
            at, pos = entries[i]
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(self.segment(base), os.O_RDONLY)
                try:
                    batch = batch_at(fd, pos) if pos >= HEADER else None
                finally:
                    os.close(fd)
                if batch is not None and batch.base == at:
                    return base, pos, at
        return base, HEADER, base


@dataclass(frozen=True, slots=True)
class Scan:
    """Where a forward scan of valid batches stopped: segment ``base``, byte ``end``, offset
    ``next``; ``size`` is that segment's size (``size > end``: bytes that are no batch)."""

    base: int
    end: int
    next: int
    size: int


def scan(part: Partition, base: int, pos: int, offset: int) -> Scan:
    """Follow valid batches from ``pos`` of segment ``base`` (a batch boundary holding
    ``offset``), across segment rolls and recorded gaps, to the first byte that is no
    valid batch holding the next offset."""
    while True:
        path = part.segment(base)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return Scan(base, 0, offset, 0)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return Scan(base, 0, offset, 0)  # created, never written
            check_header(fd, path)
            pos = max(pos, HEADER)
            while (batch := batch_at(fd, pos)) is not None and batch.base == offset:
                pos += batch.size
                offset += batch.count
        finally:
            os.close(fd)
        nxt = part.next_segment(offset, base) if pos == size else None
        if nxt is None or nxt == base:
            return Scan(base, pos, offset, size)
        base, pos, offset = nxt, HEADER, nxt


def _pwrite_all(fd: int, parts: list[bytes], pos: int) -> None:
    """Write every byte of ``parts`` at ``pos`` (a short write is continued: a disk that
    fills up part-way then raises ENOSPC)."""
    data = parts
    while data:
        n = os.pwritev(fd, data, pos)
        pos += n
        while data and n >= len(data[0]):
            n -= len(data[0])
            data = data[1:]
        if n:
            data = [data[0][n:], *data[1:]]


def trim_index(part: Partition, base: int, end: int) -> None:
    """Drop index entries at or after byte ``end`` of segment ``base`` (and a torn one)."""
    path = part.index_path(base)
    entries = part.index(base)
    keep = 0
    while keep < len(entries) and entries[keep][1] < end:
        keep += 1
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size != keep * _IDX.size:
            os.truncate(path, keep * _IDX.size)


def write_mark(part: Partition, mark: Mark, *, sync: bool) -> None:
    """Write ``mark`` into its slot (``seq`` alternates the two) and, if ``sync``, make it
    durable before returning."""
    body = struct.pack("<Qqqq", mark.seq, mark.base, mark.end, mark.next)
    slot = body + struct.pack("<I", crc32c(body))
    new = not part.mark_path.exists()
    try:
        fd = os.open(part.mark_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _pwrite_all(fd, [slot], (mark.seq % 2) * _MARK.size)
            if sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if new and sync:
            fsync_path(part.dir)
    except OSError as exc:
        raise write_failed(part.mark_path, exc, LogError) from exc


@dataclass
class _Writer:
    """Appends to one partition; the lock makes it safe against writers in other processes.
    ``base``, ``end`` and ``next_offset`` are where this writer last saw the valid data
    end (base -1: not yet looked)."""

    part: Partition
    segment_bytes: int
    base: int = -1
    end: int = 0
    next_offset: int = 0

    def append(self, frames: list[tuple[bytes | None, bytes]], timestamp_ms: int) -> None:
        try:
            self.part.dir.mkdir(parents=True, exist_ok=True)
            self._append(frames, timestamp_ms)
        except OSError as exc:  # the lock or a directory on a read-only or full disk
            raise write_failed(Path(exc.filename or self.part.dir), exc, LogError) from exc

    def _append(self, frames: list[tuple[bytes | None, bytes]], timestamp_ms: int) -> None:
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
            head = _HEAD.pack(len(body), crc32c(body))
            prefix = SEGMENT_MAGIC if self.end == 0 else b""
            pos = self.end + len(prefix)
            self._write([prefix, head, body], pos)
            self.end = pos + len(head) + len(body)
            self.next_offset += len(frames)

    def _write(self, data: list[bytes], pos: int) -> None:
        """Write a batch at ``pos`` and its index entry; undo both if either fails."""
        seg = self.part.segment(self.base)
        try:
            fd = os.open(seg, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                _pwrite_all(fd, data, self.end)
            finally:
                os.close(fd)
            # the index is a hint (checked on use, rebuilt by repair), so never fsynced
            with open(self.part.index_path(self.base), "ab") as f:
                f.write(_IDX.pack(self.next_offset, pos))
        except OSError as exc:
            with contextlib.suppress(OSError):  # on a read-only disk the recovery does it
                if self.end == 0:
                    seg.unlink(missing_ok=True)
                    self.part.index_path(self.base).unlink(missing_ok=True)
                else:
                    os.truncate(seg, self.end)
                    trim_index(self.part, self.base, self.end)
            raise write_failed(seg, exc, LogError) from exc

    def _recover(self) -> None:
        """Catch up with what other writers appended and truncate a torn tail (after the
        durable mark only: a bad batch below it is corruption, refused)."""
        bases = self.part.bases()
        last = bases[-1] if bases else 0
        seg = self.part.segment(last)
        size = seg.stat().st_size if seg.exists() else 0
        if self.base == last and size == self.end:
            return
        mark = self.part.mark()
        if self.base == last and size > self.end and self.next_offset >= (mark.next if mark else 0):
            found = scan(self.part, self.base, self.end, self.next_offset)
        elif mark is not None:
            found = self._from_mark(mark)
        else:
            first = bases[0] if bases else 0
            found = scan(self.part, first, HEADER, first)
        if mark is not None and found.next < mark.next:
            path = self.part.segment(found.base)
            fd = os.open(path, os.O_RDONLY)
            try:
                why = why_not_batch(fd, found.end)
            finally:
                os.close(fd)
            raise self.part.damage(path, found.end, found.next, why)
        if found.size > found.end and found.base != last:
            raise self.part.damage(  # segments after a bad batch: no tail, not ours to cut
                self.part.segment(found.base), found.end, found.next, "segments follow it"
            )
        if found.size > found.end:  # a torn tail, after the mark: never acknowledged
            os.truncate(self.part.segment(found.base), found.end)
            trim_index(self.part, found.base, found.end)
        self.base, self.end, self.next_offset = found.base, found.end, found.next

    def _from_mark(self, mark: Mark) -> Scan:
        path = self.part.segment(mark.base)
        size = path.stat().st_size if path.exists() else -1
        if size < mark.end:
            why = "missing" if size < 0 else f"the file ends at byte {size}"
            raise self.part.damage(path, mark.end, mark.next, f"{why}, before the durable mark")
        return scan(self.part, mark.base, mark.end, mark.next)

    def commit(self, *, sync: bool) -> None:
        """Acknowledge everything appended so far: fsync the segments (if ``sync``), then
        move the durable mark past it."""
        try:
            self._commit(sync=sync)
        except OSError as exc:
            raise write_failed(Path(exc.filename or self.part.dir), exc, LogError) from exc

    def _commit(self, *, sync: bool) -> None:
        with _flocked(self.part.lock_path):
            self._recover()
            mark = self.part.mark()
            if mark is not None and mark.next >= self.next_offset and mark.base == self.base:
                return  # another writer acknowledged it already
            first = mark.base if mark is not None else -1
            if sync:
                for base in self.part.bases():
                    if base >= first:
                        fsync_path(self.part.segment(base))
                if mark is None or mark.base != self.base:  # a new segment's name too
                    fsync_path(self.part.dir)
            seq = mark.seq + 1 if mark is not None else 1
            write_mark(self.part, Mark(seq, self.base, self.end, self.next_offset), sync=sync)


class EmbeddedProducer:
    """Buffers records per partition and appends each buffer with one write."""

    def __init__(self, log: EmbeddedLog, *, batch_bytes: int = 1 << 20) -> None:
        self._log = log
        self._batch_bytes = batch_bytes
        self._buffers: dict[TP, list[tuple[bytes | None, bytes]]] = {}
        self._sizes: dict[TP, int] = {}
        self._writers: dict[TP, _Writer] = {}
        self._unacked: set[TP] = set()

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
            part = Partition(self._log.root, *tp)
            writer = self._writers[tp] = _Writer(part, self._log.segment_bytes)
        writer.append(frames, time.time_ns() // 1_000_000)
        self._unacked.add(tp)

    def send(self) -> None:
        # A reader sees a record only once the durable mark is past it (see the module
        # docstring), which ``flush`` moves: so here, sending is flushing.
        self.flush()

    def flush(self, timeout: float = 30.0) -> None:
        for tp in list(self._buffers):
            self._write(tp)
        sync = self._log.fsync == "flush"
        for tp in sorted(self._unacked):
            self._writers[tp].commit(sync=sync)
        self._unacked.clear()

    def close(self) -> None:
        self.flush()


class _Reader:
    """Reads one partition forward from an offset, batch by batch, following segment rolls,
    below the durable mark only."""

    def __init__(self, part: Partition, offset: int) -> None:
        self.part = part
        self._fd: int | None = None
        self._mark_fd: int | None = None
        self._durable = 0  # the mark's next offset, as last read
        self._batch: Batch | None = None  # the batch being read, and how far
        self._done = 0
        self._bpos = 0
        self.seek(offset)

    def _refresh(self) -> int:
        """Re-read the durable mark (through a descriptor kept open: it is written in
        place, never replaced)."""
        if self._mark_fd is None:
            try:
                self._mark_fd = os.open(self.part.mark_path, os.O_RDONLY)
            except FileNotFoundError:
                return 0
        mark = parse_mark(self.part.mark_path, os.pread(self._mark_fd, 2 * _MARK.size, 0))
        self._durable = mark.next if mark is not None else 0
        return self._durable

    def seek(self, offset: int) -> None:
        self.close()
        end = self._refresh()
        for start, after in self.part.gaps().items():  # dropped by a repair: step over
            if start <= offset < after:
                offset = after
        if offset > end:
            raise LogError(
                f"{self.part.topic}[{self.part.partition}]: offset {offset} is beyond "
                f"the end ({end})"
            )
        base, pos, at = self.part.locate(offset)
        self.base, self.pos, self.next_offset = base, pos, at
        self._batch, self._done, self._bpos = None, 0, 0
        while self.next_offset < offset:  # skip forward to the offset inside its batch
            got = self.read(min(offset - self.next_offset, 1 << 20))
            if not got:
                raise self.part.damage(
                    self.part.segment(self.base), self.pos, self.next_offset, "no batch"
                )

    def _open(self) -> int:
        if self._fd is None:
            path = self.part.segment(self.base)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise self.part.damage(path, 0, self.next_offset, "missing") from None
            try:
                check_header(fd, path)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def read(self, limit: int) -> list[Record]:
        out: list[Record] = []
        topic, partition = self.part.topic, self.part.partition
        while len(out) < limit:
            batch = self._batch
            if batch is None:
                if self.next_offset >= self._durable and self.next_offset >= self._refresh():
                    break
                fd = self._open()
                batch = batch_at(fd, self.pos)
                if batch is None or batch.base != self.next_offset:
                    if batch is None and self._roll(fd):
                        continue
                    raise self._damage(fd, batch)
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

    def _damage(self, fd: int, batch: Batch | None) -> LogCorruptError:
        if batch is not None:
            why = f"a batch holding offset {batch.base}"
        else:
            why = why_not_batch(fd, self.pos)
        path = self.part.segment(self.base)
        return self.part.damage(path, self.pos, self.next_offset, why)

    def _roll(self, fd: int) -> bool:
        """At the clean end of a segment, move to the one holding the next offset."""
        if self.pos != os.fstat(fd).st_size:
            return False
        nxt = self.part.next_segment(self.next_offset, self.base)
        if nxt is None or nxt == self.base:
            return False
        self.close_segment()
        self.base, self.pos, self.next_offset = nxt, HEADER, nxt
        return True

    def close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.close_segment()
        if self._mark_fd is not None:
            os.close(self._mark_fd)
            self._mark_fd = None


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
        try:
            self._member = _Membership(self._log.group_dir(self._group))
        except OSError as exc:  # its files on a read-only or full disk
            raise write_failed(Path(exc.filename or self._log.root), exc, LogError) from exc
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
                part = Partition(self._log.root, *tp)
                self._readers[tp] = _Reader(part, start or 0)

    def assign(self, offsets: Mapping[TP, int]) -> None:
        for topic, p in offsets:
            self._log.check_partition(topic, p)
        for reader in self._readers.values():  # exactly these partitions from now on
            reader.close()
        self._readers = {
            (topic, p): _Reader(Partition(self._log.root, topic, p), off)
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
        for sub in ("topics", "groups"):
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LogError(f"{self.root / sub}: cannot create: {exc.strerror or exc}") from None
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
                body = checked_json({"format": FORMAT, "partitions": spec.partitions})
                atomic_write(meta, [body], sync=self.fsync == "flush", error=LogError)

    def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            path = self.root / "topics" / topic / "meta.json"
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                raise LogError(f"topic {topic!r} does not exist") from None
            except OSError as exc:
                raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from None
            meta = load_checked_json(path, raw, LogCorruptError)
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
            mark = Partition(self.root, *tp).mark()
            out[tp] = mark.next if mark is not None else 0
        return out

    def group_dir(self, group: str) -> Path:
        if not group or "/" in group or group.startswith("."):
            raise LogError(f"invalid consumer group name {group!r}")
        path = self.root / "groups" / group
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failed(path, exc, LogError) from exc
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
        path = self.group_dir(group) / f"{topic}.offsets"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LogError(f"{path}: cannot read: {exc.strerror or exc}") from None
        data = load_checked_json(path, raw, LogCorruptError)
        return {str(k): int(v) for k, v in data["offsets"].items()}

    def write_offsets(self, group: str, offsets: Mapping[TP, int]) -> None:
        by_topic: dict[str, dict[int, int]] = {}
        for (topic, p), off in offsets.items():
            by_topic.setdefault(topic, {})[p] = off
        gdir = self.group_dir(group)
        for topic, parts in by_topic.items():
            with _flocked(gdir / f".{topic}.lock"):
                current = self._read_offsets(group, topic)
                current.update({str(p): off for p, off in parts.items()})
                body = checked_json({"format": FORMAT, "offsets": current})
                atomic_write(
                    gdir / f"{topic}.offsets", [body], sync=self.fsync == "flush", error=LogError
                )

    def close(self) -> None:
        """Nothing to release: clients own their files."""
