"""Hand-made books for back-tests: one equity whose closes are known, so each day's
realised P&L and the breach days can be computed by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import scipy.sparse as sp

from marginflow.core.book import Book, InstrumentKind, Instruments, Market, Positions, Underlyings
from marginflow.core.history import ReturnHistory
from marginflow.engine.settings import MarginSettings

# 200 returns of history: 60 business days of look-back (and the EWMA's 50 of warm-up)
# before the window; small and quick
SETTINGS = MarginSettings(lookback=60, stress="none", mpor=2)
N_RETURNS = 200
CRASH_ROW = 170  # the return of history row 170 is the crash
CRASH = np.log(0.85)  # -15% in one day
SPOT = 100.0
EXPIRY = np.datetime64("2030-06-21")


def business_days(n: int, start: str = "2022-01-03") -> np.ndarray:
    """n business days (Mon-Fri) from ``start``: the dates the returns end on."""
    return np.busday_offset(np.datetime64(start), np.arange(n), roll="forward")


def drift_returns(n: int = N_RETURNS, *, crash: bool = True) -> np.ndarray:
    """+0.3%, +0.1% alternating (every 2-day window is a gain of about 0.4%), and the crash
    at :data:`CRASH_ROW`: a long holder loses only over the two windows that hold it."""
    r = np.where(np.arange(n) % 2 == 0, 0.003, 0.001)
    if crash:
        r[CRASH_ROW] = CRASH
    return r


def one_equity_book(
    returns: np.ndarray | None = None,
    *,
    shares: float = 1_000.0,
    calls: float = 0.0,
    accounts: tuple[str, ...] = ("ACC", "OPT"),
) -> Book:
    """One underlying XYZ (spot 100 on the last day), its stock and a European call (strike
    100, expiring 2030-06-21, multiplier 100); account ``ACC`` holds ``shares`` shares, the
    second account ``calls`` calls. Member M1 owns both."""
    r = drift_returns() if returns is None else returns
    dates = business_days(r.size)
    valuation = dates[-1].astype(dt.date)
    ins = Instruments(
        ids=("XYZ", "XYZ C100"),
        underlying=np.zeros(2, dtype=np.int32),
        kind=np.array([InstrumentKind.STOCK, InstrumentKind.CALL], dtype=np.int8),
        strike=np.array([0.0, 100.0]),
        expiry=np.array([np.datetime64("NaT"), EXPIRY], dtype="datetime64[D]"),
        is_american=np.zeros(2, dtype=bool),
        multiplier=np.array([1.0, 100.0]),
        valuation_date=valuation,
    )
    market = Market(
        valuation_date=valuation,
        spot=np.array([SPOT]),
        atm_vol=np.array([0.2]),
        skew=np.array([0.0]),
        dividend_yield=np.array([0.0]),
        rate=np.array([0.01]),
    )
    matrix = sp.csr_matrix(np.array([[shares, 0.0], [0.0, calls]]))
    positions = Positions(
        accounts=accounts,
        members=("M1",),
        account_member=np.zeros(2, dtype=np.int32),
        matrix=matrix,
    )
    return Book(
        underlyings=Underlyings(("XYZ",), ("equity",), np.array([1e9]), np.zeros(1, dtype=bool)),
        instruments=ins,
        market=market,
        positions=positions,
        history=ReturnHistory(dates, ("XYZ",), r[:, None].copy(), source="history.csv"),
    )


def closes_of(book: Book) -> np.ndarray:
    """The closes of each history date, rebuilt by hand: spot on the last, back through
    the returns."""
    assert book.history is not None
    r = book.history.log_returns[:, 0]
    # close[t] = spot · exp(-(r[t+1] + ... + r[T-1]))
    after = np.concatenate([np.cumsum(r[::-1])[::-1][1:], [0.0]])
    return SPOT * np.exp(-after)
