"""Column-checked CSV reading that keeps going past bad rows.

A loader declares its columns with :class:`Column` (name, parser, required or default); the
reader returns every good row's parsed values and a :class:`~marginflow.core.errors.RowFailure`
for every bad one (line, field, reason, and the raw line so nothing is lost). Unknown
columns are carried through untouched so a user's own columns survive a round trip.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from marginflow.core.errors import (
    MSG_FILE_NO_HEADER,
    MSG_MISSING,
    MSG_NEGATIVE,
    MSG_NOT_FINITE,
    MSG_NOT_NUMBER,
    MSG_NOT_ONE_OF,
    MSG_NOT_POSITIVE,
    RowFailure,
    ValidationError,
)
from marginflow.io.source import (
    MAX_INPUT_ROWS,
    check_column_count,
    check_header,
    check_row_count,
)

Parser = Callable[[str], Any]


class FieldError(ValueError):
    """Raised by a column parser; the reader adds the line and field name."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    parse: Parser
    required: bool = True
    default: str = ""


@dataclass(slots=True)
class ParsedRows:
    """Good rows as parsed columns, plus what was rejected and why."""

    header: list[str]
    values: dict[str, list[Any]]
    lines: list[int] = field(default_factory=list)
    raw: list[dict[str, str]] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)
    #: The cells of each rejected row that could be split into cells, by line: a loader
    #: that groups rows (a scenario file) needs to know which group a reject belonged to.
    rejected: dict[int, dict[str, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)


def read_rows(stream: TextIO, *, source: str, columns: Sequence[Column]) -> ParsedRows:
    """Read a CSV with a header line; every row is parsed or becomes a failure.

    Raises :class:`ValidationError` only for a file that cannot be read as a whole (no
    header, a header :func:`~marginflow.io.source.check_header` refuses, a required column
    absent, more than :data:`~marginflow.io.source.MAX_INPUT_ROWS` rows).
    """
    text = stream.read()
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValidationError("header", f"{source} {MSG_FILE_NO_HEADER}") from None
    except csv.Error as exc:
        raise ValidationError("header", f"{source} cannot be read as CSV: {exc}") from None
    check_column_count(len(header), source=source)
    check_header(header, source=source)
    missing = [c.name for c in columns if c.required and c.name not in header]
    if missing:
        raise ValidationError(missing[0], f"column {MSG_MISSING} from the header of {source}")
    out = ParsedRows(header=header, values={c.name: [] for c in columns})
    seen = 0
    for line_no, cells in numbered(reader, source, out.failures):
        if not any(c.strip() for c in cells):
            continue
        seen += 1
        if seen > MAX_INPUT_ROWS:
            check_row_count(seen, source=source)
        raw = dict(zip(header, cells, strict=False))
        raw_line = ",".join(cells)
        if len(cells) != len(header):
            reason = f"has {len(cells)} fields, the header has {len(header)}"
            out.failures.append(RowFailure(source, line_no, "row", reason, raw_line))
            out.rejected[line_no] = raw
            continue
        parsed = _parse_row(raw, columns, source, line_no, raw_line, out.failures)
        if parsed is None:
            out.rejected[line_no] = raw
            continue
        for name, value in parsed.items():
            out.values[name].append(value)
        out.lines.append(line_no)
        out.raw.append(raw)
    return out


def numbered(
    reader: Iterable[list[str]], source: str, failures: list[RowFailure]
) -> Iterable[tuple[int, list[str]]]:
    """The rows of a ``csv.reader`` with the line each ends on; a row the csv module cannot
    split (a field over its size limit) becomes a failure instead of an exception. A line
    ends at ``\n``, ``\r\n`` or a lone ``\r`` (a file saved as classic-Mac CSV), as the
    readers split the text (``newline=""``)."""
    it = iter(reader)
    line_no = 1
    while True:
        try:
            cells = next(it)
        except StopIteration:
            return
        except csv.Error as exc:
            line_no += 1
            failures.append(RowFailure(source, line_no, "row", f"not valid CSV: {exc}"))
            continue
        line_no = getattr(reader, "line_num", line_no + 1)
        yield line_no, cells


def _parse_row(
    raw: dict[str, str],
    columns: Sequence[Column],
    source: str,
    line_no: int,
    raw_line: str,
    failures: list[RowFailure],
) -> dict[str, Any] | None:
    parsed: dict[str, Any] = {}
    for col in columns:
        text = raw.get(col.name, "").strip()
        if not text:
            if col.required:
                failures.append(RowFailure(source, line_no, col.name, MSG_MISSING, raw_line))
                return None
            text = col.default
        try:
            parsed[col.name] = col.parse(text)
        except FieldError as exc:
            failures.append(RowFailure(source, line_no, col.name, str(exc), raw_line))
            return None
    return parsed


def number(text: str) -> float:
    """A finite float."""
    try:
        value = float(text)
    except ValueError:
        raise FieldError(MSG_NOT_NUMBER.format(value=text)) from None
    if not math.isfinite(value):
        raise FieldError(MSG_NOT_FINITE.format(value=text))
    return value


def positive(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise FieldError(MSG_NOT_POSITIVE.format(value=text))
    return value


def nonnegative(text: str) -> float:
    value = number(text)
    if value < 0:
        raise FieldError(MSG_NEGATIVE.format(value=text))
    return value


def one_of(*choices: str) -> Parser:
    """A case-insensitive choice among ``choices``; returns the lower-case choice."""
    allowed = {c.lower() for c in choices}

    def parse(text: str) -> str:
        value = text.lower()
        if value not in allowed:
            raise FieldError(MSG_NOT_ONE_OF.format(choices=", ".join(choices), value=text))
        return value

    return parse
