"""Opening an input file: the checks every reader makes before it reads a byte.

Every file the platform reads (CSV, Parquet, CRIF, book files, scenario, history and FX
files, TOML and JSON configuration) goes through :func:`open_input` or :func:`read_input`,
so each one refuses the same things with the same words:

- a path that does not exist, is a directory, or is not a regular file (``/dev/zero``, a
  FIFO, a socket): reading those either fails with a stack trace or never ends;
- a file larger than its limit (:data:`MAX_INPUT_BYTES` unless the caller names a smaller
  one), checked before reading and again while reading, since a file can grow underneath us;
- text that is not UTF-8 (a leading byte-order mark is accepted and dropped), named by the
  line and byte where decoding failed;
- a header that names a column twice, or names an empty column; more than
  :data:`MAX_COLUMNS` columns for the readers that hold rows as mappings;
- more than :data:`MAX_INPUT_ROWS` rows (the row readers count);
- a Parquet file that does not open, or whose columns are nested or binary (lists, maps,
  structs, bytes): a row of a book is flat text and numbers.

JSON and TOML configuration is read by :func:`read_json` and :func:`read_toml` (limit
:data:`MAX_CONFIG_BYTES`), which name the line of a syntax error and refuse nesting deep
enough to exhaust the parser's stack.

Standard input (``-``) is read through :func:`read_stream_text` with the same size limit.

Errors are :class:`~marginflow.core.errors.ValidationError` whose ``field`` is ``file`` (or
the column) and whose reason names the file, so the CLI prints one line and exits 2.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from marginflow.core.errors import (
    MSG_FILE_COLUMN_TYPE,
    MSG_FILE_DIRECTORY,
    MSG_FILE_DUPLICATE_COLUMN,
    MSG_FILE_EMPTY_COLUMN,
    MSG_FILE_MISSING,
    MSG_FILE_NOT_PARQUET,
    MSG_FILE_NOT_REGULAR,
    MSG_FILE_NOT_UTF8,
    MSG_FILE_TOO_LARGE,
    MSG_FILE_TOO_MANY_COLUMNS,
    MSG_FILE_TOO_MANY_ROWS,
    MSG_FILE_UNREADABLE,
    ValidationError,
)

if TYPE_CHECKING:
    import pyarrow as pa

#: The largest input file read, in bytes (4 GiB). The large benchmark book's positions
#: file (1M rows) is about 40 MB; a CRIF of a large bank's netting sets is below 1 GB.
MAX_INPUT_BYTES = 4 << 30
#: The largest small configuration file (TOML, JSON settings, scenario and FX files): 64 MiB.
MAX_CONFIG_BYTES = 64 << 20
#: The most data rows of one input table (the large benchmark book has 1M positions; a row
#: costs the reader about a kilobyte of memory, so this caps a table near 20 GB).
MAX_INPUT_ROWS = 20_000_000
#: The most columns of a table read row by row (book, option, scenario, trades files).
MAX_COLUMNS = 20_000

_READ_CHUNK = 1 << 20


def _refuse(path: Path, reason: str) -> ValidationError:
    return ValidationError("file", f"{path}: {reason}")


def check_input(path: Path, *, max_bytes: int = MAX_INPUT_BYTES) -> int:
    """Refuse a path that is not a readable regular file of at most ``max_bytes``.

    Returns the file's size in bytes. Follows symbolic links (a link to a regular file is
    fine; a link to ``/dev/zero`` is not).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _refuse(path, MSG_FILE_MISSING) from None
    except OSError as exc:
        raise _refuse(path, MSG_FILE_UNREADABLE.format(reason=_strerror(exc))) from None
    if stat.S_ISDIR(st.st_mode):
        raise _refuse(path, MSG_FILE_DIRECTORY)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, MSG_FILE_NOT_REGULAR)
    if st.st_size > max_bytes:
        raise _refuse(path, MSG_FILE_TOO_LARGE.format(size=st.st_size, limit=max_bytes))
    if not os.access(path, os.R_OK):
        raise _refuse(path, MSG_FILE_UNREADABLE.format(reason=os.strerror(errno.EACCES)))
    return st.st_size


def read_input(path: Path, *, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a checked input file, never more than ``max_bytes`` of them."""
    check_input(path, max_bytes=max_bytes)
    chunks: list[bytes] = []
    total = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                total += len(chunk)
                if total > max_bytes:  # grew since the check
                    raise _refuse(path, MSG_FILE_TOO_LARGE.format(size=total, limit=max_bytes))
                chunks.append(chunk)
    except OSError as exc:
        raise _refuse(path, MSG_FILE_UNREADABLE.format(reason=_strerror(exc))) from None
    return b"".join(chunks)


def read_input_text(path: Path, *, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """A checked input file decoded as UTF-8 (a leading byte-order mark dropped)."""
    return decode_utf8(read_input(path, max_bytes=max_bytes), source=str(path))


def read_stream_text(stream: BinaryIO, *, source: str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """A stream (standard input) read to its end as UTF-8, never more than ``max_bytes``."""
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(_READ_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            reason = MSG_FILE_TOO_LARGE.format(size=total, limit=max_bytes)
            raise ValidationError("file", f"{source}: more than {max_bytes:,} bytes: {reason}")
        chunks.append(chunk)
    return decode_utf8(b"".join(chunks), source=source)


def read_json(path: Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """A checked JSON configuration file, or one line naming the line that does not read."""
    text = read_input_text(path, max_bytes=max_bytes)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("file", f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep; an int over 4300 digits
        raise ValidationError("file", f"{path}: not JSON: {_first_line(str(exc))}") from None


def read_toml(path: Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """A checked TOML configuration file, or one line naming the line that does not read."""
    return parse_toml(read_input_text(path, max_bytes=max_bytes), source=str(path))


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """TOML text already read through the checks (a reader that also wants the text, to
    name the line of a value it refuses), or one line naming the line that does not read."""
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        raise ValidationError("file", f"{source}: not TOML: {_first_line(str(exc))}") from None


def decode_utf8(data: bytes, *, source: str) -> str:
    """``data`` as text, or a one-line error naming the line and byte that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1]
        reason = MSG_FILE_NOT_UTF8.format(line=line, byte=exc.start, value=bad)
        raise ValidationError("file", f"{source}: {reason}") from None
    return text.removeprefix("\ufeff")


def check_header(header: Sequence[str], *, source: str, line: int = 1) -> None:
    """Refuse a header with an empty column name or a name given twice.

    A column named twice would be read from one copy with the other silently ignored, and
    which copy wins differs between readers; so neither wins. ``line`` is the header's line
    (a reader that skips blank lines before it says which).
    """
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if not name.strip():
            raise ValidationError("header", f"{source}:{line}: {MSG_FILE_EMPTY_COLUMN.format(n=i)}")
        if name in seen:
            # a name is user text: quoted when it holds a newline, ESC or the like
            label = name if name.isprintable() else repr(name)
            raise ValidationError(label, f"{source}:{line}: {MSG_FILE_DUPLICATE_COLUMN}")
        seen.add(name)


def check_column_count(columns: int, *, source: str) -> None:
    """Refuse a table of more than :data:`MAX_COLUMNS` columns, for a reader that holds each
    row as a mapping (a blank cell costs a byte on disk and ~100 in memory). Readers that
    keep columns (CRIF, history) take wide files."""
    if columns > MAX_COLUMNS:
        reason = MSG_FILE_TOO_MANY_COLUMNS.format(n=columns, limit=MAX_COLUMNS)
        raise ValidationError("header", f"{source}:1: {reason}")


def check_row_count(rows: int, *, source: str) -> None:
    """Refuse a table of more than :data:`MAX_INPUT_ROWS` data rows."""
    if rows > MAX_INPUT_ROWS:
        raise ValidationError(
            "file", f"{source}: {MSG_FILE_TOO_MANY_ROWS.format(limit=MAX_INPUT_ROWS)}"
        )


def read_parquet(path: Path, *, max_bytes: int = MAX_INPUT_BYTES) -> pa.Table:
    """A checked Parquet file as a table of flat columns with distinct, non-empty names.

    The schema is checked before the data is decoded: a name given twice makes pyarrow's
    own errors a page long, and a nested column has no cell text a row reader could parse.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = read_input(path, max_bytes=max_bytes)
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        schema = pf.schema_arrow
        check_header(schema.names, source=str(path))
        for f in schema:
            if not _flat(f.type):
                reason = MSG_FILE_COLUMN_TYPE.format(name=f.name, type=f.type)
                raise ValidationError(f.name, f"{path}:1: {reason}")
        check_row_count(pf.metadata.num_rows, source=str(path))
        return pf.read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise
        reason = MSG_FILE_NOT_PARQUET.format(reason=_first_line(str(exc)))
        raise _refuse(path, reason) from None


def _flat(t: pa.DataType) -> bool:
    import pyarrow.types as pt

    if pt.is_dictionary(t):
        return _flat(t.value_type)
    return bool(
        pt.is_string(t)
        or pt.is_large_string(t)
        or pt.is_integer(t)
        or pt.is_floating(t)
        or pt.is_boolean(t)
        or pt.is_date(t)
        or pt.is_timestamp(t)
        or pt.is_null(t)
        or pt.is_decimal(t)
    )


def _first_line(text: str) -> str:
    """pyarrow's messages run over several lines (a schema dump); the first says it."""
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def _strerror(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
