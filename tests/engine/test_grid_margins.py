"""The SPAN-style and portfolio-margin models on a book, against hand computations."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import scipy.sparse as sp

from marginflow.core.book import Book, Instruments, Market, Positions, Underlyings
from marginflow.core.errors import ValidationError
from marginflow.engine.grid_margins import (
    grid_account_margins,
    grid_what_if,
    portfolio_margin_book,
    span_margin_book,
)


def _stock_book() -> Book:
    # XYZ (equity, $100, 30% vol) and SPX (high-cap index, $2,500, 20% vol) as shares;
    # A1 long 100 XYZ, A2 short 50 XYZ and long 1 SPX unit.
    return Book(
        underlyings=Underlyings(
            ("XYZ", "SPX"), ("equity", "index"), np.array([1e6, 1e6]), np.array([False, True])
        ),
        instruments=Instruments(
            ids=("XYZ", "SPX"),
            underlying=np.array([0, 1], dtype=np.int32),
            kind=np.array([0, 0], dtype=np.int8),
            strike=np.zeros(2),
            expiry=np.full(2, np.datetime64("NaT", "D")),
            is_american=np.zeros(2, dtype=bool),
            multiplier=np.ones(2),
            valuation_date=dt.date(2018, 12, 31),
        ),
        market=Market(
            dt.date(2018, 12, 31),
            spot=np.array([100.0, 2500.0]),
            atm_vol=np.array([0.30, 0.20]),
            skew=np.zeros(2),
            dividend_yield=np.zeros(2),
            rate=np.zeros(2),
        ),
        positions=Positions(
            accounts=("A1", "A2"),
            members=("M1",),
            account_member=np.zeros(2, dtype=np.int32),
            matrix=sp.csr_matrix(np.array([[100.0, 0.0], [-50.0, 1.0]])),
        ),
    )


def test_portfolio_margin_of_shares_is_the_range_move() -> None:
    res = portfolio_margin_book(_stock_book())
    # Long 100 × $100 × 15% down = 1,500. Short 50 × $100 × 15% up = 750, plus SPX (high
    # cap broad index, -8% down) 1 × 2,500 × 8% = 200 as a separate class.
    assert res.margin == pytest.approx([1500.0, 950.0], rel=1e-12)
    am = grid_account_margins(res, _stock_book())
    assert am[0].breakdown.driving_scenario == "XYZ -15.0%"
    assert am[1].model.name == "pm"


def test_span_scan_risk_of_shares_is_the_price_scan_range() -> None:
    res = span_margin_book(_stock_book())
    # PSR = max(3.5 σ_daily, 10.7%) × spot: 3.5 × 0.30/√252 = 6.6% < 10.7% → $10.70 for XYZ;
    # SPX: 3 × 0.20/√252 = 3.8% < 7.1% → $177.50. Full-cover ±1 PSR beats the extreme
    # 2 × PSR × 35% = 0.7 PSR.
    psr_spx = 0.071 * 2500.0
    assert 3.5 * 0.30 / math.sqrt(252) < 0.107
    assert res.margin == pytest.approx([100 * 10.7, 50 * 10.7 + psr_spx], rel=1e-12)


def test_what_if_margins_only_the_account() -> None:
    book = _stock_book()
    before, after = grid_what_if("pm", book, "A1", [("XYZ", -100.0), ("SPX", 2.0)])
    assert before.margin == pytest.approx(1500.0)
    assert after.margin == pytest.approx(2 * 2500.0 * 0.08)
    with pytest.raises(ValidationError, match="unknown instrument"):
        grid_what_if("pm", book, "A1", [("NOPE", 1.0)])
