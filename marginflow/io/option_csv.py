"""The option file that ``marginflow price`` reads and writes.

Columns (header line required, any order, extra columns carried through):

==================  =====================================================================
``kind``            ``call`` or ``put``
``style``           ``european`` or ``american``
``spot``            underlying price; for options on futures, the futures price
``strike``          strike, same units as spot
``expiry_years``    time to expiry in years (0 prices the intrinsic value)
``rate``            risk-free rate, continuously compounded, annualised (may be negative)
``dividend_yield``  continuous dividend yield, annualised (set equal to ``rate`` for Black-76)
``vol``             volatility of log returns, annualised (0 prices deterministically)
==================  =====================================================================

Numbers must be within the bounds of :mod:`marginflow.io.bounds` (spot and strike in
[1e-6, 1e9], expiry in [0, 100] years, rate and yield in [-1, 1], vol in [0, 10]); a row
outside them is rejected naming the bound.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from marginflow.core.batch import OptionBatch
from marginflow.core.errors import RowFailure
from marginflow.io import bounds
from marginflow.io.csv_rows import Column, ParsedRows, one_of, read_rows
from marginflow.io.source import read_input_text

COLUMNS = (
    Column("kind", one_of("call", "put")),
    Column("style", one_of("european", "american")),
    Column("spot", bounds.price),
    Column("strike", bounds.price),
    Column("expiry_years", bounds.expiry_years),
    Column("rate", bounds.rate),
    Column("dividend_yield", bounds.rate),
    Column("vol", bounds.vol_or_zero),
)


@dataclass(frozen=True, slots=True)
class OptionFile:
    """The good rows of an option file as a batch, with the rows as read and the failures."""

    batch: OptionBatch
    rows: ParsedRows

    @property
    def failures(self) -> list[RowFailure]:
        return self.rows.failures


def read_option_file(path: Path) -> OptionFile:
    """The option file at ``path``, after the checks of :mod:`marginflow.io.source`."""
    return read_option_csv(io.StringIO(read_input_text(path), newline=""), source=str(path))


def read_option_csv(stream: TextIO, *, source: str) -> OptionFile:
    rows = read_rows(stream, source=source, columns=COLUMNS)
    v = rows.values
    batch = OptionBatch.of(
        is_call=np.array([k == "call" for k in v["kind"]], dtype=np.bool_),
        is_american=np.array([s == "american" for s in v["style"]], dtype=np.bool_),
        spot=np.array(v["spot"], dtype=np.float64),
        strike=np.array(v["strike"], dtype=np.float64),
        expiry_years=np.array(v["expiry_years"], dtype=np.float64),
        rate=np.array(v["rate"], dtype=np.float64),
        dividend_yield=np.array(v["dividend_yield"], dtype=np.float64),
        vol=np.array(v["vol"], dtype=np.float64),
    )
    return OptionFile(batch, rows)
