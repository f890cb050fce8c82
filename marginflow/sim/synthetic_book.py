"""A synthetic clearing book of any size, reproducible by seed, over a synthetic universe.

* underlyings: :func:`marginflow.sim.universe.generate_universe` (SPX and NDX real,
  the rest from a factor model on their history); valuation date = the history's last day;
* instruments: one stock per equity/ETF, then option series spread over underlyings by
  liquidity (indices ten times more), expiries from one week to two years (more short
  ones), strikes around spot (wider for longer expiries) on listed strike ticks, calls and
  puts; American on stocks and ETFs, European (cash-settled) on indices; multiplier 100;
* market: spot = last close; ATM vol = 1.2 × the 0.94-EWMA realised vol (implied trades
  above realised: VIX / S&P 500 EWMA vol averaged 1.3 in 2014-2018) with ±10% noise; skew
  -0.5 per unit log-moneyness for indices, -0.05..-0.3 for stocks; rate 2.5%;
* accounts: spread over members (Zipf); each account trades mostly (80%) three "home"
  underlyings; quantities log-normal, long or short.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from marginflow.core.book import (
    Book,
    InstrumentKind,
    Instruments,
    Market,
    Positions,
    Underlyings,
)
from marginflow.core.errors import ValidationError
from marginflow.io.book import write_book
from marginflow.scenarios.ewma import ewma_filter
from marginflow.sim.universe import Universe, generate_universe

EXPIRY_DAYS = np.array([7, 14, 21, 30, 60, 91, 122, 182, 273, 365, 547, 730])
RATE = 0.025
HOME_UNDERLYINGS = 3
HOME_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class SyntheticBook:
    """The book (with its history and account types) and the universe it was drawn from."""

    book: Book
    universe: Universe


def generate_book(
    *,
    members: int = 5,
    accounts: int = 50,
    underlyings: int = 20,
    series: int = 400,
    positions: int = 2_000,
    seed: int = 0,
) -> SyntheticBook:
    """Generate a book; every count is exact."""
    for name, value, least in (
        ("members", members, 1),
        ("accounts", accounts, members),
        ("underlyings", underlyings, 2),
        ("series", series, 0),
        ("positions", positions, 0),
    ):
        if value < least:
            raise ValidationError(name, f"must be >= {least}, got {value}")
    universe = generate_universe(underlyings, seed=seed)
    rng = np.random.default_rng(np.random.PCG64([seed, 1]))
    valuation = universe.history.dates[-1].astype(dt.date)
    und = Underlyings(
        ids=universe.underlyings,
        kind=universe.kind,
        adv=universe.adv,
        high_cap_broad_index=universe.high_cap_broad_index,
    )
    ins = _instruments(universe, series, rng, valuation)
    if positions > accounts * len(ins):
        raise ValidationError(
            "positions", f"at most accounts × instruments = {accounts * len(ins)}"
        )
    market = _market(universe, valuation, rng)
    member_of, types = _accounts(members, accounts, rng)
    matrix = _positions(universe, ins, accounts, positions, rng)
    width = max(len(str(accounts - 1)), 4)
    book = Book(
        underlyings=und,
        instruments=ins,
        market=market,
        positions=Positions(
            accounts=tuple(f"A{i:0{width}d}" for i in range(accounts)),
            members=tuple(f"M{i:03d}" for i in range(members)),
            account_member=member_of,
            matrix=matrix,
            account_type=types,
        ),
        history=universe.history,
    )
    return SyntheticBook(book, universe)


def _instruments(
    universe: Universe, n_series: int, rng: np.random.Generator, valuation: dt.date
) -> Instruments:
    ids = universe.underlyings
    kind = np.array(universe.kind)
    spot = universe.last_close
    stock_u = np.flatnonzero(kind != "index")
    weight = np.sqrt(universe.adv) * np.where(kind == "index", 10.0, 1.0)
    u_parts, d_parts, k_parts, c_parts = [], [], [], []
    have: set[tuple[int, int, float, int]] = set()
    need = n_series
    while need > 0:
        m = int(need * 1.3) + 16
        u = rng.choice(len(ids), m, p=weight / weight.sum())
        p_days = 1.0 / np.sqrt(EXPIRY_DAYS)
        days = rng.choice(EXPIRY_DAYS, m, p=p_days / p_days.sum())
        t = days / 365.0
        ln_m = np.clip(rng.normal(0.0, 0.08 + 0.25 * np.sqrt(t)), -0.8, 0.8)
        raw = spot[u] * np.exp(ln_m)
        tick = _strike_tick(spot[u])
        strike = np.maximum(np.round(raw / tick) * tick, tick)
        call = rng.random(m) < 0.5
        for row in zip(u.tolist(), days.tolist(), strike.tolist(), call.tolist(), strict=True):
            key = (row[0], row[1], row[2], int(row[3]))
            if key in have:
                continue
            have.add(key)
            u_parts.append(row[0])
            d_parts.append(row[1])
            k_parts.append(row[2])
            c_parts.append(row[3])
            need -= 1
            if need == 0:
                break
    su = np.asarray(u_parts, dtype=np.int32)
    sd = np.asarray(d_parts, dtype=np.int64)
    sk = np.asarray(k_parts, dtype=np.float64)
    sc = np.asarray(c_parts, dtype=bool)
    day = np.datetime64(valuation, "D")
    series_ids = [
        f"{ids[u]} {(day + np.timedelta64(d, 'D')).astype(dt.date):%y%m%d}{'C' if c else 'P'}{k:g}"
        for u, d, k, c in zip(su.tolist(), sd.tolist(), sk.tolist(), sc.tolist(), strict=True)
    ]
    n_stock = stock_u.size
    return Instruments(
        ids=tuple([ids[u] for u in stock_u] + series_ids),
        underlying=np.concatenate([stock_u, su]).astype(np.int32),
        kind=np.concatenate(
            [
                np.full(n_stock, InstrumentKind.STOCK),
                np.where(sc, InstrumentKind.CALL, InstrumentKind.PUT),
            ]
        ).astype(np.int8),
        strike=np.concatenate([np.zeros(n_stock), sk]),
        expiry=np.concatenate(
            [np.full(n_stock, np.datetime64("NaT", "D")), day + sd.astype("timedelta64[D]")]
        ),
        is_american=np.concatenate([np.zeros(n_stock, bool), kind[su] != "index"]),
        multiplier=np.concatenate([np.ones(n_stock), np.full(su.size, 100.0)]),
        valuation_date=valuation,
    )


def _strike_tick(spot: np.ndarray) -> np.ndarray:
    return np.select([spot < 25, spot < 200, spot < 1000], [0.5, 1.0, 5.0], 25.0)


def _market(universe: Universe, valuation: dt.date, rng: np.random.Generator) -> Market:
    realised = ewma_filter(universe.history.log_returns, decay=0.94).sigma_after[-1] * np.sqrt(252)
    n = len(universe.underlyings)
    is_index = np.array(universe.kind) == "index"
    return Market(
        valuation_date=valuation,
        spot=universe.last_close.copy(),
        atm_vol=np.round(1.2 * realised * rng.uniform(0.9, 1.1, n), 4),
        skew=np.round(np.where(is_index, -0.5, rng.uniform(-0.3, -0.05, n)), 3).astype(np.float64),
        dividend_yield=np.round(universe.dividend_yield, 4),
        rate=np.full(n, RATE),
    )


def _accounts(
    members: int, accounts: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[str, ...]]:
    zipf = 1.0 / np.arange(1, members + 1)
    member_of = np.concatenate(
        [np.arange(members), rng.choice(members, accounts - members, p=zipf / zipf.sum())]
    )
    rng.shuffle(member_of)
    first = np.zeros(accounts, dtype=bool)
    first[np.unique(member_of, return_index=True)[1]] = True
    types = tuple("house" if f else "client" for f in first)
    return member_of.astype(np.int32), types


def _positions(
    universe: Universe,
    ins: Instruments,
    accounts: int,
    n_positions: int,
    rng: np.random.Generator,
) -> sp.csr_matrix:
    n_u = len(universe.underlyings)
    order = np.argsort(ins.underlying, kind="stable")
    counts = np.bincount(ins.underlying, minlength=n_u)
    starts = np.concatenate([[0], np.cumsum(counts)])
    popular = np.sqrt(universe.adv) * (counts > 0)
    popular = popular / popular.sum()
    home = rng.choice(n_u, (accounts, HOME_UNDERLYINGS), p=popular)
    activity = rng.lognormal(0.0, 1.0, accounts)
    activity /= activity.sum()
    keys = np.zeros(0, dtype=np.int64)
    quantities = np.zeros(0)
    n_ins = len(ins)
    while keys.size < n_positions:
        m = int((n_positions - keys.size) * 1.3) + 16
        a = rng.choice(accounts, m, p=activity)
        u = np.where(
            rng.random(m) < HOME_SHARE,
            home[a, rng.integers(0, HOME_UNDERLYINGS, m)],
            rng.choice(n_u, m, p=popular),
        )
        u = np.where(counts[u] > 0, u, home[a, 0])
        j = order[starts[u] + (rng.random(m) * counts[u]).astype(np.int64)]
        is_stock = ins.kind[j] == InstrumentKind.STOCK
        size = np.where(
            is_stock,
            np.maximum(np.round(rng.lognormal(np.log(2000.0), 1.2, m) / 100.0), 1.0) * 100.0,
            np.minimum(np.ceil(rng.lognormal(np.log(10.0), 1.2, m)), 5000.0),
        )
        q = np.where(rng.random(m) < 0.5, size, -size)
        new_keys = a.astype(np.int64) * n_ins + j
        keys = np.concatenate([keys, new_keys])
        quantities = np.concatenate([quantities, q])
        keys, first = np.unique(keys, return_index=True)
        quantities = quantities[first]
    keep = np.sort(rng.choice(keys.size, n_positions, replace=False))
    keys, quantities = keys[keep], quantities[keep]
    matrix = sp.csr_matrix(
        (quantities, (keys // n_ins, keys % n_ins)), shape=(accounts, n_ins), dtype=np.float64
    )
    matrix.sort_indices()
    return matrix


@dataclass(frozen=True, slots=True)
class BookSpec:
    """A generated book by size and seed (see :func:`generate_book`): what the demo,
    ``cluster up`` without ``--book``, the tests and the benchmarks margin. ``sod_positions``
    is how many start-of-day positions it holds."""

    members: int = 5
    accounts: int = 200
    underlyings: int = 20
    series: int = 600
    sod_positions: int = 1_000
    seed: int = 0

    def book(self) -> Book:
        """The generated book with its start-of-day positions, market and history."""
        return _generated(self)

    def write(self, folder: Path, *, fmt: Literal["csv", "parquet"] = "csv") -> Path:
        """Write the book into ``folder`` (the format ``marginflow margin`` reads)."""
        write_book(folder, self.book(), fmt=fmt)
        return folder


@functools.lru_cache(maxsize=8)
def _generated(spec: BookSpec) -> Book:
    return generate_book(
        members=spec.members,
        accounts=spec.accounts,
        underlyings=spec.underlyings,
        series=spec.series,
        positions=spec.sod_positions,
        seed=spec.seed,
    ).book
