"""A price history must be current, ordered and without long gaps (issue 11)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory


def _history(start: str, n: int, source: str = "h.csv") -> ReturnHistory:
    dates = np.busday_offset(np.datetime64(start, "D"), np.arange(n + 1), roll="forward")
    closes = np.exp(np.cumsum(np.full((n + 1, 1), 0.001), axis=0)) * 100
    return ReturnHistory.from_closes(dates, ("SPX",), closes, source=source)


def test_a_history_ending_years_before_the_valuation_date_is_refused() -> None:
    h = _history("2009-01-02", 300, source="book/history.csv")
    with pytest.raises(
        ValidationError,
        match=r"book/history.csv: last date 2010-\d\d-\d\d is "
        r"\d+ business days before the valuation date 2018-12-31 \(at most 5\)",
    ):
        h.check_current(dt.date(2018, 12, 31))


def test_a_history_up_to_five_business_days_old_is_accepted() -> None:
    h = _history("2018-01-02", 250)
    last = h.dates[-1]
    h.check_current(np.busday_offset(last, 5))
    with pytest.raises(ValidationError, match="6 business days before"):
        h.check_current(np.busday_offset(last, 6))


def test_a_history_starting_after_the_valuation_date_is_refused() -> None:
    h = _history("2019-01-02", 10, source="x.csv")
    with pytest.raises(ValidationError, match=r"x\.csv: starts on 2019-01-0.*after the valuation"):
        h.check_current(dt.date(2018, 12, 31))
    with pytest.raises(ValidationError, match=r"x\.csv: starts on"):
        h.until(np.datetime64("2018-12-31"))


@pytest.mark.parametrize(
    ("dates", "message"),
    [
        (["2018-01-02", "2018-01-02", "2018-01-03"], "2018-01-02 appears twice"),
        (["2018-01-02", "2018-01-04", "2018-01-03"], "2018-01-03 comes after 2018-01-04"),
        (["2018-01-02", "2018-01-03", "2018-02-01"], "business days from 2018-01-03 to 2018-02-01"),
    ],
)
def test_duplicate_out_of_order_and_gapped_dates_are_refused(
    dates: list[str], message: str
) -> None:
    closes = np.array([[100.0], [101.0], [102.0]])
    with pytest.raises(ValidationError, match=message):
        ReturnHistory.from_closes(np.array(dates, dtype="datetime64[D]"), ("SPX",), closes)


def test_a_four_day_exchange_closure_is_accepted() -> None:
    # NYSE after 11 September 2001: closed Tuesday to Friday, reopened Monday 17th.
    dates = np.array(["2001-09-10", "2001-09-17", "2001-09-18"], dtype="datetime64[D]")
    ReturnHistory.from_closes(dates, ("SPX",), np.array([[100.0], [95.0], [94.0]]))
