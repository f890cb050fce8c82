"""A clearing book in struct-of-arrays form: underlyings, instruments, market data and the
sparse accounts × instruments position matrix.

Instruments are stocks (linear, one unit of the underlying each) and listed options; a
position's quantity is in contracts for options (a contract is ``multiplier`` units) and in
shares (units) for stocks. Positive quantities are long.

Implied volatility of an option: a smile per underlying, linear in log-moneyness,
``vol(K) = max(vol_floor, atm_vol + skew · ln(K / S))`` (``skew`` < 0 makes low strikes
dearer, as in equity markets). Under a scenario the smile keeps its shape in moneyness and
scales with the scenario's vol shock (sticky moneyness, see :mod:`.revaluation`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from marginflow.core.batch import BoolArray, FloatArray
from marginflow.core.errors import ValidationError

IntArray = NDArray[np.int32]


class InstrumentKind(IntEnum):
    STOCK = 0
    CALL = 1
    PUT = 2


@dataclass(frozen=True, slots=True)
class Underlyings:
    """U underlyings: ids, ``kind`` (``equity``/``etf``/``index``), average daily volume in
    units of the underlying, and the high-cap broad-based index flag portfolio margin uses."""

    ids: tuple[str, ...]
    kind: tuple[str, ...]
    adv: FloatArray
    high_cap_broad_index: BoolArray

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.ids)}


@dataclass(frozen=True, slots=True)
class Instruments:
    """N instruments in parallel arrays; ``strike`` and ``expiry_years`` are 0 for stocks."""

    ids: tuple[str, ...]
    underlying: IntArray
    kind: NDArray[np.int8]
    strike: FloatArray
    expiry_years: FloatArray
    is_american: BoolArray
    multiplier: FloatArray

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {i: n for n, i in enumerate(self.ids)}

    @property
    def is_option(self) -> BoolArray:
        return np.asarray(self.kind != InstrumentKind.STOCK)

    def take(self, rows: NDArray[np.intp]) -> Instruments:
        """The instruments at ``rows``, in that order."""
        return Instruments(
            ids=tuple(self.ids[i] for i in rows),
            underlying=self.underlying[rows],
            kind=self.kind[rows],
            strike=self.strike[rows],
            expiry_years=self.expiry_years[rows],
            is_american=self.is_american[rows],
            multiplier=self.multiplier[rows],
        )


@dataclass(frozen=True, slots=True)
class Market:
    """Market data per underlying on ``valuation_date``: spot, ATM implied vol (annualised),
    smile slope ``skew`` (vol per unit of ln K/S), continuous dividend yield and risk-free
    rate (continuously compounded, annualised)."""

    valuation_date: dt.date
    spot: FloatArray
    atm_vol: FloatArray
    skew: FloatArray
    dividend_yield: FloatArray
    rate: FloatArray

    def with_underlying(
        self, u: int, *, spot: float | None = None, atm_vol: float | None = None
    ) -> Market:
        """A copy with one underlying's spot and/or ATM vol replaced."""
        new_spot, new_vol = self.spot.copy(), self.atm_vol.copy()
        if spot is not None:
            if not (np.isfinite(spot) and spot > 0):
                raise ValidationError("spot", f"must be a finite number > 0, got {spot!r}")
            new_spot[u] = spot
        if atm_vol is not None:
            if not (np.isfinite(atm_vol) and atm_vol > 0):
                raise ValidationError("vol", f"must be a finite number > 0, got {atm_vol!r}")
            new_vol[u] = atm_vol
        return replace(self, spot=new_spot, atm_vol=new_vol)


@dataclass(frozen=True, slots=True)
class Positions:
    """Accounts (each owned by one member) and the A × N position matrix (CSR, float64)."""

    accounts: tuple[str, ...]
    members: tuple[str, ...]
    account_member: IntArray
    matrix: sp.csr_matrix

    def __post_init__(self) -> None:
        if self.matrix.shape[0] != len(self.accounts):
            raise ValidationError("positions", "matrix rows differ from the account count")
        if self.account_member.shape != (len(self.accounts),):
            raise ValidationError("account_member", "must have one member per account")

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)


@dataclass(frozen=True, slots=True)
class Book:
    underlyings: Underlyings
    instruments: Instruments
    market: Market
    positions: Positions

    def __post_init__(self) -> None:
        u, n = len(self.underlyings), len(self.instruments)
        for name in ("spot", "atm_vol", "skew", "dividend_yield", "rate"):
            if getattr(self.market, name).shape != (u,):
                raise ValidationError(f"market.{name}", f"must have one value per underlying ({u})")
        if self.positions.matrix.shape[1] != n:
            raise ValidationError("positions", "matrix columns differ from the instrument count")

    def instruments_by_underlying(self) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """(order, starts): instrument indices sorted by underlying, and where each starts."""
        order = np.argsort(self.instruments.underlying, kind="stable")
        counts = np.bincount(self.instruments.underlying, minlength=len(self.underlyings))
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
        return order.astype(np.intp), starts
