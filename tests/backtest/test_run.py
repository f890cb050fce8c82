"""The back-test run on a one-equity book whose every number is known: realised P&L by hand,
margins recomputed day by day on fresh engines, breach days exactly the two whose horizon
holds the crash, no look-ahead, and the statistics those series give."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from marginflow.backtest.coverage import coverage_table, worst_accounts
from marginflow.backtest.run import (
    BacktestResult,
    Column,
    ParameterChange,
    PositionPath,
    RealisedVols,
    Window,
    choose_window,
    columns_of,
    run_backtest,
    static_path,
)
from marginflow.backtest.statistics import exceptions, summarise
from marginflow.core.batch import OptionBatch
from marginflow.core.book import Book
from marginflow.core.errors import ConfigurationError
from marginflow.engine.settings import build_engine
from marginflow.pricing.black_scholes import european_price
from marginflow.scenarios.fhs import filtered_historical
from tests.backtest.conftest import (
    CRASH_ROW,
    EXPIRY,
    SETTINGS,
    closes_of,
    drift_returns,
    one_equity_book,
)

FIRST, LAST = 150, 190  # history rows of the window


def dates_of(book: Book) -> np.ndarray:
    """The book's history dates (the test books all carry a history)."""
    assert book.history is not None
    return book.history.dates


def window_of(book: Book) -> Window:
    d = dates_of(book)
    return choose_window(
        book, SETTINGS, start=d[FIRST].astype(dt.date), end=d[LAST].astype(dt.date)
    )


def run(book: Book, columns: list[Column] | None = None, **kw: Any) -> BacktestResult:
    return run_backtest(
        book,
        window=window_of(book),
        settings=SETTINGS,
        columns=columns or [Column("es", 0.99)],
        paths=[static_path(book)],
        **kw,
    )


def test_window_rows_and_dates() -> None:
    book = one_equity_book()
    w = window_of(book)
    assert w.rows.tolist() == list(range(FIRST, LAST + 1))
    last = choose_window(book, SETTINGS, days=50)  # the last 50 that leave the horizon
    assert last.rows.size == 50
    assert last.rows[-1] == len(dates_of(book)) - 1 - SETTINGS.mpor


def window_vol_shock(book: Book, end: int) -> float:
    """The vol shock of the FHS scenario drawn from the window of returns ending at history
    row ``end``, as the scenario generator gives it on the history cut there."""
    hist = book.history
    assert hist is not None
    cut = hist.until(hist.dates[end])
    scen = filtered_historical(cut, horizon_days=2, lookback_days=60, stress=None)
    return float(scen.vol_shock[0, scen.labels.index(f"fhs:{hist.dates[end]}")])  # float32


@pytest.mark.parametrize("vols", ["model", "held"])
def test_realised_pnl_by_hand(vols: RealisedVols) -> None:
    """Stock: the close's change. Call: Black-Scholes at each end's date (aged), at vol 20%
    at the start and, at the end, 20% times one plus the vol shock the scenario generator
    gives a scenario drawn from that very window (``model``) or 20% (``held``)."""
    book = one_equity_book(shares=1_000.0, calls=3.0)
    r = run(book, realised_vols=vols)
    assert r.realised_vols == vols
    closes = closes_of(book)
    dates = dates_of(book)
    m = r.mode("static")
    moved = 0
    for k, t in enumerate(range(FIRST, LAST + 1)):
        stock = 1_000.0 * (closes[t + 2] - closes[t])
        assert m.pnl[k, 0] == pytest.approx(stock, rel=1e-12, abs=1e-9)
        # the call, aged: ACT/365 from each date to expiry, Black-Scholes
        t0 = (EXPIRY - dates[t]).astype(int) / 365.0
        t1 = (EXPIRY - dates[t + 2]).astype(int) / 365.0
        assert t0 - t1 >= 2 / 365.0 - 1e-12  # at least the two days (a weekend ages more)
        shock = window_vol_shock(book, t + 2) if vols == "model" else 0.0
        moved += abs(shock) > 1e-3
        v = european_price(
            OptionBatch.of(
                is_call=[True, True],
                spot=[closes[t], closes[t + 2]],
                strike=[100.0, 100.0],
                expiry_years=[t0, t1],
                rate=[0.01, 0.01],
                dividend_yield=[0.0, 0.0],
                vol=[0.2, 0.2 * (1.0 + shock)],
            )
        )
        assert m.pnl[k, 1] == pytest.approx(3.0 * 100.0 * (v[1] - v[0]), rel=1e-9, abs=1e-9)
    # the crash's windows move vols a lot: the case is not vacuous
    assert (moved > 0) == (vols == "model")


@pytest.mark.parametrize("vols", ["model", "held"])
def test_clean_pnl_holds_times_to_expiry(vols: RealisedVols) -> None:
    """A clean P&L is the move alone: the call at both ends with its time to expiry from
    the day the window starts (no time decay); the stock's is the same as a full one's."""
    book = one_equity_book(shares=1_000.0, calls=3.0)
    full, clean = run(book, realised_vols=vols), run(book, realised_vols=vols, realised_pnl="clean")
    assert clean.realised_pnl == "clean"
    np.testing.assert_array_equal(clean.mode("static").pnl[:, 0], full.mode("static").pnl[:, 0])
    closes, dates = closes_of(book), dates_of(book)
    for k, t in enumerate(range(FIRST, LAST + 1)):
        t0 = (EXPIRY - dates[t]).astype(int) / 365.0
        shock = window_vol_shock(book, t + 2) if vols == "model" else 0.0
        v = european_price(
            OptionBatch.of(
                is_call=[True, True], spot=[closes[t], closes[t + 2]], strike=[100.0, 100.0],
                expiry_years=[t0, t0], rate=[0.01, 0.01], dividend_yield=[0.0, 0.0],
                vol=[0.2, 0.2 * (1.0 + shock)],
            )
        )  # fmt: skip
        assert clean.mode("static").pnl[k, 1] == pytest.approx(
            3.0 * 100.0 * (v[1] - v[0]), rel=1e-9, abs=1e-9
        )
    # a long call pays its time decay in the full P&L only (over the crash's windows the
    # vol map, at a 57-sigma fall, takes its vol so high that it is worth its spot either way)
    c, f = clean.mode("static").pnl[:, 1], full.mode("static").pnl[:, 1]
    assert (c >= f).all()
    assert (c > f).mean() > 0.9


def test_held_vols_lose_a_long_call_more_in_the_crash() -> None:
    """A fall raises implied vols by the vol map: a long call's realised loss over the
    crash's windows is smaller with the vols moved than with them held."""
    book = one_equity_book(shares=0.0, calls=10.0)
    model, held = run(book, realised_vols="model"), run(book, realised_vols="held")
    crash = [CRASH_ROW - 2 - FIRST, CRASH_ROW - 1 - FIRST]
    pm, ph = model.mode("static").pnl[crash, 1], held.mode("static").pnl[crash, 1]
    assert (ph < 0).all()
    assert (pm > ph).all()
    # the margins do not depend on how the realised P&L moves vols
    mm, mh = model.mode("static").margin, held.mode("static").margin
    assert all(np.array_equal(mm[c], mh[c]) for c in mm)


def test_breach_days_are_the_two_before_the_crash() -> None:
    r = run(one_equity_book())
    m = r.mode("static")
    breaches = exceptions(m.pnl[:, 0], m.margin["es@0.99"][:, 0])
    days = [FIRST + k for k in np.flatnonzero(breaches).tolist()]
    assert days == [CRASH_ROW - 2, CRASH_ROW - 1]
    # before the crash every window was a gain: no loss in any scenario, margin 0
    assert (m.margin["es@0.99"][: CRASH_ROW - FIRST, 0] == 0.0).all()
    # after it, the crash is a scenario: the margin covers a 15% fall of 1,000 shares
    after = m.margin["es@0.99"][CRASH_ROW - FIRST :, 0]
    assert (after > 0.1 * 1_000.0 * 85.0).all()


def test_margins_equal_fresh_engines_each_day() -> None:
    """The one engine rolled day to day gives each day's margin as an engine built afresh
    on that day's market and history (cut at the day) does."""
    book = one_equity_book(calls=-5.0)
    r = run(book, columns=[Column("es", 0.99), Column("es", 0.975)])
    m = r.mode("static")
    closes = closes_of(book)
    dates = dates_of(book)
    assert book.history is not None
    for k in (0, 17, CRASH_ROW - FIRST, LAST - FIRST):
        t = FIRST + k
        day = dates[t].astype(dt.date)
        day_book = replace(
            book,
            market=replace(book.market, valuation_date=day, spot=np.array([closes[t]])),
            instruments=book.instruments.resolved(day),
            history=book.history.until(dates[t]),
        )
        for conf in (0.99, 0.975):
            fresh = build_engine(day_book, replace(SETTINGS, confidence=conf))
            key = f"es@{conf:g}"
            np.testing.assert_allclose(m.margin[key][k], fresh.margin, rtol=1e-9, atol=1e-6)


def test_no_look_ahead() -> None:
    """A shock after day d changes nothing of d's margin, to the bit."""
    calm = run(one_equity_book(drift_returns(crash=False)))
    shocked = run(one_equity_book(drift_returns(crash=True)))
    a = calm.mode("static").margin["es@0.99"]
    b = shocked.mode("static").margin["es@0.99"]
    before = CRASH_ROW - FIRST
    # the crash's own day sees the crash: margins from then on differ. The spots of the
    # earlier days are anchored at today's spot, so they differ by the crash's factor: the
    # margin is a loss amount, 0 here before the crash either way
    assert np.array_equal(a[:before], b[:before])
    assert not np.array_equal(a[before:], b[before:])


def test_no_look_ahead_with_losses_before() -> None:
    """Same with a history whose windows lose before the crash: the margins before the
    shock scale with the spot only (the history cut at d is the same returns)."""
    base = drift_returns(crash=False)
    base[::7] = -0.02  # some losing windows before the crash
    shocked = base.copy()
    shocked[CRASH_ROW] = np.log(0.85)
    a = run(one_equity_book(base)).mode("static").margin["es@0.99"][:, 0]
    b = run(one_equity_book(shocked)).mode("static").margin["es@0.99"][:, 0]
    before = CRASH_ROW - FIRST
    assert (a[:before] > 0).all()
    # the closes before the crash are anchored at the last spot: the shocked book's are
    # 1/0.85 × the calm one's, and a stock's margin is proportional to its spot
    factor = np.exp(base[CRASH_ROW] - shocked[CRASH_ROW])
    # the P&L matrix is float32: equal to its 7 digits
    np.testing.assert_allclose(b[:before], a[:before] * factor, rtol=1e-6)


def test_statistics_agree_with_summarise() -> None:
    r = run(one_equity_book(calls=2.0), columns=columns_of(["es", "span", "pm"], [0.99], 0.99))
    rows = coverage_table(r)
    m = r.mode("static")
    for row in rows:
        if row.level == "account":
            a = r.accounts.index(row.name)
            margin, pnl = m.margin[row.column.key][:, a], m.pnl[:, a]
        else:  # one member: firm and member are the sums of both accounts
            margin, pnl = m.margin[row.column.key].sum(axis=1), m.pnl.sum(axis=1)
        assert row.stats == summarise(-pnl > margin, row.column.confidence)
        excess = np.max(-pnl - margin)
        assert row.worst_excess == pytest.approx(max(excess, 0.0))
    acc = next(x for x in rows if x.name == "ACC" and x.column.key == "es@0.99")
    assert acc.stats.breaches == 2
    assert acc.stats.n == LAST - FIRST + 1
    assert acc.stats.n01 == 1
    assert acc.stats.n11 == 1
    assert acc.stats.n10 == 1
    worst = worst_accounts(rows)
    assert worst
    assert worst[0].stats.breaches >= 2


def test_dynamic_path_per_day() -> None:
    """A position path: flat until the crash's day, then the shares: no breach at all."""
    book = one_equity_book()
    n = LAST - FIRST + 1
    flat = book.positions.matrix * 0.0
    held = book.positions.matrix
    k0 = CRASH_ROW - FIRST
    mats = tuple(flat if k < k0 else held for k in range(n))
    r = run_backtest(
        book,
        window=window_of(book),
        settings=SETTINGS,
        columns=[Column("es", 0.99)],
        paths=[static_path(book), PositionPath("dynamic", mats)],
    )
    s, d = r.mode("static"), r.mode("dynamic")
    assert (d.pnl[:k0] == 0).all()
    assert (d.margin["es@0.99"][:k0] == 0).all()
    assert not d.held[:k0].any()
    assert d.held[k0:, 0].all()
    np.testing.assert_allclose(d.pnl[k0:], s.pnl[k0:], rtol=1e-12)
    np.testing.assert_allclose(d.margin["es@0.99"][k0:], s.margin["es@0.99"][k0:], rtol=1e-9)
    assert not exceptions(d.pnl[:, 0], d.margin["es@0.99"][:, 0]).any()


def test_parameter_changes_take_effect_on_their_day() -> None:
    book = one_equity_book(drift_returns(crash=True))
    day = dates_of(book)[CRASH_ROW + 5].astype(dt.date)
    change = ParameterChange(day, "apc", "buffer")
    plain = run(book).mode("static").margin["es@0.99"][:, 0]
    changed = run(book, parameters=[change]).mode("static").margin["es@0.99"][:, 0]
    k = CRASH_ROW + 5 - FIRST
    assert np.array_equal(plain[:k], changed[:k])
    assert (changed[k:] > plain[k:]).all()  # the 25% buffer from that day on
    np.testing.assert_allclose(changed[k:], plain[k:] * 1.25, rtol=1e-9)


def test_refused_parameter_change_is_noted_not_applied() -> None:
    book = one_equity_book()
    day = dates_of(book)[FIRST].astype(dt.date)
    r = run(book, parameters=[ParameterChange(day, "apc", "sideways")])
    assert any("apc=sideways" in n for n in r.notes)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"days": 5_000}, r"5000 days do not fit: the history \(history.csv: 200 returns"),
        ({"start": dt.date(2022, 1, 10)}, r"--start 2022-01-10: its scenarios need 110 returns"),
        ({"end": dt.date(2030, 1, 1)}, r"--end 2030-01-01: its 2-day P&L needs closes after"),
        ({"start": dt.date(2022, 10, 3), "end": dt.date(2022, 9, 1)}, "is after --end"),
        ({"days": 5, "start": dt.date(2022, 10, 3)}, "give one"),
    ],
)
def test_bad_windows_are_one_line(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        choose_window(one_equity_book(), SETTINGS, **kw)
    assert "\n" not in str(info.value)


def test_unknown_model_and_confidence() -> None:
    with pytest.raises(ConfigurationError, match="unknown model 'var'; known: es, span, pm"):
        columns_of(["es", "var"], [], 0.99)
    with pytest.raises(ConfigurationError, match="confidence must be in"):
        columns_of(["es"], [1.5], 0.99)
    cols = columns_of(["es", "span", "es"], [0.99, 0.995, 0.99], 0.99)
    assert [c.key for c in cols] == ["es@0.99", "es@0.995", "span"]
    assert [c.label for c in cols] == ["ES 99%", "ES 99.5%", "SPAN"]


def test_workers_give_the_serial_series_to_the_bit() -> None:
    """The window split across three worker processes (blocks of 14, 14 and 13 days, each
    block's first day on an engine built afresh) gives the serial run's series to the
    bit: static and dynamic positions, several columns, a parameter change in the second
    block and a refused one noted once; progress counts every day."""
    book = one_equity_book(calls=-5.0)
    n = LAST - FIRST + 1
    k0 = CRASH_ROW - FIRST
    mats = tuple(book.positions.matrix * (0.0 if k < k0 else 1.0) for k in range(n))
    d = dates_of(book)
    kw: dict[str, Any] = {
        "window": window_of(book),
        "settings": SETTINGS,
        "columns": columns_of(["es", "span"], [0.99, 0.975], 0.99),
        "paths": [static_path(book), PositionPath("dynamic", mats)],
        "parameters": [
            ParameterChange(d[FIRST + 20].astype(dt.date), "apc", "buffer"),
            ParameterChange(d[FIRST + 2].astype(dt.date), "apc", "sideways"),
        ],
        "fixed": frozenset({"confidence"}),
    }
    serial = run_backtest(book, **kw)
    seen: list[tuple[int, int]] = []
    split = run_backtest(book, workers=3, progress=lambda k, t: seen.append((k, t)), **kw)
    assert np.array_equal(split.days, serial.days)
    assert np.array_equal(split.ends, serial.ends)
    for a, b in zip(serial.modes, split.modes, strict=True):
        assert a.mode == b.mode
        assert a.pnl.tobytes() == b.pnl.tobytes()
        assert np.array_equal(a.held, b.held)
        assert a.margin.keys() == b.margin.keys()
        for key in a.margin:
            assert a.margin[key].tobytes() == b.margin[key].tobytes()
    assert split.notes == serial.notes
    assert len(split.notes) == 1
    assert seen == [(k + 1, n) for k in range(n)]
    with pytest.raises(ConfigurationError, match="workers must be >= 1"):
        run_backtest(book, workers=0, **kw)
