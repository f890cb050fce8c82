"""Reference data reaches a running engine: a listed series joins the P&L matrix, a new account
opens flat, and a date roll revalues for the shorter expiries and drops expired series. Each
ends where an engine built from scratch on the final book ends (to float64 rounding)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from marginflow.core.book import Book
from marginflow.core.errors import ValidationError
from marginflow.engine.state import MarginEngine
from marginflow.margin.es_model import ExpectedShortfallModel
from tests.engine.conftest import SmallCase

MODEL = ExpectedShortfallModel()


def _without(book: Book, listed: np.ndarray) -> Book:
    """``book`` without the instruments ``listed`` (and the positions in them)."""
    keep = np.setdiff1d(np.arange(len(book.instruments)), listed)
    m = book.positions.matrix[:, keep]
    return replace(
        book,
        instruments=book.instruments.take(keep),
        positions=book.positions.with_matrix(sp.csr_matrix(m)),
    )


def _same(a: MarginEngine, b: MarginEngine) -> None:
    assert a.book.positions.accounts == b.book.positions.accounts
    np.testing.assert_allclose(a.margin, b.margin, rtol=1e-12, atol=1e-7)


def test_a_listed_series_joins_the_matrix_without_a_rebuild(small_case: SmallCase) -> None:
    book = small_case.book.without_positions()
    options = np.flatnonzero(book.instruments.is_option)
    listed = options[[3, 17, 40]]
    engine = MarginEngine(_without(book, listed), small_case.scenarios, MODEL)
    engine.list_instruments(book.instruments.take(listed))
    order = np.concatenate([np.setdiff1d(np.arange(len(book.instruments)), listed), listed])
    fresh_book = replace(
        book,
        instruments=book.instruments.take(order),
        positions=book.positions.with_matrix(sp.csr_matrix(book.positions.matrix[:, order])),
    )
    fresh = MarginEngine(fresh_book, small_case.scenarios, MODEL)
    np.testing.assert_array_equal(engine.matrix, fresh.matrix)  # the rows, bit for bit
    accounts = book.positions.accounts
    trades = {
        accounts[0]: {book.instruments.ids[listed[0]]: -12.0},
        accounts[1]: {book.instruments.ids[listed[1]]: 5.0, book.instruments.ids[options[0]]: -3.0},
    }
    engine.apply_trades(trades)
    fresh.apply_trades(trades)
    _same(engine, fresh)
    with pytest.raises(ValidationError, match="is already listed"):
        engine.list_instruments(book.instruments.take(listed[:1]))


def test_a_new_account_opens_flat_and_trades(small_case: SmallCase) -> None:
    book = small_case.book
    engine = MarginEngine(book, small_case.scenarios, MODEL)
    engine.open_accounts(
        [("NEW-1", "M-NEW", "client"), ("NEW-2", book.positions.members[0], "house")]
    )
    assert engine.book.positions.members[-1] == "M-NEW"
    assert engine.margin[-2:].tolist() == [0.0, 0.0]
    ins = book.instruments.ids[np.flatnonzero(book.instruments.is_option)[5]]
    engine.apply_trades({"NEW-1": {ins: -20.0}})
    assert engine.account_margin("NEW-1").member == "M-NEW"
    assert engine.member_margins()[-1] == pytest.approx(engine.margin[-2])
    assert engine.margin[-2] > 0
    with pytest.raises(ValidationError, match="is already open"):
        engine.open_accounts([("NEW-1", "M-NEW", "client")])


def test_a_date_roll_revalues_and_drops_expired_series(small_case: SmallCase) -> None:
    book = small_case.book
    engine = MarginEngine(book, small_case.scenarios, MODEL)
    day = book.market.valuation_date + dt.timedelta(days=10)
    left = engine.roll(day)
    ins = book.instruments.resolved(day)
    assert left == [ins.ids[j] for j in np.flatnonzero(ins.expired())]
    assert left, "the small book has series expiring within ten days"
    keep = sp.csr_matrix(book.positions.matrix.multiply(~ins.expired()[np.newaxis, :]))
    keep.eliminate_zeros()
    fresh_book = replace(
        book,
        instruments=ins,
        market=replace(book.market, valuation_date=day),
        positions=book.positions.with_matrix(keep),
    )
    fresh = MarginEngine(fresh_book, small_case.scenarios, MODEL)
    _same(engine, fresh)
    assert engine.is_expired(left[0])
    assert not engine.matrix[book.instruments.index()[left[0]]].any()
    with pytest.raises(ValidationError, match="is before the valuation date"):
        engine.roll(book.market.valuation_date)
