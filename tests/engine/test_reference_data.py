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
from marginflow.core.errors import ConfigurationError, ValidationError
from marginflow.engine.revaluation import RevaluationSettings, revaluation_method
from marginflow.engine.state import MarginEngine
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.scenarios.scenario_set import ScenarioGroup
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


@pytest.mark.parametrize("refusal", ["scenarios", "exact-pricer", "market-shape", "spot-1e308"])
def test_a_refused_roll_leaves_the_engine_on_its_old_day(
    small_case: SmallCase, refusal: str
) -> None:
    """A roll that refuses changes nothing: not the day, the scenarios, the positions in
    series that would have expired, nor a row of the matrix the roll revalues into.
    Refused for: a scenario set without the 10-year look-back the model's APC floor needs;
    a spot within the price bounds whose scenarios fall below the exact American pricer's
    moneyness range (its prices came after the kernel had written its rows); a market
    array of the wrong length (the book refused it after the revaluation); a finite spot
    of 1.7e308 (its P&L was infinite, refused only when the accounts were re-margined)."""
    book, scen = small_case.book, small_case.scenarios
    method = "exact" if refusal == "exact-pricer" else "grid"
    settings = RevaluationSettings(method=revaluation_method(method))
    model = ExpectedShortfallModel(apc="floor-10y")
    engine = MarginEngine(book, scen, model, revaluation=settings)
    before = (engine.matrix.copy(), engine.pnl.copy(), engine.margin.copy())
    day = book.market.valuation_date + dt.timedelta(days=10)
    american = np.flatnonzero(book.instruments.is_american)
    top = american[np.argmax(book.instruments.strike[american])]  # strike 229 here
    u = int(book.instruments.underlying[top])
    spot = book.market.spot.copy()
    m = book.market
    if refusal == "scenarios":
        group = np.where(scen.group == ScenarioGroup.FLOOR, ScenarioGroup.CURRENT, scen.group)
        with pytest.raises(ConfigurationError, match="10-year look-back"):
            engine.roll(day, scenarios=replace(scen, group=group.astype(scen.group.dtype)))
    elif refusal == "exact-pricer":
        spot[u] = 1e-6  # the least price a market may quote: 1/229 million of the strike
        with pytest.raises(ValidationError, match="spot/strike must be in"):
            engine.roll(day, market=replace(m, spot=spot))
    elif refusal == "market-shape":
        with pytest.raises(ValidationError, match="rate"):
            engine.roll(day, market=replace(m, rate=np.append(m.rate, 0.0)))
    else:
        spot[u] = 1.7e308
        with pytest.raises(ValidationError, match=r"spot: '\w+': must be in \[1e-06, 1e\+09\]"):
            engine.roll(day, market=replace(m, spot=spot))
    assert engine.book.market.valuation_date == book.market.valuation_date
    assert engine.scenarios is scen
    assert not any(engine.is_expired(i) for i in book.instruments.ids)
    for was, now in zip(before, (engine.matrix, engine.pnl, engine.margin), strict=True):
        assert np.array_equal(was, now)
    left = engine.roll(day)  # the same engine rolls on as if nothing had been tried
    assert left
    fresh = MarginEngine(book, scen, model, revaluation=settings)
    fresh.roll(day)
    assert np.array_equal(engine.margin, fresh.margin)
