"""Instruments as immutable value types, validated on construction.

Conventions used throughout marginflow:

* prices are per unit of the underlying (per share, per index point, per future unit);
  a contract is worth ``price * multiplier``;
* times to expiry are year fractions, ACT/365 fixed, unless a function says otherwise;
* volatilities are annualised, of continuously compounded returns;
* rates and dividend yields are continuously compounded, annualised.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from enum import StrEnum

from marginflow.core.errors import ValidationError
from marginflow.core.ids import InstrumentId, UnderlyingId


class OptionKind(StrEnum):
    CALL = "call"
    PUT = "put"


class ExerciseStyle(StrEnum):
    EUROPEAN = "european"
    AMERICAN = "american"


class Settlement(StrEnum):
    PHYSICAL = "physical"
    CASH = "cash"


class UnderlyingKind(StrEnum):
    EQUITY = "equity"
    ETF = "etf"
    INDEX = "index"


def _require_positive(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValidationError(field, f"must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Underlying:
    """An equity, ETF or index that options and futures are written on.

    ``high_cap_broad_index`` marks indices such as SPX that portfolio-margin rules treat
    with a narrower (+6%/-8%) range than other indices.
    """

    id: UnderlyingId
    kind: UnderlyingKind = UnderlyingKind.EQUITY
    currency: str = "USD"
    high_cap_broad_index: bool = False

    @classmethod
    def of(cls, id: str, kind: UnderlyingKind | str = UnderlyingKind.EQUITY) -> Underlying:
        if not id:
            raise ValidationError("id", "must not be empty")
        return cls(UnderlyingId(id), UnderlyingKind(kind))


@dataclass(frozen=True, slots=True)
class Future:
    """A futures contract on an underlying, worth ``(F - F0) * multiplier`` in variation."""

    id: InstrumentId
    underlying: UnderlyingId
    expiry: dt.date
    multiplier: float = 1.0

    def __post_init__(self) -> None:
        _require_positive("multiplier", self.multiplier)


@dataclass(frozen=True, slots=True)
class ListedOption:
    """A listed option on an equity, ETF or index (``future`` is None), or on a future.

    ``strike`` is per unit of the underlying; ``multiplier`` converts a unit price into a
    contract value (100 for US equity options).
    """

    id: InstrumentId
    underlying: UnderlyingId
    kind: OptionKind
    strike: float
    expiry: dt.date
    style: ExerciseStyle = ExerciseStyle.AMERICAN
    multiplier: float = 100.0
    settlement: Settlement = Settlement.PHYSICAL
    future: InstrumentId | None = None

    def __post_init__(self) -> None:
        _require_positive("strike", self.strike)
        _require_positive("multiplier", self.multiplier)

    @property
    def on_future(self) -> bool:
        return self.future is not None

    def with_strike(self, strike: float) -> ListedOption:
        return replace(self, strike=strike)

    def expiry_years(self, valuation_date: dt.date) -> float:
        """Year fraction ACT/365 fixed from ``valuation_date`` to expiry (>= 0)."""
        return max((self.expiry - valuation_date).days, 0) / 365.0
