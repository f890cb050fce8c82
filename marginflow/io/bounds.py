"""Plausibility bounds on the numbers read from input files, in one place.

A number outside its bound is a typo or an attack, never a market: a spot of 1e308 overflows
the first product it meets, and a margin computed from it is a stack trace or an infinity.
Each column parser below rejects the row naming the bound, so the rest of the file still
loads. The bounds are deliberately wide (they refuse what cannot be, not what is unusual):

=====================  ===================  ==============================================
what                   bound                why
=====================  ===================  ==============================================
spot, strike, close,   [1e-6, 1e9]          a price per unit of an underlying; 1e9 is above
option price                                any listed price, 1e-6 below any tick
quantity               [-1e9, 1e9]          contracts or shares of one position or trade;
                                            options in whole contracts (checked by the
                                            book reader, which knows the instrument)
multiplier             (0, 1e6]             units of underlying per contract
vol                    [0 or >0, 10]        annualised, 10 = 1000%; the lower end is the
                                            column's own (0 prices deterministically)
rate, dividend yield   [-1, 1]              continuous, annualised: +-100% a year
skew                   [-5, 5]              d vol / d ln(K/S), as the market events check
expiry                 [0, 100] years       the longest listed options run a few years
scenario shock         (-1, 10]             relative move: -1 is a fall to zero
=====================  ===================  ==============================================

The numbers are :mod:`marginflow.core.limits`' (the one place for them, with the reasons);
here are the row parsers that apply them to file cells, so a bad cell is a rejected row
(``FieldError``) rather than an exception. Shocks are bounds of files only.
"""

from __future__ import annotations

from marginflow.core.errors import MSG_NEGATIVE, MSG_NOT_POSITIVE, MSG_OUT_OF_BOUNDS
from marginflow.core.limits import (
    EXPIRY_YEARS_MAX,
    MULTIPLIER_MAX,
    PRICE_MAX,
    PRICE_MIN,
    QUANTITY_MAX,
    RATE_MAX,
    SKEW_MAX,
    VOL_MAX,
)
from marginflow.io.csv_rows import FieldError, Parser, number

__all__ = [
    "EXPIRY_YEARS_MAX",
    "MULTIPLIER_MAX",
    "PRICE_MAX",
    "PRICE_MIN",
    "QUANTITY_MAX",
    "RATE_MAX",
    "RATE_MIN",
    "SHOCK_MAX",
    "SKEW_MAX",
    "VOL_MAX",
    "expiry_years",
    "multiplier",
    "price",
    "quantity",
    "rate",
    "skew",
    "vol",
    "vol_or_zero",
    "within",
]

RATE_MIN = -RATE_MAX
SHOCK_MAX = 10.0


def within(low: float, high: float, what: str, *, low_open: bool = False) -> Parser:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        value = number(text)
        # a wrong sign is the usual slip; say that rather than quote the bound
        if value <= 0 and (low > 0 or (low == 0 and low_open)):
            raise FieldError(MSG_NOT_POSITIVE.format(value=text))
        if low == 0 and value < 0:
            raise FieldError(MSG_NEGATIVE.format(value=text))
        if not (low < value if low_open else low <= value) or value > high:
            raise FieldError(MSG_OUT_OF_BOUNDS.format(interval=interval, what=what, value=text))
        return value

    return parse


price = within(PRICE_MIN, PRICE_MAX, "a price")
multiplier = within(0.0, MULTIPLIER_MAX, "units per contract", low_open=True)
vol = within(0.0, VOL_MAX, "annualised vol", low_open=True)
vol_or_zero = within(0.0, VOL_MAX, "annualised vol")
rate = within(RATE_MIN, RATE_MAX, "a continuous annual rate")
skew = within(-SKEW_MAX, SKEW_MAX, "vol per unit of ln K/S")
expiry_years = within(0.0, EXPIRY_YEARS_MAX, "years")
quantity = within(-QUANTITY_MAX, QUANTITY_MAX, "contracts or shares")
