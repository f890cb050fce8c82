"""A trading day as files (trades and market moves on the business day after a book's
valuation date) and the book at its end, for tests that replay a day and compare with the
batch margin of the final book."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np

from marginflow.io.book import load_book
from marginflow.sim.loadgen import TradeFlow, book_spots, price_moves, trades

Last = dict[str, tuple[float, float | None, float | None]]


def _iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def day_files(
    folder: Path, book_dir: Path, *, n_trades: int = 1_500, n_moves: int = 60
) -> tuple[Path, Path, dict[str, float], Last]:
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
        for k, t in enumerate(trades(flow, n_trades)):
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
        for k, move in enumerate(price_moves(book_spots(book), n_moves, seed=3)):
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


def end_of_day_files(
    folder: Path,
    book_dir: Path,
    net: dict[str, float],
    last: Last,
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
