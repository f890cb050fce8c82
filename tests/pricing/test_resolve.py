from __future__ import annotations

import datetime as dt
import math

import pytest

from marginflow.core.errors import ValidationError
from marginflow.core.ids import InstrumentId, UnderlyingId
from marginflow.core.instruments import ExerciseStyle, ListedOption, OptionKind
from marginflow.market.curves import ZeroCurve
from marginflow.market.dividends import DividendSchedule
from marginflow.market.snapshot import MarketSnapshot, UnderlyingMarket
from marginflow.market.vol_surface import VolSurface
from marginflow.pricing.resolve import resolve_options

TODAY = dt.date(2026, 6, 15)
U = UnderlyingId("ABC")


def market() -> MarketSnapshot:
    surface = VolSurface.of([0.5, 1.0], [-0.2, 0.0, 0.2], [[0.3, 0.2, 0.25], [0.28, 0.21, 0.24]])
    und = UnderlyingMarket(
        spot=100.0,
        surface=surface,
        dividend_yield=0.01,
        dividends=DividendSchedule.of([0.25], [1.0]),
    )
    return MarketSnapshot(
        TODAY, ZeroCurve.flat(0.03), {U: und}, futures={InstrumentId("ESZ6"): 5000.0}
    )


def test_resolution_reads_curve_dividends_and_surface() -> None:
    expiry = TODAY + dt.timedelta(days=365)
    opts = [
        ListedOption(InstrumentId("C1"), U, OptionKind.CALL, 100.0, expiry),
        ListedOption(
            InstrumentId("F1"),
            U,
            OptionKind.PUT,
            5000.0,
            expiry,
            style=ExerciseStyle.EUROPEAN,
            future=InstrumentId("ESZ6"),
        ),
    ]
    b = resolve_options(opts, market())
    assert b.expiry_years[0] == pytest.approx(1.0)
    assert b.rate[0] == pytest.approx(0.03)
    pv = 1.0 * math.exp(-0.03 * 0.25)
    assert b.dividend_yield[0] == pytest.approx(0.01 - math.log(1 - pv / 100.0))
    fwd = 100.0 * math.exp((0.03 - b.dividend_yield[0]) * 1.0)
    k = math.log(100.0 / fwd)  # just below 0: between the -0.2 and 0.0 pillars at T = 1
    assert -0.2 < k < 0
    w_left, w_atm = 0.28**2, 0.21**2
    assert b.vol[0] == pytest.approx(math.sqrt(w_atm + (w_left - w_atm) * (-k) / 0.2))
    assert list(b.is_american) == [True, False]
    assert b.spot[1] == 5000.0
    assert b.dividend_yield[1] == b.rate[1]


def test_missing_market_data_is_named() -> None:
    opt = ListedOption(
        InstrumentId("X"), UnderlyingId("NOPE"), OptionKind.CALL, 1.0, dt.date(2027, 1, 1)
    )
    with pytest.raises(ValidationError, match="underlying: no market data for 'NOPE'"):
        resolve_options([opt], market())
