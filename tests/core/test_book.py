"""The clearing-book model: dates resolved once per valuation date, validated on construction."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
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

VALUATION = dt.date(2026, 1, 1)


def instruments(valuation: dt.date = VALUATION) -> Instruments:
    return Instruments(
        ids=("XYZ", "XYZ 270101C50", "XYZ 260101P40", "XYZ 251231P40"),
        underlying=np.zeros(4, dtype=np.int32),
        kind=np.array([0, 1, 2, 2], dtype=np.int8),
        strike=np.array([0.0, 50.0, 40.0, 40.0]),
        expiry=np.array(["NaT", "2027-01-01", "2026-01-01", "2025-12-31"], dtype="datetime64[D]"),
        is_american=np.array([False, True, True, True]),
        multiplier=np.array([1.0, 100.0, 100.0, 100.0]),
        valuation_date=valuation,
    )


def test_expiry_dates_are_resolved_act365_and_never_negative() -> None:
    ins = instruments()
    assert ins.expiry_years.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert ins.expired().tolist() == [False, False, False, True]
    later = ins.resolved(dt.date(2026, 7, 2))
    assert later.expiry_years[1] == pytest.approx(183 / 365)
    assert later.expired().tolist() == [False, False, True, True]
    assert ins.take(np.array([1], dtype=np.intp)).expiry_years.tolist() == [1.0]


def test_an_option_needs_an_expiry_date() -> None:
    with pytest.raises(ValidationError, match="expiry: option 'O' has no expiry date"):
        Instruments(
            ids=("O",),
            underlying=np.zeros(1, dtype=np.int32),
            kind=np.array([InstrumentKind.CALL], dtype=np.int8),
            strike=np.array([10.0]),
            expiry=np.array(["NaT"], dtype="datetime64[D]"),
            is_american=np.array([True]),
            multiplier=np.array([100.0]),
            valuation_date=VALUATION,
        )


def _market(valuation: dt.date) -> Market:
    one = np.ones(1)
    return Market(valuation, 50.0 * one, 0.3 * one, 0.0 * one, 0.0 * one, 0.02 * one)


def _positions(types: tuple[str, ...] = ()) -> Positions:
    return Positions(
        accounts=("A1", "A2"),
        members=("M1",),
        account_member=np.zeros(2, dtype=np.int32),
        matrix=sp.csr_matrix((2, 4)),
        account_type=types,
    )


def test_a_book_resolves_its_instruments_on_the_market_date() -> None:
    und = Underlyings(("XYZ",), ("equity",), np.array([1e6]), np.array([False]))
    book = Book(und, instruments(), _market(VALUATION), _positions())
    assert book.valuation_date == VALUATION
    with pytest.raises(ValidationError, match="resolved for 2026-01-01, the market is of"):
        Book(und, instruments(), _market(dt.date(2026, 1, 2)), _positions())


def test_accounts_are_house_by_default_and_types_are_checked() -> None:
    assert _positions().account_type == ("house", "house")
    assert _positions(("client", "house")).account_type == ("client", "house")
    with pytest.raises(ValidationError, match="account_type: must be house or client"):
        _positions(("house", "omnibus"))


def test_a_book_restricted_to_some_underlyings_margins_their_holders_as_the_whole_book() -> None:
    """Reproduce margins one account on the book of its underlyings only: every series on
    them, the whole book's scenario set. The margins must be the whole book's to the bit."""
    from marginflow.engine.settings import MarginSettings, build_engine
    from marginflow.sim.synthetic_book import BookSpec

    book = BookSpec(
        members=2, accounts=12, underlyings=6, series=90, sod_positions=80, seed=5
    ).book()
    settings = MarginSettings(lookback=250)
    scenarios = settings.scenarios(book)
    whole = build_engine(book, settings, scenarios=scenarios)
    matrix = book.positions.matrix.tocsr()
    for a, account in enumerate(book.positions.accounts):
        held = matrix.indices[matrix.indptr[a] : matrix.indptr[a + 1]]
        names = {book.underlyings.ids[u] for u in book.instruments.underlying[held]}
        sub = book.restricted(names or {book.underlyings.ids[0]})
        assert set(sub.instruments.ids) == {
            i for i, u in zip(book.instruments.ids, book.instruments.underlying, strict=True)
            if book.underlyings.ids[u] in sub.underlyings.ids
        }  # fmt: skip
        engine = build_engine(sub, settings, scenarios=scenarios)
        assert float(engine.margin[a]) == float(whole.margin[a]), account
