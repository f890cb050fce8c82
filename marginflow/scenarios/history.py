"""Daily price history of the underlyings, as log returns, and the real series that ship
with the ``arch`` package (S&P 500 and NASDAQ Composite 1999-2018, VIX 2014-2019).

A return on date ``t`` is ``ln(P_t / P_{t-1})`` between consecutive business-day closes
(adjusted closes for the ``arch`` series, so dividends do not appear as falls).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marginflow.core.batch import FloatArray
from marginflow.core.history import DateArray, ReturnHistory


@dataclass(frozen=True, slots=True)
class ArchSeries:
    """The real index histories shipped with ``arch``: returns of S&P 500 and NASDAQ on
    common dates, their last adjusted closes, and the VIX level (percent) where it exists."""

    history: ReturnHistory
    last_close: FloatArray
    vix_dates: DateArray
    vix: FloatArray


def load_arch_series() -> ArchSeries:
    """Load ``arch.data.sp500``, ``arch.data.nasdaq`` and ``arch.data.vix``.

    The history has two columns, ``"SPX"`` and ``"NDX"`` (the NASDAQ Composite stands in for
    a growth index), from the adjusted closes.
    """
    from arch.data import nasdaq, sp500, vix

    spx = sp500.load()["Adj Close"]
    ndx = nasdaq.load()["Adj Close"]
    common = spx.index.intersection(ndx.index)
    closes = np.column_stack([spx.loc[common].to_numpy(), ndx.loc[common].to_numpy()])
    dates = common.to_numpy().astype("datetime64[D]")
    history = ReturnHistory.from_closes(dates, ("SPX", "NDX"), closes)
    v = vix.load()["vix"].dropna()
    return ArchSeries(
        history=history,
        last_close=closes[-1].astype(np.float64),
        vix_dates=v.index.to_numpy().astype("datetime64[D]"),
        vix=v.to_numpy(dtype=np.float64),
    )
