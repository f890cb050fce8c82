"""A default-fund contributions file: ``member,contribution`` (currency, in
[0, :data:`~marginflow.core.limits.CONTRIBUTION_MAX`]), one row per clearing member, read whole.

It replaces the contributions :func:`marginflow.app.stress.run_stress` would compute
(pro-rata to the Cover-k setting scenario) with the ones the clearing house actually holds.
A contribution is money a member has posted, so the file is taken whole or refused: a bad
row, a member named twice, a member the book does not have, or a book member the file
leaves out is one :class:`~marginflow.core.errors.ValidationError` naming the file, the
line and the field (a member left out would otherwise count as a zero contribution, which
nobody wrote).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from marginflow.core.errors import ValidationError
from marginflow.core.limits import CONTRIBUTION_MAX
from marginflow.io.bounds import within
from marginflow.io.csv_rows import Column, FieldError, read_rows
from marginflow.io.source import MAX_CONFIG_BYTES, read_input_text


def _member(text: str) -> str:
    if not text.isprintable():
        raise FieldError(f"must be printable text on one line, got {text!r:.80}")
    return text


COLUMNS = (
    Column("member", _member),
    Column("contribution", within(0.0, CONTRIBUTION_MAX, "currency")),
)


def read_default_fund(path: Path, members: Sequence[str]) -> dict[str, float]:
    """Each member's contribution in ``path``, for the book's ``members`` (every one of
    them, none else). Raises :class:`ValidationError` ``field: file:line: reason``."""
    text = read_input_text(path, max_bytes=MAX_CONFIG_BYTES)
    rows = read_rows(io.StringIO(text), source=str(path), columns=COLUMNS)
    if rows.failures:
        f = rows.failures[0]
        raise ValidationError(f.field, f"{f.source}:{f.line}: {f.reason}")
    known = set(members)
    out: dict[str, float] = {}
    first: dict[str, int] = {}
    for member, value, line in zip(
        rows.values["member"], rows.values["contribution"], rows.lines, strict=True
    ):
        if member in first:
            reason = f"member {member!r:.80} is given twice (first on line {first[member]})"
            raise ValidationError("member", f"{path}:{line}: {reason}")
        if member not in known:
            raise ValidationError(
                "member", f"{path}:{line}: {member!r:.80} is not a member of the book"
            )
        first[member] = line
        out[member] = float(value)
    missing = [m for m in members if m not in out]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValidationError(
            "member", f"{path}: no contribution for member {missing[0]!r:.80}{more}"
        )
    return out
