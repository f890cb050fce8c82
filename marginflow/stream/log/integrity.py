"""Checking and repairing an embedded log's files, on an explicit command only
(``marginflow log verify`` and ``marginflow log repair``).

:func:`verify` reads every file of a log (every segment batch by batch, every index entry,
the durable marks, ``meta.json`` and ``gaps.json`` of each topic and partition, every
group's offsets file) and any snapshot folders given, and returns one :class:`Finding` per
file. Nothing is changed.

:func:`repair` truncates each damaged partition to its last good batch. It never runs by
itself: readers and writers refuse damage (:class:`~marginflow.stream.log.base.
LogCorruptError`) until an operator runs it. What it drops is kept, byte for byte, under
``<log>/quarantine/<time>/``, and reported (file, offsets, bytes). The next append then
starts at the partition's old next offset, leaving the dropped offsets as a gap
(``gaps.json``) that readers step over, so no offset a group may have committed is handed
out again. A damaged index (a hint) is rebuilt, a damaged mark slot rewritten, a damaged
``meta.json`` rewritten from the partition folders, and a damaged offsets file moved to the
quarantine (that group then starts from its snapshots or the start: delivery is at least
once and results are upserted). Damaged snapshots are reported, not repaired: delete the
file (the worker rebuilds its state from the log) or start afresh.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from marginflow.core.errors import DamagedFileError
from marginflow.stream.durable import atomic_write, checked_json, fsync_path, load_checked_json
from marginflow.stream.log.base import LogCorruptError, LogError
from marginflow.stream.log.embedded import (
    FORMAT,
    GAPS_FILE,
    HEADER,
    SEGMENT_MAGIC,
    Mark,
    Partition,
    batch_at,
    check_header,
    mark_slots,
    parse_mark,
    why_not_batch,
    write_mark,
)
from marginflow.stream.snapshots import decode_snapshot

Status = Literal["ok", "damaged", "torn"]
_IDX = struct.Struct("<qq")


@dataclass
class Finding:
    """What :func:`verify` found in one file. ``status``: ``ok``; ``torn`` (bytes after the
    durable mark that are no batch: never acknowledged, truncated by the next writer; not
    damage); ``damaged`` (``position`` and ``offset`` say where)."""

    path: str
    kind: str
    status: Status = "ok"
    position: int | None = None
    offset: int | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _SegmentScan:
    """The valid batches of one segment: (offset, position) of each, and where they end."""

    base: int
    batches: list[tuple[int, int]] = field(default_factory=list)
    end: int = HEADER
    next: int = 0
    size: int = 0
    problem: str | None = None  # why the scan stopped before the end of the file


def _scan_segment(part: Partition, base: int, offset: int) -> _SegmentScan:
    path = part.segment(base)
    out = _SegmentScan(base, next=offset)
    fd = os.open(path, os.O_RDONLY)
    try:
        out.size = os.fstat(fd).st_size
        try:
            check_header(fd, path)
        except LogCorruptError as exc:
            out.end, out.problem = 0, exc.reason
            return out
        pos = HEADER
        while (batch := batch_at(fd, pos)) is not None:
            if batch.base != offset:
                out.problem = f"a batch holding offset {batch.base}, expected {offset}"
                break
            out.batches.append((offset, pos))
            pos += batch.size
            offset += batch.count
        out.end, out.next = pos, offset
        if out.problem is None and pos < out.size:
            out.problem = why_not_batch(fd, pos)
    finally:
        os.close(fd)
    return out


def _partitions(root: Path) -> list[Partition]:
    out = []
    for tdir in sorted(p for p in (root / "topics").iterdir() if p.is_dir()):
        for pdir in sorted(
            (p for p in tdir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        ):
            out.append(Partition(root, tdir.name, int(pdir.name)))
    return out


def _best_effort_mark(raw: bytes) -> Mark | None:
    """The newest valid slot of a damaged mark (repair must not hand out what it covered)."""
    valid = [m for m in mark_slots(raw) if m is not None]
    return max(valid, key=lambda m: m.seq) if valid else None


def _mark_findings(part: Partition) -> tuple[list[Finding], Mark | None]:
    path = part.mark_path
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], None
    finding = Finding(str(path), "durable mark")
    try:
        mark = parse_mark(path, raw)
    except LogCorruptError as exc:
        finding.status, finding.position, finding.detail = "damaged", exc.position, exc.reason
        return [finding], _best_effort_mark(raw)
    if mark is not None:
        finding.offset = mark.next
        finding.detail = f"offsets below {mark.next} acknowledged"
    return [finding], mark


def _index_finding(part: Partition, seg: _SegmentScan) -> Finding | None:
    path = part.index_path(seg.base)
    if not path.exists():
        return None
    finding = Finding(str(path), "index")
    size = path.stat().st_size
    valid = set(seg.batches)
    for k, (off, pos) in enumerate(part.index(seg.base)):
        if (off, pos) in valid:
            continue
        if pos >= seg.end and seg.problem is not None:
            continue  # past damage or a torn tail: nothing to check it against
        finding.status, finding.position, finding.offset = "damaged", k * _IDX.size, off
        finding.detail = (
            f"entry {k} points at no batch of offset {off} (a hint: repair rebuilds it)"
        )
        return finding
    if size % _IDX.size:
        finding.status, finding.position = "torn", size - size % _IDX.size
        finding.detail = "a torn last entry"
    return finding


def verify_partition(part: Partition) -> list[Finding]:
    """One finding per file of ``part``; see :func:`verify`."""
    findings, mark = _mark_findings(part)
    try:
        gaps = part.gaps()
    except LogCorruptError as exc:
        findings.append(Finding(exc.path, "gaps", "damaged", exc.position, None, exc.reason))
        gaps = {}
    bases = part.bases()
    offset = bases[0] if bases else 0
    after_damage = False  # the segments after a damaged one are checked on their own
    for i, base in enumerate(bases):
        path = part.segment(base)
        finding = Finding(str(path), "segment")
        findings.append(finding)
        if base != offset and gaps.get(offset) != base and not after_damage:
            finding.status, finding.position, finding.offset = "damaged", 0, offset
            finding.detail = f"starts at offset {base}, where offset {offset} should be"
            offset = base
        seg = _scan_segment(part, base, base)
        offset = seg.next
        last = i == len(bases) - 1
        durable = mark is not None and (
            base < mark.base or (base == mark.base and seg.end < mark.end)
        )
        if seg.problem is not None and finding.status == "ok":
            torn = last and not durable and seg.end >= HEADER
            if last and seg.size == 0 and not durable:
                torn, seg.problem = True, "an empty segment, never written"
            finding.status = "torn" if torn else "damaged"
            finding.position, finding.offset = seg.end, seg.next
            finding.detail = seg.problem + (
                f"; {seg.size - seg.end} bytes after the durable mark, never acknowledged"
                if torn
                else ""
            )
        elif finding.status == "ok":
            finding.detail = f"offsets {base}..{seg.next - 1}, {len(seg.batches)} batches"
        after_damage = finding.status == "damaged"
        index = _index_finding(part, seg)
        if index is not None:
            findings.append(index)
    if mark is not None and offset < mark.next and all(f.status != "damaged" for f in findings):
        path = part.segment(bases[-1]) if bases else part.segment(mark.base)
        findings.append(
            Finding(
                str(path), "segment", "damaged", None, offset,
                f"the data ends at offset {offset}, before the durable mark ({mark.next})",
            )
        )  # fmt: skip
    return findings


def _json_finding(path: Path, kind: str) -> Finding:
    try:
        load_checked_json(path, path.read_bytes())
    except DamagedFileError as exc:
        return Finding(str(path), kind, "damaged", exc.position, None, exc.reason)
    return Finding(str(path), kind)


def verify(root: Path, state_dirs: list[Path] | None = None) -> list[Finding]:
    """Every file of the embedded log at ``root``, and every snapshot under ``state_dirs``."""
    if not (root / "topics").is_dir():
        raise LogError(f"{root}: not an embedded log (no topics/ folder)")
    findings: list[Finding] = []
    for tdir in sorted(p for p in (root / "topics").iterdir() if p.is_dir()):
        findings.append(_json_finding(tdir / "meta.json", "topic meta"))
    for part in _partitions(root):
        findings.extend(verify_partition(part))
    for path in sorted((root / "groups").glob("*/*.offsets")):
        findings.append(_json_finding(path, "offsets"))
    for state in state_dirs or []:
        for path in sorted(state.rglob("*.snap")):
            try:
                decode_snapshot(path, path.read_bytes())
                findings.append(Finding(str(path), "snapshot"))
            except DamagedFileError as exc:
                findings.append(
                    Finding(str(path), "snapshot", "damaged", exc.position, None, exc.reason)
                )
    return findings


# -- repair -----------------------------------------------------------------------------------
@dataclass
class Dropped:
    """What :func:`repair` changed in one file: the offsets and bytes it dropped (kept in
    ``kept_in``), or what it rewrote."""

    path: str
    action: str
    first_offset: int | None = None
    last_offset: int | None = None
    bytes: int = 0
    kept_in: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _keep(src: Path, start: int, folder: Path, name: str) -> int:
    """Copy the bytes of ``src`` from ``start`` into ``folder/name``; their count."""
    with open(src, "rb") as f:
        f.seek(start)
        data = f.read()
    (folder / name).write_bytes(data)
    return len(data)


def _rebuild_index(part: Partition, seg: _SegmentScan) -> None:
    body = b"".join(_IDX.pack(off, pos) for off, pos in seg.batches)
    atomic_write(part.index_path(seg.base), [body], sync=True, error=LogError)


def _repair_partition(part: Partition, folder: Path) -> list[Dropped]:
    findings = verify_partition(part)
    damaged = [f for f in findings if f.status == "damaged"]
    if not damaged:
        return []
    out: list[Dropped] = []
    _, old_mark = _mark_findings(part)
    gaps = part.gaps() if not any(f.kind == "gaps" for f in damaged) else {}
    bases = part.bases()
    kept: list[_SegmentScan] = []
    offset = bases[0] if bases else 0
    drop_from = len(bases)
    for i, base in enumerate(bases):
        if base != offset and gaps.get(offset) != base:
            drop_from = i
            break
        seg = _scan_segment(part, base, base)
        if seg.end < HEADER:
            drop_from = i
            break
        kept.append(seg)
        offset = seg.next
        if seg.problem is not None:
            drop_from = i + 1
            if seg.end < seg.size:
                n = _keep(
                    part.segment(base),
                    seg.end,
                    folder,
                    f"{part.topic}-{part.partition}-{base}.log.from-{seg.end}",
                )
                os.truncate(part.segment(base), seg.end)
                out.append(
                    Dropped(str(part.segment(base)), "truncated", seg.next, None, n, str(folder))
                )
            break
    high = max([offset] + [old_mark.next if old_mark else 0] + [b for b in bases[drop_from:]])
    for base in bases[drop_from:]:
        for path in (part.segment(base), part.index_path(base)):
            if path.exists():
                n = path.stat().st_size
                shutil.move(path, folder / f"{part.topic}-{part.partition}-{path.name}")
                out.append(Dropped(str(path), "moved", base, None, n, str(folder)))
    for seg in kept:
        _rebuild_index(part, seg)
    keep = kept[-1] if kept else None
    # the dropped offsets: [offset, high) — never handed out again
    for d in out:
        if d.first_offset is not None:
            d.last_offset = high - 1 if high > offset else None
    if high > offset:
        gaps[offset] = high
        atomic_write(
            part.dir / GAPS_FILE,
            [checked_json({"format": FORMAT, "gaps": sorted(gaps.items())})],
            sync=True,
            error=LogError,
        )
        seg_path = part.segment(high)
        seg_path.write_bytes(SEGMENT_MAGIC)
        part.index_path(high).write_bytes(b"")
        new_mark = Mark(0, high, HEADER, high)
    elif keep is not None:
        new_mark = Mark(0, keep.base, keep.end, keep.next)
    else:
        part.segment(0).write_bytes(SEGMENT_MAGIC)
        new_mark = Mark(0, 0, HEADER, 0)
    seq = (old_mark.seq if old_mark else 0) + 2  # both slots, fresh
    if part.mark_path.exists():  # in place: a reader keeps the file open
        os.truncate(part.mark_path, 0)
    write_mark(part, Mark(seq - 1, new_mark.base, new_mark.end, new_mark.next), sync=True)
    write_mark(part, Mark(seq, new_mark.base, new_mark.end, new_mark.next), sync=True)
    fsync_path(part.dir)
    out.append(Dropped(str(part.mark_path), f"rewritten: next offset {new_mark.next}"))
    return out


def _repair_json(root: Path, folder: Path) -> list[Dropped]:
    out: list[Dropped] = []
    for tdir in sorted(p for p in (root / "topics").iterdir() if p.is_dir()):
        meta = tdir / "meta.json"
        if _json_finding(meta, "topic meta").status == "damaged":
            n = sum(1 for p in tdir.iterdir() if p.is_dir() and p.name.isdigit())
            if meta.exists():
                shutil.copy(meta, folder / f"{tdir.name}-meta.json")
            atomic_write(
                meta, [checked_json({"format": FORMAT, "partitions": n})], sync=True, error=LogError
            )
            out.append(
                Dropped(
                    str(meta), f"rewritten: {n} partitions (from its folders)", kept_in=str(folder)
                )
            )
    for path in sorted((root / "groups").glob("*/*.offsets")):
        if _json_finding(path, "offsets").status == "damaged":
            n = path.stat().st_size
            shutil.move(path, folder / f"{path.parent.name}-{path.name}")
            out.append(
                Dropped(
                    str(path),
                    "moved (the group starts from its snapshots or the start)",
                    bytes=n,
                    kept_in=str(folder),
                )
            )
    return out


def repair(root: Path) -> list[Dropped]:
    """Truncate every damaged partition of the log at ``root`` to its last good batch (see
    the module docstring). Run it with every process of the log stopped."""
    if not (root / "topics").is_dir():
        raise LogError(f"{root}: not an embedded log (no topics/ folder)")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
    folder = root / "quarantine" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    out = _repair_json(root, folder)
    for part in _partitions(root):
        out.extend(_repair_partition(part, folder))
    if not any(folder.iterdir()):
        folder.rmdir()
    return out
