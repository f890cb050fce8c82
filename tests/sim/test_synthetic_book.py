"""The synthetic book: exact sizes, reproducible, consistent."""

from __future__ import annotations

import numpy as np
import pytest

from marginflow.core.book import InstrumentKind
from marginflow.core.errors import ValidationError
from marginflow.sim.synthetic_book import generate_book


def test_sizes_are_exact_and_reproducible() -> None:
    a = generate_book(members=4, accounts=40, underlyings=10, series=250, positions=900, seed=3)
    b = generate_book(members=4, accounts=40, underlyings=10, series=250, positions=900, seed=3)
    book = a.book
    n_stock = sum(k != "index" for k in a.universe.kind)
    assert len(book.instruments) == 250 + n_stock
    assert book.positions.nnz == 900
    assert len(book.positions.accounts) == 40
    assert len(book.positions.members) == 4
    assert set(book.positions.account_member.tolist()) == {0, 1, 2, 3}  # every member has one
    assert book.instruments.ids == b.book.instruments.ids
    assert (book.positions.matrix != b.book.positions.matrix).nnz == 0
    assert len(set(book.instruments.ids)) == len(book.instruments)
    c = generate_book(members=4, accounts=40, underlyings=10, series=250, positions=900, seed=4)
    assert c.book.instruments.ids != book.instruments.ids


def test_instruments_are_consistent() -> None:
    book = generate_book(underlyings=12, series=400, seed=1).book
    ins, kinds = book.instruments, np.array(book.underlyings.kind)
    opt = ins.kind != InstrumentKind.STOCK
    assert (ins.strike[opt] > 0).all()
    assert (ins.expiry_years[opt] > 0).all()
    assert (ins.multiplier[opt] == 100).all()
    assert (ins.multiplier[~opt] == 1).all()
    # American on stocks and ETFs, European on indices.
    assert np.array_equal(ins.is_american[opt], kinds[ins.underlying[opt]] != "index")
    assert (book.market.atm_vol > 0.05).all()
    assert (book.market.atm_vol < 2).all()
    assert book.positions.matrix.data.size
    assert (book.positions.matrix.data != 0).all()


def test_impossible_sizes() -> None:
    with pytest.raises(ValidationError, match="accounts"):
        generate_book(members=5, accounts=3)
    with pytest.raises(ValidationError, match="positions"):
        generate_book(accounts=2, members=1, underlyings=2, series=1, positions=10)
