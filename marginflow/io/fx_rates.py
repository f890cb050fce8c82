"""An FX rates file for SIMM: ``Currency,USDPerUnit`` lines read into
:class:`~marginflow.simm.fx.FxRates`, each bad line refused naming ``file:line``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from marginflow.core.errors import MSG_FX_ROW, MSG_FX_TWICE, ValidationError
from marginflow.io.source import MAX_CONFIG_BYTES, read_input_text
from marginflow.simm.currencies import ACCEPTED_CURRENCIES
from marginflow.simm.fx import MSG_BAD_RATE, MSG_NOT_CURRENCY, FxRates


def read_fx_rates(path: str | Path) -> FxRates:
    """Read ``Currency,USDPerUnit`` lines: an optional header line first, ``#`` comments and
    blank lines skipped. Every other line is one currency and its rate; a line of another
    shape, a currency given twice or a bad rate is refused naming ``file:line``."""
    path = Path(path)
    text = read_input_text(path, max_bytes=MAX_CONFIG_BYTES)
    rates: dict[str, float] = {}
    first_line: dict[str, int] = {}
    try:
        for n, (line, row) in enumerate(_rows(text)):
            if n == 0 and _is_header(row):
                continue
            where = f"{path}:{line}"
            if len(row) != 2:
                raise ValidationError("row", f"{where}: {MSG_FX_ROW.format(count=len(row))}")
            ccy, value = _rate(row, where)
            if ccy in first_line:
                reason = MSG_FX_TWICE.format(ccy=ccy, first=first_line[ccy])
                raise ValidationError("Currency", f"{where}: {reason}")
            first_line[ccy] = line
            rates[ccy] = value
    except csv.Error as exc:
        raise ValidationError("file", f"{path}: cannot be read as CSV: {exc}") from None
    return FxRates.of(rates)


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line, fields stripped) of each line that is neither blank nor a ``#`` comment;
    empty fields at the end of a line are dropped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    for row in reader:
        fields = [f.strip() for f in row]
        while fields and not fields[-1]:
            fields.pop()
        if fields and not fields[0].startswith("#"):
            yield line, fields
        line = reader.line_num + 1


def _is_header(row: list[str]) -> bool:
    """A first line whose first field is not a currency code (``Currency,USDPerUnit``)."""
    return row[0].upper() not in ACCEPTED_CURRENCIES


def _rate(row: list[str], where: str) -> tuple[str, float]:
    """The currency and rate of one line, checked by :meth:`FxRates.of`."""
    ccy = row[0].upper()
    if ccy not in ACCEPTED_CURRENCIES:
        raise ValidationError("Currency", f"{where}: {MSG_NOT_CURRENCY.format(value=row[0])}")
    try:
        value = float(row[1])
    except ValueError:
        reason = MSG_BAD_RATE.format(ccy=ccy, value=row[1])
        raise ValidationError("USDPerUnit", f"{where}: {reason}") from None
    try:
        FxRates.of({ccy: value})
    except ValidationError as exc:
        raise ValidationError("USDPerUnit", f"{where}: {exc.reason}") from None
    return ccy, value
