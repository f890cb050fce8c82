"""A consistent set of market data at one valuation date.

Per underlying: spot, a continuous dividend yield, discrete cash dividends and an implied
volatility surface; one risk-free curve for the currency. Futures prices sit beside spots,
keyed by the future's instrument id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from marginflow.core.errors import ValidationError
from marginflow.core.ids import InstrumentId, UnderlyingId
from marginflow.market.curves import ZeroCurve
from marginflow.market.dividends import DividendSchedule
from marginflow.market.vol_surface import VolSurface


@dataclass(frozen=True, slots=True)
class UnderlyingMarket:
    """Market data of one underlying. ``dividend_yield`` is continuous and annualised and
    adds to any discrete ``dividends``."""

    spot: float
    surface: VolSurface
    dividend_yield: float = 0.0
    dividends: DividendSchedule = field(default_factory=DividendSchedule.none)

    def __post_init__(self) -> None:
        if not self.spot > 0:
            raise ValidationError("spot", f"must be > 0, got {self.spot!r}")

    def with_spot(self, spot: float) -> UnderlyingMarket:
        return replace(self, spot=spot)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    valuation_date: dt.date
    curve: ZeroCurve
    underlyings: dict[UnderlyingId, UnderlyingMarket]
    futures: dict[InstrumentId, float] = field(default_factory=dict)

    def underlying(self, uid: UnderlyingId) -> UnderlyingMarket:
        try:
            return self.underlyings[uid]
        except KeyError:
            raise ValidationError("underlying", f"no market data for {uid!r}") from None

    def future_price(self, fid: InstrumentId) -> float:
        try:
            return self.futures[fid]
        except KeyError:
            raise ValidationError("future", f"no price for future {fid!r}") from None
