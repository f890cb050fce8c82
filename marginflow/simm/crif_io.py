"""Read a CRIF from CSV or Parquet into a validated :class:`~marginflow.simm.crif.Crif`.

CSV is read with Arrow's multi-threaded reader, every column as text so that no bad value
can fail the whole file; each row is then validated by :func:`~marginflow.simm.crif.build_crif`.
Rows with the wrong number of fields become failures too. Failure line numbers are the lines a
user sees in an editor (header = line 1); for Parquet they are 1-based row numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from marginflow.core.errors import RowFailure, ValidationError
from marginflow.simm.calibration import Calibration
from marginflow.simm.crif import CrifLoad, build_crif, canonical_column

MSG_EMPTY_FILE = "the file is empty (no header line)"
MSG_UNREADABLE = "cannot be read: {error}"


def read_crif(path: str | Path, *, calibration: Calibration) -> CrifLoad:
    """Load and validate the CRIF at ``path`` (``.parquet``/``.pq`` as Parquet, anything
    else as CSV). Raises :class:`ValidationError` when the file itself cannot be used."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path, calibration)
    return _read_csv(path, calibration)


def crif_from_rows(
    rows: Iterable[Mapping[str, Any]], *, calibration: Calibration, source: str = "<rows>"
) -> CrifLoad:
    """Validate CRIF rows given as mappings (column name -> value), e.g. from an API call."""
    materialised = list(rows)
    names: list[str] = []
    for row in materialised:
        names.extend(k for k in row if k not in names)
    table = pa.table(
        {
            name: pa.array(
                [None if r.get(name) is None else str(r.get(name)) for r in materialised],
                type=pa.string(),
            )
            for name in names
        }
    )
    return _from_table(table, calibration, source, np.arange(1, len(materialised) + 1), None)


def _canonical_columns(table: pa.Table) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name in table.column_names:
        canonical = canonical_column(name)
        if canonical is not None and canonical not in columns:
            columns[canonical] = table.column(name)
    return columns


def _from_table(
    table: pa.Table,
    calibration: Calibration,
    source: str,
    lines: NDArray[np.int64],
    raw: Any,
) -> CrifLoad:
    return build_crif(
        _canonical_columns(table),
        calibration=calibration,
        source=source,
        lines=np.asarray(lines, dtype=np.int64),
        raw=raw,
    )


def _read_parquet(path: Path, calibration: Calibration) -> CrifLoad:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValidationError(str(path), MSG_UNREADABLE.format(error=exc)) from exc
    return _from_table(table, calibration, str(path), np.arange(1, table.num_rows + 1), None)


def _line_spans(data: bytes) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Start and end offsets of every line (without the line break)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(buf == 10).astype(np.int64)
    starts = np.concatenate([np.zeros(1, np.int64), breaks + 1])
    ends = np.concatenate([breaks, np.array([buf.size], np.int64)])
    if buf.size and buf[-1] == 10:
        starts, ends = starts[:-1], ends[:-1]
    has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13) if buf.size else ends > starts
    return starts, ends - has_cr.astype(np.int64)


def _read_csv(path: Path, calibration: Calibration) -> CrifLoad:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(str(path), MSG_UNREADABLE.format(error=exc)) from exc
    bad_utf8_lines: set[int] = set()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        # Keep going: the broken bytes become U+FFFD and their rows are rejected below.
        data = data.decode("utf-8", errors="replace").encode("utf-8")
        bad_utf8_lines = _lines_containing(data, "\ufffd".encode())
    text_head = data[:65536].decode("utf-8-sig", errors="replace")
    header_line = text_head.splitlines()[0] if text_head.strip() else ""
    if not header_line.strip():
        raise ValidationError(str(path), MSG_EMPTY_FILE)
    header = next(csv.reader(io.StringIO(header_line)))
    invalid: list[tuple[str, int]] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.text, row.actual_columns))
        return "skip"

    try:
        table = pv.read_csv(
            io.BytesIO(data),
            read_options=pv.ReadOptions(use_threads=True, block_size=1 << 24),
            parse_options=pv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException as exc:
        raise ValidationError(str(path), MSG_UNREADABLE.format(error=exc)) from exc

    starts, ends = _line_spans(data)
    nonempty = np.flatnonzero(ends > starts)
    body = nonempty[1:]  # line indices (0-based) of data records, header excluded
    n_rows = table.num_rows
    if not invalid and body.size == n_rows:
        row_line_idx, invalid_line_idx = body, np.zeros(0, np.int64)
    else:
        row_line_idx, invalid_line_idx = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if body.size == n_rows + len(invalid):
            row_line_idx, invalid_line_idx = _split_invalid(data, starts, ends, body, invalid)
        if row_line_idx.size != n_rows or invalid_line_idx.size != len(invalid):
            # Line breaks inside quoted values (or lone CRs): fall back to record numbers.
            row_line_idx = np.arange(1, n_rows + 1, dtype=np.int64)
            invalid_line_idx = np.full(len(invalid), -1, dtype=np.int64)
    lines = row_line_idx.astype(np.int64) + 1

    def raw(i: int) -> str:
        k = int(row_line_idx[i])
        if 0 <= k < starts.size and row_line_idx is not None:
            return data[starts[k] : ends[k]].decode("utf-8", errors="replace")
        return ""

    load = _from_table(table, calibration, str(path), lines, raw)
    if bad_utf8_lines:
        load = _reject_lines(
            load, bad_utf8_lines, raw_of_line=lambda k: data[starts[k - 1] : ends[k - 1]]
        )
    if not invalid:
        return load
    extra = [
        RowFailure(
            str(path),
            int(invalid_line_idx[j]) + 1 if invalid_line_idx[j] >= 0 else 0,
            "(row)",
            f"expected {len(header)} fields, got {count}",
            text,
        )
        for j, (text, count) in enumerate(invalid)
    ]
    failures = sorted((*load.failures, *extra), key=lambda f: f.line)
    return CrifLoad(crif=load.crif, failures=tuple(failures))


MSG_NOT_UTF8 = "contains bytes that are not UTF-8 text"


def _lines_containing(data: bytes, needle: bytes) -> set[int]:
    """1-based numbers of the lines that contain ``needle``."""
    out: set[int] = set()
    start = data.find(needle)
    while start >= 0:
        out.add(data.count(b"\n", 0, start) + 1)
        start = data.find(needle, start + 1)
    return out


def _reject_lines(load: CrifLoad, lines: set[int], raw_of_line: Any) -> CrifLoad:
    """Move the valid rows on ``lines`` to the failures (reason: not UTF-8)."""
    already = {f.line for f in load.failures}
    hit = np.isin(load.crif.line, sorted(lines))
    extra = [
        RowFailure(
            load.crif.source,
            int(k),
            "(row)",
            MSG_NOT_UTF8,
            bytes(raw_of_line(int(k))).decode("utf-8", errors="replace"),
        )
        for k in load.crif.line[hit].tolist()
        if k not in already
    ]
    failures = sorted((*load.failures, *extra), key=lambda f: f.line)
    return CrifLoad(crif=load.crif.take(~hit), failures=tuple(failures))


def _split_invalid(
    data: bytes,
    starts: NDArray[np.int64],
    ends: NDArray[np.int64],
    body: NDArray[np.int64],
    invalid: list[tuple[str, int]],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Assign body lines to table rows and to the skipped (malformed) rows, in file order."""
    pending = [text.encode("utf-8") for text, _ in invalid]
    rows: list[int] = []
    bad: list[int] = []
    j = 0
    for k in body.tolist():
        if j < len(pending) and data[starts[k] : ends[k]].strip() == pending[j].strip():
            bad.append(k)
            j += 1
        else:
            rows.append(k)
    if j < len(pending):  # a malformed row we could not locate (should not happen)
        bad.extend([-1] * (len(pending) - j))
    return np.asarray(rows, dtype=np.int64), np.asarray(bad, dtype=np.int64)
