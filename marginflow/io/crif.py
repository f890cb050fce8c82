"""Read a CRIF from CSV or Parquet into a validated :class:`~marginflow.simm.crif.Crif`.

CSV is read with Arrow's multi-threaded reader, every column as text so that no bad value
can fail the whole file; each row is then validated by :func:`~marginflow.simm.crif.build_crif`.
Rows with the wrong number of fields become failures too. Failure line numbers are the lines a
user sees in an editor (header = line 1; a record with a quoted line break is named by its first
line), and the rejected input is kept as written. When records cannot be matched to lines (a
lone CR ends a record but not a line) rows are numbered as records instead and kept as the
values read; a malformed row is then named as line 0. For Parquet,
line numbers are 1-based row numbers.

Both formats first pass the shared input checks (:mod:`marginflow.io.source`: a missing path,
a directory, a device or pipe, a file over the size limit), and a header that names a column
twice, or two spellings of one CRIF column (``AmountUSD`` and ``amount_usd``), is refused.

No Python object is handed to Arrow's worker threads: the CSV bytes are copied into Arrow's
memory, and rows with the wrong number of fields (which need a Python callback) are found by
a second, single-threaded parse. A worker thread that releases a Python object must take the
GIL; doing so while the interpreter finalises ends the thread with ``pthread_exit``, whose
unwind through Arrow's ``noexcept`` frames aborts the process (exit 134, "terminate called
without an active exception") in a few percent of runs that exit right after a parse.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from marginflow.core.errors import (
    MSG_CRIF_COLUMN_TYPE,
    MSG_CRIF_EMPTY_FILE,
    MSG_CRIF_NOT_CSV,
    MSG_CRIF_NOT_PARQUET,
    MSG_CRIF_SAME_COLUMN,
    MSG_CRIF_TOO_MANY_ROWS,
    RowFailure,
    ValidationError,
)
from marginflow.io.source import check_header, check_input, read_input
from marginflow.simm.calibration import Calibration
from marginflow.simm.crif import CrifLoad, build_crif, canonical_column

I64 = NDArray[np.int64]

#: The most rows a CRIF file may hold (CSV lines or Parquet rows). A large bank's CRIF for
#: all its netting sets is a few million rows; each row costs ~100 bytes once validated.
MAX_ROWS = 50_000_000
# Arrow's errors may quote a whole row (a 10 MB line): messages keep this much of them.
_MAX_ERROR_CHARS = 300


def read_crif(path: str | Path, *, calibration: Calibration) -> CrifLoad:
    """Load and validate the CRIF at ``path`` (``.parquet``/``.pq`` as Parquet, anything
    else as CSV). Raises :class:`ValidationError` when the file itself cannot be used."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return _read_parquet(path, calibration)
        return _read_csv(path, calibration)
    except ValidationError as exc:  # the CRIF validator names a missing column, not the file
        if str(path) in exc.reason:
            raise
        raise ValidationError(exc.field, f"{path}:1: {exc.reason}") from None


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


def canonical_names(names: Sequence[str], *, source: str, line: int = 1) -> dict[str, str]:
    """Canonical CRIF column -> the header name that gives it. A name given twice, or two
    spellings of one column, is refused: one copy would be read and the other ignored."""
    check_header(names, source=source, line=line)
    found: dict[str, str] = {}
    for name in names:
        canonical = canonical_column(name)
        if canonical is None:
            continue
        if canonical in found:
            reason = MSG_CRIF_SAME_COLUMN.format(other=found[canonical], canonical=canonical)
            raise ValidationError(name, f"{source}:{line}: {reason}")
        found[canonical] = name
    return found


def _from_table(
    table: pa.Table,
    calibration: Calibration,
    source: str,
    lines: NDArray[np.int64],
    raw: Any,
    header_line: int = 1,
) -> CrifLoad:
    wanted = canonical_names(table.column_names, source=source, line=header_line)
    index = {name: i for i, name in enumerate(table.column_names)}
    return build_crif(
        {canonical: table.column(index[name]) for canonical, name in wanted.items()},
        calibration=calibration,
        source=source,
        lines=np.asarray(lines, dtype=np.int64),
        raw=raw,
    )


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + " ..."


def _read_parquet(path: Path, calibration: Calibration) -> CrifLoad:
    """Only the CRIF columns are read; each must hold text or numbers (a date, a boolean or
    a dictionary of text is read as its text)."""
    check_input(path)
    source = str(path)
    try:
        with pq.ParquetFile(path) as parquet:
            names = parquet.schema_arrow.names
            wanted = canonical_names(names, source=source)
            rows = parquet.metadata.num_rows
            if rows > MAX_ROWS:
                reason = MSG_CRIF_TOO_MANY_ROWS.format(rows=rows, limit=MAX_ROWS)
                raise ValidationError("file", f"{source}: {reason}")
            table = parquet.read(columns=list(wanted.values()))
    except (OSError, pa.ArrowException) as exc:
        reason = MSG_CRIF_NOT_PARQUET.format(error=_one_line(exc))
        raise ValidationError("file", f"{source}: {reason}") from None
    plain = pa.table(
        [_plain(table.column(i), name, source) for i, name in enumerate(table.column_names)],
        names=table.column_names,
    )
    return _from_table(plain, calibration, source, np.arange(1, plain.num_rows + 1), None)


def _plain(column: pa.ChunkedArray, name: str, source: str) -> pa.ChunkedArray:
    """A Parquet column as text or numbers, the two kinds :func:`build_crif` reads."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column
    if pa.types.is_integer(kind) or kind in (pa.float32(), pa.float64()):
        return column
    refused = ValidationError(name, f"{source}: {MSG_CRIF_COLUMN_TYPE.format(type=kind)}")
    if pa.types.is_nested(kind):
        raise refused
    try:
        if pa.types.is_timestamp(kind):  # an EndDate written as a timestamp
            column = column.cast(pa.date32())
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise refused from None


def _line_spans(data: bytes) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Start and end offsets of every line (without the line break: LF or CR LF)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(buf == 10).astype(np.int64)
    starts = np.concatenate([np.zeros(1, np.int64), breaks + 1])
    ends = np.concatenate([breaks, np.array([buf.size], np.int64)])
    if buf.size and buf[-1] == 10:
        starts, ends = starts[:-1], ends[:-1]
    has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13) if buf.size else ends > starts
    return starts, ends - has_cr.astype(np.int64)


def _read_csv(path: Path, calibration: Calibration) -> CrifLoad:
    data, utf8_ok = _read_utf8(path)
    starts, ends = _line_spans(data)
    if starts.size > MAX_ROWS:
        reason = MSG_CRIF_TOO_MANY_ROWS.format(rows=int(starts.size), limit=MAX_ROWS)
        raise ValidationError("file", f"{path}: {reason}")
    header, header_line = _header(data, starts, ends, path)
    canonical_names(header, source=str(path), line=header_line)  # before the parse
    table, invalid = _parse_csv(data, header, path)
    located = _locate_records(data, starts, ends, header, table.num_rows, invalid)

    def text(first: int, last: int) -> str:
        return data[starts[first] : ends[last]].decode("utf-8", errors="replace")

    if located is not None:
        row_first, row_last, bad_first, bad_last = located
        lines = row_first + 1

        def raw(i: int) -> str:
            return text(int(row_first[i]), int(row_last[i]))

        malformed = [
            (int(bad_first[j]) + 1, text(int(bad_first[j]), int(bad_last[j])), count)
            for j, (_, count) in enumerate(invalid)
        ]
    else:
        # Records could not be matched to lines (e.g. lone CRs): number them instead
        # (header = 1) and keep each row as the values read.
        lines = np.arange(2, table.num_rows + 2, dtype=np.int64)
        columns = table.columns

        def raw(i: int) -> str:
            return _csv_line([col[i].as_py() for col in columns])

        malformed = [(0, row_text, count) for row_text, count in invalid]
    load = _from_table(table, calibration, str(path), lines, raw, header_line)
    if not utf8_ok:
        bad_lines = lines[_rows_with_replacement_chars(table)]
        load = _reject_lines(load, bad_lines, lambda k: raw(int(np.searchsorted(lines, k))))
    extra = [
        RowFailure(str(path), line, "(row)", f"expected {len(header)} fields, got {count}", row)
        for line, row, count in malformed
    ]
    if not extra:
        return load
    failures = sorted((*load.failures, *extra), key=lambda f: f.line)
    return CrifLoad(crif=load.crif, failures=tuple(failures))


def _read_utf8(path: Path) -> tuple[bytes, bool]:
    """The file's bytes (after the shared input checks), and whether they were valid UTF-8.
    Invalid bytes become U+FFFD so that the file still parses; the rows holding them are
    rejected afterwards."""
    data = read_input(path)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace").encode("utf-8"), False
    return data, True


def _header(data: bytes, starts: I64, ends: I64, path: Path) -> tuple[list[str], int]:
    """The header's names and its line number: the first line that is not empty (Arrow
    skips empty lines too), up to a lone CR (where Arrow ends the record)."""
    filled = np.flatnonzero(ends > starts)
    if not filled.size:
        raise ValidationError("file", f"{path}: {MSG_CRIF_EMPTY_FILE}")
    first = int(filled[0])
    text = data[starts[first] : ends[first]].decode("utf-8", errors="replace")
    text = text.split("\r", 1)[0]
    if first == 0:
        text = text.removeprefix("\ufeff")
    try:
        header = next(csv.reader([text]), [])
    except csv.Error as exc:
        reason = MSG_CRIF_NOT_CSV.format(error=_one_line(exc))
        raise ValidationError("header", f"{path}:{first + 1}: {reason}") from None
    return header, first + 1


def _parse_csv(
    data: bytes, header: list[str], path: Path
) -> tuple[pa.Table, list[tuple[str, int]]]:
    """Every column as text; rows with the wrong number of fields are skipped and returned
    as (text, field count), in file order.

    Arrow's multi-threaded parse reads a copy of the bytes in Arrow's memory and is given no
    Python callback, so its worker threads never hold a Python object (see the module
    docstring). Only when it finds a malformed row is the file parsed again, on this thread,
    with the callback that collects those rows."""
    buffer = _arrow_buffer(data)
    convert = pv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        fast = pv.ReadOptions(use_threads=True, block_size=1 << 24)
        return pv.read_csv(pa.BufferReader(buffer), read_options=fast, convert_options=convert), []
    except pa.ArrowInvalid:
        pass  # a malformed row, or a file Arrow cannot read: the careful parse says which
    invalid: list[tuple[str, int]] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.text, row.actual_columns))
        return "skip"

    try:
        table = pv.read_csv(
            pa.BufferReader(buffer),
            read_options=pv.ReadOptions(use_threads=False, block_size=1 << 24),
            parse_options=pv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=convert,
        )
    except pa.ArrowException as exc:
        reason = MSG_CRIF_NOT_CSV.format(error=_one_line(exc))
        raise ValidationError("file", f"{path}: {reason}") from None
    return table, invalid


def _arrow_buffer(data: bytes) -> pa.Buffer:
    """``data`` copied into memory that Arrow owns (a buffer over the Python bytes would be
    released, under the GIL, by whichever worker thread drops it last)."""
    sink = pa.BufferOutputStream()
    sink.write(data)
    return sink.getvalue()


def _locate_records(
    data: bytes,
    starts: I64,
    ends: I64,
    header: list[str],
    n_rows: int,
    invalid: list[tuple[str, int]],
) -> tuple[I64, I64, I64, I64] | None:
    """First and last line (0-based) of every table row and every malformed row, or None
    when the records cannot be matched to the parse.

    One record per non-empty line is the common case (malformed rows are then found by
    their text). Line breaks inside quoted values need the lines read again with Python's
    csv module, where a record whose field count is not the header's is a malformed row,
    as it is for Arrow."""
    body = np.flatnonzero(ends > starts)[1:]  # header excluded
    none = np.zeros(0, np.int64)
    if not invalid and body.size == n_rows:
        return body, body, none, none
    if body.size == n_rows + len(invalid):
        rows, bad = _split_invalid(data, starts, ends, body, invalid)
        if rows.size == n_rows and bad.size == len(invalid):
            return rows, rows, bad, bad
    return _records_by_csv(data, starts, ends, len(header), n_rows, len(invalid))


def _split_invalid(
    data: bytes, starts: I64, ends: I64, body: I64, invalid: list[tuple[str, int]]
) -> tuple[I64, I64]:
    """Body lines of the table rows and of the malformed rows, matched by text in file
    order (one record per line). Fewer malformed lines than ``invalid`` when some could
    not be found."""
    pending = [text.encode("utf-8").strip() for text, _ in invalid]
    rows: list[int] = []
    bad: list[int] = []
    for k in body.tolist():
        if len(bad) < len(pending) and data[starts[k] : ends[k]].strip() == pending[len(bad)]:
            bad.append(k)
        else:
            rows.append(k)
    return np.asarray(rows, dtype=np.int64), np.asarray(bad, dtype=np.int64)


def _records_by_csv(
    data: bytes, starts: I64, ends: I64, n_fields: int, n_rows: int, n_invalid: int
) -> tuple[I64, I64, I64, I64] | None:
    """Record spans from Python's csv reader over the lines (LF-separated, as counted by
    :func:`_line_spans`); None when they do not match Arrow's parse."""
    lines = (
        data[a:b].decode("utf-8", errors="replace") + "\n"
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    )
    reader = csv.reader(lines)
    spans: list[tuple[int, int, bool]] = []
    first = 0
    try:
        for fields in reader:
            if fields:
                spans.append((first, reader.line_num - 1, len(fields) == n_fields))
            first = reader.line_num
    except csv.Error:
        return None
    good = [(a, b) for a, b, ok in spans[1:] if ok]
    bad = [(a, b) for a, b, ok in spans[1:] if not ok]
    if len(good) != n_rows or len(bad) != n_invalid:
        return None
    row = np.asarray(good, dtype=np.int64).reshape(-1, 2)
    mal = np.asarray(bad, dtype=np.int64).reshape(-1, 2)
    return row[:, 0], row[:, 1], mal[:, 0], mal[:, 1]


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


MSG_NOT_UTF8 = "contains bytes that are not UTF-8 text"


def _rows_with_replacement_chars(table: pa.Table) -> NDArray[np.bool_]:
    """Rows where any value holds U+FFFD (bytes that were not UTF-8)."""
    hit = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        found = pc.fill_null(pc.match_substring(column, "\ufffd"), False)
        hit |= np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
    return hit


def _reject_lines(load: CrifLoad, lines: I64, raw_at: Callable[[int], str]) -> CrifLoad:
    """Move the valid rows on ``lines`` to the failures (reason: not UTF-8)."""
    hit = np.isin(load.crif.line, lines)
    extra = [
        RowFailure(load.crif.source, k, "(row)", MSG_NOT_UTF8, raw_at(k))
        for k in load.crif.line[hit].tolist()
    ]
    failures = sorted((*load.failures, *extra), key=lambda f: f.line)
    return CrifLoad(crif=load.crif.take(~hit), failures=tuple(failures))
