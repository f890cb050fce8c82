"""The load generator's market moves: a sweep moves every underlying once per round, vol
ticks follow their price tick on the same underlying, and the random stream is unchanged by
the options that are off."""

from __future__ import annotations

from collections import Counter

from marginflow.sim.loadgen import book_spots, market_moves, price_moves
from marginflow.sim.synthetic_book import BookSpec
from marginflow.stream import events as ev

BOOK = BookSpec(members=2, accounts=10, underlyings=7, series=40, sod_positions=50)


def test_a_sweep_moves_every_underlying_once_per_round() -> None:
    book = BOOK.book()
    moves = list(price_moves(book_spots(book), 3 * 7, sweep=True))
    for k in range(3):
        assert [m.underlying for m in moves[7 * k : 7 * (k + 1)]] == list(book.underlyings.ids)
    # a random walk from the book's own spots, 10 bp steps
    first = {m.underlying: m.price for m in moves[:7]}
    for u, spot in book_spots(book).items():
        assert abs(first[u] / spot - 1) < 0.01


def test_vol_ticks_follow_their_price_tick_and_nothing_changes_when_off() -> None:
    book = BOOK.book()
    groups = list(market_moves(book, 2_000, sweep=True, vol_share=0.25))
    vols = [g for g in groups if len(g) == 2]
    assert 0.2 < len(vols) / len(groups) < 0.3
    for price, vol in vols:
        assert isinstance(price, ev.PriceUpdate)
        assert isinstance(vol, ev.VolUpdate)
        assert vol.underlying == price.underlying
        assert vol.vol is not None
        assert vol.vol > 0
    assert Counter(g[0].underlying for g in groups) == dict.fromkeys(
        book.underlyings.ids, 2_000 // 7
    ) | {u: 2_000 // 7 + 1 for u in book.underlyings.ids[: 2_000 % 7]}
    plain = [g[0] for g in market_moves(book, 50)]
    assert plain == list(price_moves(book_spots(book), 50))
    assert all(len(g) == 1 for g in market_moves(book, 50))
