"""The embedded demo on a book folder: a generated day whose market starts from the book's own
spots, and a day replayed from trade and market files whose streamed margins equal the
batch ``marginflow margin`` of the book at the end of the day."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marginflow.engine.settings import MarginSettings
from marginflow.io.book import load_book
from marginflow.sim.demo import run_demo
from marginflow.sim.loadgen import TradeFlow, book_spots, price_moves, trades
from marginflow.sim.synthetic_book import BookSpec

BOOK = BookSpec(members=3, accounts=30, underlyings=5, series=100, sod_positions=150, seed=4)
SETTINGS = MarginSettings(lookback=250)
EXE = [sys.executable, "-m", "marginflow"]


def test_generated_moves_start_from_the_books_spots() -> None:
    book = BOOK.book()
    spots = book_spots(book)
    first: dict[str, float] = {}
    for move in price_moves(spots, 400, seed=1):
        first.setdefault(move.underlying, move.price)
    assert set(first) == set(spots)
    for u, price in first.items():
        assert price == pytest.approx(spots[u], rel=0.01)  # one 10 bp step away at most


def test_demo_on_a_generated_book(tmp_path: Path) -> None:
    result = run_demo(
        tmp_path / "demo", spec=BOOK, settings=SETTINGS, trades_count=2_000, market_moves=20
    )
    assert result.accounts == BOOK.accounts
    assert len(result.members) == BOOK.members
    assert result.firm == pytest.approx(sum(m for _, m, _ in result.members), rel=1e-12)
    assert result.rejects == 0
    assert (result.book_dir / "positions.csv").is_file()  # the book it margined, to open
    assert load_book(result.book_dir).book.positions.nnz == BOOK.sod_positions


def _iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def _day_files(
    folder: Path, book_dir: Path
) -> tuple[Path, Path, dict[str, float], dict[str, tuple[float, float | None, float | None]]]:
    """A day of trades and market rows (spot everywhere, vol and skew on some rows) on the
    business day after the valuation date; returns the files, the net trades per
    (account|instrument), and each underlying's last (spot, atm_vol, skew)."""
    book = load_book(book_dir).book
    day = dt.datetime.combine(
        book.market.valuation_date + dt.timedelta(days=1), dt.time(9, 30), tzinfo=dt.UTC
    )
    flow = TradeFlow.over(book.positions.accounts, book.instruments.ids, seed=11)
    net: dict[str, float] = {}
    trades_path = folder / "trades.csv"
    with open(trades_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "account", "instrument", "quantity", "price"])
        for k, t in enumerate(trades(flow, 1_500)):
            w.writerow(
                [_iso(day + dt.timedelta(seconds=k)), t.account, t.instrument, t.quantity, t.price]
            )
            key = f"{t.account}|{t.instrument}"
            net[key] = net.get(key, 0.0) + t.quantity
    rng = np.random.default_rng(5)
    last: dict[str, tuple[float, float | None, float | None]] = {}
    market_path = folder / "market.csv"
    with open(market_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "underlying", "spot", "atm_vol", "skew"])
        for k, move in enumerate(price_moves(book_spots(book), 60, seed=3)):
            u = move.underlying
            i = book.underlyings.ids.index(u)
            vol = (
                round(float(book.market.atm_vol[i]) * float(rng.uniform(0.9, 1.1)), 4)
                if k % 3 == 0
                else None
            )
            skew = round(float(book.market.skew[i]) + 0.05, 3) if k % 7 == 0 else None
            when = day + dt.timedelta(seconds=20 * k + 0.5)
            w.writerow(
                [
                    _iso(when),
                    u,
                    repr(move.price),
                    "" if vol is None else vol,
                    "" if skew is None else skew,
                ]
            )
            prev = last.get(u, (0.0, None, None))
            last[u] = (
                move.price,
                vol if vol is not None else prev[1],
                skew if skew is not None else prev[2],
            )
    return trades_path, market_path, net, last


def _end_of_day_files(
    folder: Path,
    book_dir: Path,
    net: dict[str, float],
    last: dict[str, tuple[float, float | None, float | None]],
) -> tuple[Path, Path]:
    """positions.csv and market.csv of the book at the end of the replayed day."""
    book = load_book(book_dir).book
    held: dict[str, float] = {}
    x = book.positions.matrix.tocoo()
    for a, j, q in zip(x.row.tolist(), x.col.tolist(), x.data.tolist(), strict=True):
        held[f"{book.positions.accounts[a]}|{book.instruments.ids[j]}"] = q
    for key, dq in net.items():
        held[key] = held.get(key, 0.0) + dq
    positions = folder / "eod_positions.csv"
    with open(positions, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["account", "instrument", "quantity"])
        for key, q in sorted(held.items()):
            if q:
                w.writerow([*key.split("|"), int(q)])
    market = folder / "eod_market.csv"
    m = book.market
    with open(market, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["underlying", "date", "spot", "atm_vol", "skew", "dividend_yield", "rate"])
        for i, u in enumerate(book.underlyings.ids):
            spot, vol, skew = last.get(u, (float(m.spot[i]), None, None))
            w.writerow([
                u, m.valuation_date.isoformat(), repr(spot),
                repr(float(m.atm_vol[i]) if vol is None else vol),
                repr(float(m.skew[i]) if skew is None else skew),
                repr(float(m.dividend_yield[i])), repr(float(m.rate[i])),
            ])  # fmt: skip
    return positions, market


def test_a_replayed_day_gives_the_batch_margin_of_the_final_book(tmp_path: Path) -> None:
    book_dir = BOOK.write(tmp_path / "book")
    trades_path, market_path, net, last = _day_files(tmp_path, book_dir)
    result = run_demo(
        tmp_path / "run",
        book_dir=book_dir,
        settings=SETTINGS,
        trades_file=trades_path,
        market_file=market_path,
    )
    assert result.rejects == 0
    assert not result.rejected_rows
    assert result.model == "99% ES, 2-day MPOR, APC buffer 25%"  # the day's approved changes
    positions, market = _end_of_day_files(tmp_path, book_dir, net, last)
    batch = subprocess.run(
        [*EXE, "margin", str(book_dir), "--positions", str(positions), "--market", str(market),
         "--lookback", "250", "--apc", "buffer", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert batch.returncode == 0, batch.stderr
    want = {r["account"]: r["margin"] for r in json.loads(batch.stdout)["accounts"]}
    with sqlite3.connect(result.db_url.removeprefix("sqlite:///")) as db:
        got = dict(db.execute("SELECT account, margin FROM mf_account_margin").fetchall())
    assert got, "the stream stored no margin"
    for account, margin in want.items():
        if account not in got:
            assert margin == 0.0, f"{account}: no streamed margin, batch {margin}"
            continue
        # an account's P&L vector is summed afresh from its holdings in instrument order,
        # and a subset's revaluation is bit-identical to the whole book's: equal to the bit
        assert got[account] == margin, account
    assert sorted(got.values()) == sorted(m for a, m in want.items() if a in got)
