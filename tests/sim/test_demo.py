"""The embedded demo on a book folder: a generated day whose market starts from the book's own
spots, and a day replayed from trade and market files whose streamed margins equal the
batch ``marginflow margin`` of the book at the end of the day."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from marginflow.engine.settings import MarginSettings
from marginflow.io.book import load_book
from marginflow.sim.demo import run_demo
from marginflow.sim.loadgen import book_spots, price_moves
from marginflow.sim.synthetic_book import BookSpec
from tests.sim.day_files import day_files, end_of_day_files

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


def test_a_replayed_day_gives_the_batch_margin_of_the_final_book(tmp_path: Path) -> None:
    book_dir = BOOK.write(tmp_path / "book")
    trades_path, market_path, net, last = day_files(tmp_path, book_dir)
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
    positions, market = end_of_day_files(tmp_path, book_dir, net, last)
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
