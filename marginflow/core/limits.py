"""Plausibility bounds of the numbers marginflow reads: one place, one validator per field.

Input parsers (book files, option CSVs, events) call these; each raises
:class:`~marginflow.core.errors.ValidationError` ``(field, reason)`` with a one-line reason.
The bounds keep every product the engine forms (quantity × multiplier × spot, summed over a
million positions and squared in variances) far below float64 overflow (1.8e308) and far
above its underflow, while admitting every real listed equity instrument:

========================  ===================  ==========================================
field                     accepted             why
========================  ===================  ==========================================
spot, strike, close       [1e-6, 1e9]          Berkshire A ~7e5, indices ~1e5; sub-cent
                                               penny stocks ~1e-4
quantity                  |q| <= 1e9           contracts or shares; the largest open
                                               interest in one series is ~1e7
option quantity           whole contracts      an exchange clears whole contracts
stock quantity            fractional allowed   brokers' fractional shares are real
multiplier                (0, 1e6]             listed multipliers are 1-1,000
vol                       [0, 10]              1,000%: beyond any quoted implied vol
rate, dividend yield      [-1, 1]              ±100% a year, continuously compounded
smile slope (skew)        [-5, 5]              vol per unit of ln(K/S); listed equity
                                               smiles slope by well under 1
expiry                    <= 100 years         listed LEAPS run ~3 years, OTC ~30
default-fund contribution [0, 1e15]            currency; the largest clearing house's
                                               whole fund is ~1e11 (~1e13 in yen)
========================  ===================  ==========================================

Worst product: 1e9 × 1e6 × 1e9 = 1e24 per position, 1e30 for a million positions.
"""

from __future__ import annotations

import math

from marginflow.core.errors import ValidationError

PRICE_MIN = 1e-6
PRICE_MAX = 1e9
QUANTITY_MAX = 1e9
MULTIPLIER_MAX = 1e6
VOL_MAX = 10.0
RATE_MAX = 1.0
SKEW_MAX = 5.0
EXPIRY_YEARS_MAX = 100.0
MONEYNESS_MAX = 1e8
CONTRIBUTION_MAX = 1e15
"""A member's default-fund contribution, in the book's currency: far above any fund held, and
far enough below float64 overflow that Cover-2 sums and the reverse stress's comparisons of
losses with margin plus contribution stay finite (1e308 per member made them infinite)."""
"""The American pricer resolves spot/strike in [1/MONEYNESS_MAX, MONEYNESS_MAX]; beyond, the
option is worth its intrinsic value or nothing to double precision, and the API refuses it
rather than guess (within the price bounds above the ratio can reach 1e15)."""


def _number(field: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(field, f"is not a number: {value!r}") from None
    if not math.isfinite(v):
        raise ValidationError(field, f"must be finite, got {value!r}")
    return v


def _within(field: str, value: float, lo: float, hi: float, unit: str = "") -> None:
    v = _number(field, value)
    if not lo <= v <= hi:
        raise ValidationError(field, f"must be in [{lo:g}, {hi:g}]{unit}, got {value!r}")


def check_price(field: str, value: float) -> None:
    """A spot, strike or close: in [PRICE_MIN, PRICE_MAX]."""
    _within(field, value, PRICE_MIN, PRICE_MAX)


def check_spot(value: float) -> None:
    check_price("spot", value)


def check_strike(value: float) -> None:
    check_price("strike", value)


def check_quantity(value: float, *, is_option: bool) -> None:
    """|quantity| <= QUANTITY_MAX; whole contracts for options (shares may be fractional)."""
    v = _number("quantity", value)
    if abs(v) > QUANTITY_MAX:
        raise ValidationError("quantity", f"must be within ±{QUANTITY_MAX:g}, got {value!r}")
    if is_option and v != math.floor(v):
        raise ValidationError("quantity", f"options trade in whole contracts, got {value!r}")


def check_multiplier(value: float) -> None:
    v = _number("multiplier", value)
    if not 0.0 < v <= MULTIPLIER_MAX:
        raise ValidationError("multiplier", f"must be in (0, {MULTIPLIER_MAX:g}], got {value!r}")


def check_vol(field: str, value: float) -> None:
    _within(field, value, 0.0, VOL_MAX)


def check_atm_vol(field: str, value: float) -> None:
    """A market's ATM vol: in (0, VOL_MAX] (the smile is built on it; 0 has no smile)."""
    v = _number(field, value)
    if not 0.0 < v <= VOL_MAX:
        raise ValidationError(field, f"must be in (0, {VOL_MAX:g}], got {value!r}")


def check_skew(value: float) -> None:
    """A smile slope, vol per unit of ln(K/S): in [-SKEW_MAX, SKEW_MAX]."""
    _within("skew", value, -SKEW_MAX, SKEW_MAX)


def check_rate(field: str, value: float) -> None:
    """A rate or dividend yield, continuously compounded: in [-RATE_MAX, RATE_MAX]."""
    _within(field, value, -RATE_MAX, RATE_MAX)


def check_expiry_years(value: float) -> None:
    _within("expiry_years", value, 0.0, EXPIRY_YEARS_MAX)
