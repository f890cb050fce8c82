"""The one model of a clearing book, in struct-of-arrays form: members and their accounts,
underlyings (with average daily volume), instruments with expiry dates, the market (spot,
smile, dividend yield and rate per underlying, and the price history) and the sparse
accounts × instruments position matrix. Immutable value types, validated on construction;
every layer above (pricing inputs, the engine, the stream, the store, the CLI) uses these.

Dates are resolved to year fractions once per valuation date: an :class:`Instruments` holds
its expiry dates and the ``valuation_date`` they are resolved against, and derives
``expiry_years`` (ACT/365 fixed, 0 for stocks) from them; :meth:`Instruments.resolved` and
:meth:`Book.rolled` move a book to another valuation date.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from marginflow.core.batch import BoolArray, FloatArray
from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.core.limits import (
    PRICE_MAX,
    PRICE_MIN,
    RATE_MAX,
    SKEW_MAX,
    VOL_MAX,
    check_atm_vol,
    check_skew,
    check_spot,
)

IntArray = NDArray[np.int32]
DayArray = NDArray[np.datetime64]
NO_EXPIRY = np.datetime64("NaT", "D")
ACCOUNT_TYPES = ("house", "client")


class UnderlyingKind(StrEnum):
    EQUITY = "equity"
    ETF = "etf"
    INDEX = "index"


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
    """N instruments in parallel arrays: stocks (``strike`` 0, ``expiry`` NaT) and listed
    options with an expiry date (``datetime64[D]``). ``expiry_years`` is derived: the year
    fraction ACT/365 fixed from ``valuation_date`` to expiry (0 for stocks)."""

    ids: tuple[str, ...]
    underlying: IntArray
    kind: NDArray[np.int8]
    strike: FloatArray
    expiry: DayArray
    is_american: BoolArray
    multiplier: FloatArray
    valuation_date: dt.date
    expiry_years: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        expiry = np.asarray(self.expiry, dtype="datetime64[D]")
        for name in ("underlying", "kind", "strike", "is_american", "multiplier"):
            if getattr(self, name).shape != (n,):
                raise ValidationError(name, f"must have one value per instrument ({n})")
        if expiry.shape != (n,):
            raise ValidationError("expiry", f"must have one value per instrument ({n})")
        option = self.kind != InstrumentKind.STOCK
        if np.any(np.isnat(expiry) & option):
            i = int(np.flatnonzero(np.isnat(expiry) & option)[0])
            raise ValidationError("expiry", f"option {self.ids[i]!r} has no expiry date")
        day = np.datetime64(self.valuation_date, "D")
        days = np.where(option, (expiry - day).astype(np.int64), 0)
        object.__setattr__(self, "expiry", expiry)
        object.__setattr__(self, "expiry_years", np.maximum(days, 0) / 365.0)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {i: n for n, i in enumerate(self.ids)}

    @property
    def is_option(self) -> BoolArray:
        return np.asarray(self.kind != InstrumentKind.STOCK)

    def expired(self) -> BoolArray:
        """Options whose expiry is before the valuation date (they leave the book at a roll;
        an option expiring on the valuation date is still valued, at its intrinsic value)."""
        return np.asarray(self.is_option & (self.expiry < np.datetime64(self.valuation_date, "D")))

    def resolved(self, valuation_date: dt.date) -> Instruments:
        """The same instruments with year fractions resolved against ``valuation_date``."""
        return replace(self, valuation_date=valuation_date)

    def extended(self, more: Instruments) -> Instruments:
        """These instruments followed by ``more`` (resolved on the same date)."""
        if more.valuation_date != self.valuation_date:
            raise ValidationError("valuation_date", "instruments resolved on different dates")
        return Instruments(
            ids=self.ids + more.ids,
            underlying=np.concatenate([self.underlying, more.underlying]),
            kind=np.concatenate([self.kind, more.kind]),
            strike=np.concatenate([self.strike, more.strike]),
            expiry=np.concatenate([self.expiry, more.expiry]),
            is_american=np.concatenate([self.is_american, more.is_american]),
            multiplier=np.concatenate([self.multiplier, more.multiplier]),
            valuation_date=self.valuation_date,
        )

    def take(self, rows: NDArray[np.intp]) -> Instruments:
        """The instruments at ``rows``, in that order."""
        return Instruments(
            ids=tuple(self.ids[i] for i in rows),
            underlying=self.underlying[rows],
            kind=self.kind[rows],
            strike=self.strike[rows],
            expiry=self.expiry[rows],
            is_american=self.is_american[rows],
            multiplier=self.multiplier[rows],
            valuation_date=self.valuation_date,
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

    def check_values(self, names: Sequence[str]) -> None:
        """Refuse, naming the first underlying (``names`` in the market's order) and its
        field, a value outside the plausibility bounds of :mod:`marginflow.core.limits`:
        spot in [PRICE_MIN, PRICE_MAX], ATM vol in (0, VOL_MAX], skew in [-SKEW_MAX,
        SKEW_MAX], rate and dividend yield in [-RATE_MAX, RATE_MAX]. A market within them
        gives finite P&L."""
        with np.errstate(invalid="ignore"):
            checks = (
                ("spot", self.spot, (self.spot >= PRICE_MIN) & (self.spot <= PRICE_MAX),
                 f"[{PRICE_MIN:g}, {PRICE_MAX:g}]"),
                ("atm_vol", self.atm_vol, (self.atm_vol > 0) & (self.atm_vol <= VOL_MAX),
                 f"(0, {VOL_MAX:g}]"),
                ("skew", self.skew, np.abs(self.skew) <= SKEW_MAX,
                 f"[{-SKEW_MAX:g}, {SKEW_MAX:g}]"),
                ("rate", self.rate, np.abs(self.rate) <= RATE_MAX,
                 f"[{-RATE_MAX:g}, {RATE_MAX:g}]"),
                ("dividend_yield", self.dividend_yield, np.abs(self.dividend_yield) <= RATE_MAX,
                 f"[{-RATE_MAX:g}, {RATE_MAX:g}]"),
            )  # fmt: skip
        for name, values, ok, bounds in checks:
            if not ok.all():
                u = int(np.argmin(ok))
                raise ValidationError(
                    name, f"{names[u]!r}: must be in {bounds}, got {float(values[u])!r}"
                )

    def with_underlying(
        self,
        u: int,
        *,
        spot: float | None = None,
        atm_vol: float | None = None,
        skew: float | None = None,
    ) -> Market:
        """A copy with one underlying's spot, ATM vol and/or smile slope replaced."""
        return self.with_underlyings([(u, spot, atm_vol, skew)])

    def with_underlyings(
        self, changes: Sequence[tuple[int, float | None, float | None, float | None]]
    ) -> Market:
        """A copy with several underlyings' ``(u, spot, atm_vol, skew)`` replaced (None
        leaves a value; a later change of the same underlying wins), each validated as
        :meth:`with_underlying` validates it: one copy of the arrays, not one per change."""
        new_spot, new_vol, new_skew = self.spot.copy(), self.atm_vol.copy(), self.skew.copy()
        for u, spot, atm_vol, skew in changes:
            # the bounds of check_values (a spot or skew of 1.7e308 is finite, its P&L not)
            if spot is not None:
                check_spot(spot)
                new_spot[u] = spot
            if atm_vol is not None:
                check_atm_vol("vol", atm_vol)
                new_vol[u] = atm_vol
            if skew is not None:
                check_skew(skew)
                new_skew[u] = skew
        return replace(self, spot=new_spot, atm_vol=new_vol, skew=new_skew)


@dataclass(frozen=True, slots=True)
class Positions:
    """Members, their accounts (each owned by one member; ``house`` or ``client``) and the
    A × N position matrix (CSR, float64: contracts for options, shares for stocks, positive
    long). ``account_type`` defaults to ``house`` and ``member_names`` to blank."""

    accounts: tuple[str, ...]
    members: tuple[str, ...]
    account_member: IntArray
    matrix: sp.csr_matrix
    account_type: tuple[str, ...] = ()
    member_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.matrix.shape[0] != len(self.accounts):
            raise ValidationError("positions", "matrix rows differ from the account count")
        if self.account_member.shape != (len(self.accounts),):
            raise ValidationError("account_member", "must have one member per account")
        if not self.account_type:
            object.__setattr__(self, "account_type", ("house",) * len(self.accounts))
        if not self.member_names:
            object.__setattr__(self, "member_names", ("",) * len(self.members))
        if len(self.account_type) != len(self.accounts):
            raise ValidationError("account_type", "must have one type per account")
        bad = sorted(set(self.account_type) - set(ACCOUNT_TYPES))
        if bad:
            raise ValidationError("account_type", f"must be house or client, got {bad[0]!r}")
        if len(self.member_names) != len(self.members):
            raise ValidationError("member_names", "must have one name per member")

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def with_matrix(self, matrix: sp.csr_matrix) -> Positions:
        """The same accounts with other holdings."""
        return replace(self, matrix=matrix)


@dataclass(frozen=True, slots=True)
class Book:
    """A clearing book on ``market.valuation_date``; ``history`` (daily closes as returns,
    ending on or before the valuation date) is what generated scenarios are built from."""

    underlyings: Underlyings
    instruments: Instruments
    market: Market
    positions: Positions
    history: ReturnHistory | None = None

    def __post_init__(self) -> None:
        u, n = len(self.underlyings), len(self.instruments)
        if self.instruments.valuation_date != self.market.valuation_date:
            raise ValidationError(
                "instruments",
                f"resolved for {self.instruments.valuation_date}, the market is of "
                f"{self.market.valuation_date}",
            )
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

    @property
    def valuation_date(self) -> dt.date:
        return self.market.valuation_date

    def restricted(self, underlyings: Iterable[str]) -> Book:
        """The book of ``underlyings`` only: their market, history and every instrument on
        them (all of them, in this book's order, since an instrument's revaluation may
        depend on its siblings), with every account kept; their positions in other
        underlyings are dropped."""
        wanted = set(underlyings)
        keep_u = np.array([u in wanted for u in self.underlyings.ids], dtype=bool)
        new_index = np.cumsum(keep_u) - 1
        rows = np.flatnonzero(keep_u[self.instruments.underlying]).astype(np.intp)
        taken = self.instruments.take(rows)
        u = self.underlyings
        ids = tuple(x for x, k in zip(u.ids, keep_u, strict=True) if k)
        m = self.market
        return Book(
            underlyings=Underlyings(
                ids,
                tuple(k for k, f in zip(u.kind, keep_u, strict=True) if f),
                u.adv[keep_u],
                u.high_cap_broad_index[keep_u],
            ),
            instruments=replace(taken, underlying=new_index[taken.underlying].astype(np.int32)),
            market=replace(
                m,
                spot=m.spot[keep_u],
                atm_vol=m.atm_vol[keep_u],
                skew=m.skew[keep_u],
                dividend_yield=m.dividend_yield[keep_u],
                rate=m.rate[keep_u],
            ),
            positions=self.positions.with_matrix(sp.csr_matrix(self.positions.matrix[:, rows])),
            history=None if self.history is None else self.history.select(ids),
        )

    def without_positions(self) -> Book:
        """The same reference data and market with every account flat (what a stream's
        calculator starts from: positions arrive on the log)."""
        flat = sp.csr_matrix(self.positions.matrix.shape, dtype=np.float64)
        return replace(self, positions=self.positions.with_matrix(flat))
