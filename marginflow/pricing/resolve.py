"""Resolve listed options against market data once, into an :class:`OptionBatch`.

Each option gets: time to expiry (ACT/365 from the snapshot date), the zero rate to expiry,
a dividend yield that folds discrete dividends in by the escrowed model, and the implied
vol read from its underlying's surface at its own expiry and log-forward-moneyness. An
option on a future takes the future's price as spot and a yield equal to the rate
(Black-76). Pricing the batch, or any scenario of it, is then pure array work.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from marginflow.core.batch import OptionBatch
from marginflow.core.instruments import ExerciseStyle, ListedOption, OptionKind
from marginflow.market.snapshot import MarketSnapshot


def resolve_options(options: Sequence[ListedOption], market: MarketSnapshot) -> OptionBatch:
    """One row per option, in order. Raises ``ValidationError`` for missing market data."""
    n = len(options)
    spot, yld, t = np.empty(n), np.empty(n), np.empty(n)
    strike = np.array([o.strike for o in options], dtype=np.float64)
    for i, o in enumerate(options):
        t[i] = o.expiry_years(market.valuation_date)
    rate = market.curve.zero_rate(t)
    vol = np.empty(n)
    for i, o in enumerate(options):
        und = market.underlying(o.underlying)
        if o.future is not None:
            spot[i], yld[i] = market.future_price(o.future), rate[i]
        else:
            divs = und.dividends.equivalent_yield(und.spot, t[i : i + 1], market.curve)[0]
            spot[i], yld[i] = und.spot, und.dividend_yield + divs
        forward = spot[i] * np.exp((rate[i] - yld[i]) * t[i])
        vol[i] = und.surface.vol(t[i], np.log(strike[i] / forward))
    return OptionBatch.of(
        is_call=np.array([o.kind is OptionKind.CALL for o in options], dtype=np.bool_),
        is_american=np.array([o.style is ExerciseStyle.AMERICAN for o in options], dtype=np.bool_),
        spot=spot,
        strike=strike,
        expiry_years=t,
        rate=rate,
        dividend_yield=yld,
        vol=vol,
    )
