"""The option file that ``marginflow price`` reads and writes.

Columns (header line required, any order, extra columns carried through):

==================  =====================================================================
``kind``            ``call`` or ``put``
``style``           ``european`` or ``american``
``spot``            underlying price (> 0); for options on futures, the futures price
``strike``          strike (> 0), same units as spot
``expiry_years``    time to expiry in years (>= 0; 0 prices the intrinsic value)
``rate``            risk-free rate, continuously compounded, annualised (may be negative)
``dividend_yield``  continuous dividend yield, annualised (set equal to ``rate`` for Black-76)
``vol``             volatility of log returns, annualised (>= 0)
==================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import numpy as np

from marginflow.core.batch import OptionBatch
from marginflow.core.errors import RowFailure
from marginflow.io.csv_rows import (
    Column,
    ParsedRows,
    nonnegative,
    number,
    one_of,
    positive,
    read_rows,
)

COLUMNS = (
    Column("kind", one_of("call", "put")),
    Column("style", one_of("european", "american")),
    Column("spot", positive),
    Column("strike", positive),
    Column("expiry_years", nonnegative),
    Column("rate", number),
    Column("dividend_yield", number),
    Column("vol", nonnegative),
)


@dataclass(frozen=True, slots=True)
class OptionFile:
    """The good rows of an option file as a batch, with the rows as read and the failures."""

    batch: OptionBatch
    rows: ParsedRows

    @property
    def failures(self) -> list[RowFailure]:
        return self.rows.failures


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
