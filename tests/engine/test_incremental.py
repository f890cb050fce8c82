"""The incremental engine equals a full recompute after any sequence of changes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.core.errors import ValidationError
from marginflow.engine.state import MarginEngine
from marginflow.margin.es_model import ExpectedShortfallModel
from tests.engine.conftest import SmallCase

# Concentration on (tiny ADV fraction) so the add-on path is exercised too.
MODEL = ExpectedShortfallModel(participation=0.0005)

change = st.one_of(
    st.tuples(
        st.just("trade"),
        st.integers(0, 29),
        st.integers(0, 10_000),
        st.sampled_from([-50.0, -3.0, -1.0, 1.0, 2.0, 25.0, 400.0]),
    ),
    st.tuples(
        st.just("move"),
        st.integers(0, 7),
        st.floats(0.8, 1.25),
        st.floats(0.7, 1.4),
    ),
)


def _assert_same(inc: MarginEngine, full: MarginEngine) -> None:
    # Subset revaluation is bit-identical, and an account's vector is a sum of terms rounded
    # to the P&L quantum, exact in any order: the incremental state is the fresh one, to the
    # bit, whichever way (a trade's term traded in, or a re-sum after a move) it got there.
    assert np.array_equal(inc.matrix, full.matrix)
    assert np.array_equal(inc.pnl, full.pnl)
    assert np.array_equal(inc.margin, full.margin)
    assert np.array_equal(inc.concentration, full.concentration)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=st.lists(change, min_size=1, max_size=12))
def test_random_changes_equal_full_recompute(small_case: SmallCase, changes: list) -> None:  # type: ignore[type-arg]
    b, scen = small_case.book, small_case.scenarios
    eng = MarginEngine(b, scen, MODEL)
    ids = b.instruments.ids
    for kind, a, x, y in changes:
        if kind == "trade":
            eng.apply_trade(b.positions.accounts[a], ids[x % len(ids)], y)
        else:
            u = b.underlyings.ids[a]
            spot = float(eng.book.market.spot[a]) * x
            vol = float(eng.book.market.atm_vol[a]) * y
            eng.apply_market(u, spot=spot, atm_vol=vol)
    full = MarginEngine(eng.current_book(), scen, MODEL)
    _assert_same(eng, full)


def test_trade_touches_one_account_and_move_only_holders(small_case: SmallCase) -> None:
    b, scen = small_case.book, small_case.scenarios
    eng = MarginEngine(b, scen, MODEL)
    before = eng.pnl.copy()
    eng.apply_trade(b.positions.accounts[4], b.instruments.ids[20], 7.0)
    changed = np.flatnonzero(np.any(eng.pnl != before, axis=1))
    assert changed.tolist() == [4]
    before = eng.pnl.copy()
    held = eng.current_book().positions.matrix[:, b.instruments.underlying == 2]
    touched = eng.apply_market(b.underlyings.ids[2], spot=float(b.market.spot[2]) * 1.05)
    changed = set(np.flatnonzero(np.any(eng.pnl != before, axis=1)).tolist())
    assert changed <= set(touched.tolist())
    assert touched.tolist() == np.flatnonzero(held.getnnz(axis=1) > 0).tolist()
    assert len(changed) > 0
    assert (eng.concentration > 0).any()


def test_what_if_leaves_state_unchanged_and_matches_applying(small_case: SmallCase) -> None:
    b, scen = small_case.book, small_case.scenarios
    eng = MarginEngine(b, scen, MODEL)
    acc, trades = (
        b.positions.accounts[9],
        [(b.instruments.ids[30], -12.0), (b.instruments.ids[2], 300.0)],
    )
    margin, pnl = eng.margin.copy(), eng.pnl.copy()
    w = eng.what_if(acc, trades)
    assert np.array_equal(eng.margin, margin)
    assert np.array_equal(eng.pnl, pnl)
    assert w.before == eng.margin[9]
    for instrument, q in trades:
        eng.apply_trade(acc, instrument, q)
    assert w.after == eng.margin[9]  # the state applying them reaches, to the bit
    assert w.change == eng.margin[9] - margin[9]


def test_unknown_ids_are_named(small_case: SmallCase) -> None:
    eng = MarginEngine(small_case.book, small_case.scenarios, MODEL)
    with pytest.raises(ValidationError, match="unknown account 'nope'"):
        eng.apply_trade("nope", small_case.book.instruments.ids[0], 1.0)
    with pytest.raises(ValidationError, match="unknown instrument 'XYZ'"):
        eng.what_if(small_case.book.positions.accounts[0], [("XYZ", 1.0)])
    with pytest.raises(ValidationError, match="spot"):
        eng.apply_market(small_case.book.underlyings.ids[0], spot=-1.0)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    trades=st.lists(
        st.tuples(
            st.integers(0, 29),
            st.integers(0, 10_000),
            st.sampled_from([-400.0, -25.0, -1.0, 1.0, 3.0, 50.0, 400.0]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_batched_trades_equal_one_at_a_time(small_case: SmallCase, trades: list) -> None:  # type: ignore[type-arg]
    b, scen = small_case.book, small_case.scenarios
    ids = b.instruments.ids
    one, batched = MarginEngine(b, scen, MODEL), MarginEngine(b, scen, MODEL)
    changes: dict[str, dict[str, float]] = {}
    for a, j, q in trades:
        account, instrument = b.positions.accounts[a], ids[j % len(ids)]
        one.apply_trade(account, instrument, q)
        per = changes.setdefault(account, {})
        per[instrument] = per.get(instrument, 0.0) + q
    touched = batched.apply_trades(changes)
    assert sorted(touched.tolist()) == sorted({a for a, _, _ in trades})
    _assert_same(batched, one)


def test_concentration_screen_agrees_with_the_add_on(small_case: SmallCase) -> None:
    # The batch screen decides which accounts get an add-on; every account it passes over
    # must have none, and every account with one must have been screened in.
    eng = MarginEngine(small_case.book, small_case.scenarios, MODEL)
    rows = np.arange(len(small_case.book.positions.accounts), dtype=np.intp)
    flagged = set(eng._exposed(rows).tolist())
    for a in rows.tolist():
        addon = eng._concentration_of(eng.pnl[a], eng._positions[a])
        assert (addon > 0) <= (a in flagged)
    assert flagged, "the case must exercise the add-on"


def test_a_bad_batch_changes_nothing(small_case: SmallCase) -> None:
    b = small_case.book
    eng = MarginEngine(b, small_case.scenarios, MODEL)
    pnl, margin = eng.pnl.copy(), eng.margin.copy()
    good, bad = b.positions.accounts[0], b.positions.accounts[1]
    with pytest.raises(ValidationError, match="quantity"):
        eng.apply_trades({good: {b.instruments.ids[0]: 5.0}, bad: {b.instruments.ids[1]: np.nan}})
    with pytest.raises(ValidationError, match="unknown instrument 'XYZ'"):
        eng.apply_trades({good: {b.instruments.ids[0]: 5.0, "XYZ": 1.0}})
    assert np.array_equal(eng.pnl, pnl)
    assert np.array_equal(eng.margin, margin)


@pytest.mark.parametrize(
    ("move", "field"),
    [
        ({"spot": 1.7e308}, "spot"),  # finite, but its P&L is not: refused after the change
        ({"spot": 1e12}, "spot"),
        ({"spot": 1e-9}, "spot"),
        ({"spot": float("nan")}, "spot"),
        ({"spot": float("inf")}, "spot"),
        ({"atm_vol": 1e6}, "vol"),
        ({"atm_vol": -0.2}, "vol"),
        ({"skew": float("nan")}, "skew"),
        ({"skew": 1e308}, "skew"),  # finite: on main it broke the premium grids' layout
        ({"atm_vol": "<script>"}, "vol"),  # a text is shown as given, not a TypeError
        ({"skew": "[/x]"}, "skew"),
    ],
)
def test_a_move_beyond_the_plausibility_bounds_is_refused_and_changes_nothing(
    small_case: SmallCase, move: dict[str, Any], field: str
) -> None:
    """The bounds of :mod:`marginflow.core.limits` (the stream's events use them too): on
    main a spot of 1.7e308 passed the finite-and-positive check, was written into the
    market, and was refused only as an infinite P&L after it; 1e12 and 1e-9 were taken; a
    skew of 1e308 left the engine unable to revalue; a text vol or skew was a TypeError."""
    b = small_case.book
    eng = MarginEngine(b, small_case.scenarios, MODEL)
    state = (eng.book.market.spot.copy(), eng.matrix.copy(), eng.pnl.copy(), eng.margin.copy())
    with pytest.raises(ValidationError, match=f"^{field}: (must be|is not a number)"):
        eng.apply_market(b.underlyings.ids[-1], **move)
    now = (eng.book.market.spot, eng.matrix, eng.pnl, eng.margin)
    for was, is_ in zip(state, now, strict=True):
        assert np.array_equal(was, is_)


def test_several_moves_at_once_equal_one_at_a_time(small_case: SmallCase) -> None:
    b, scen = small_case.book, small_case.scenarios
    one, together = MarginEngine(b, scen, MODEL), MarginEngine(b, scen, MODEL)
    moves = {
        b.underlyings.ids[0]: (float(b.market.spot[0]) * 1.07, None),
        b.underlyings.ids[3]: (None, float(b.market.atm_vol[3]) * 1.3),
        b.underlyings.ids[5]: (float(b.market.spot[5]) * 0.9, float(b.market.atm_vol[5]) * 0.8),
    }
    touched: set[int] = set()
    for u, (spot, vol) in moves.items():
        touched |= set(one.apply_market(u, spot=spot, atm_vol=vol).tolist())
    assert set(together.apply_moves(moves).tolist()) == touched
    _assert_same(together, one)
    with pytest.raises(ValidationError, match="unknown underlying 'NOPE'"):
        together.apply_moves({b.underlyings.ids[1]: (1.0, None), "NOPE": (1.0, None)})
    assert np.array_equal(together.book.market.spot, one.book.market.spot)  # nothing moved


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    trades=st.lists(
        st.tuples(st.integers(0, 29), st.integers(0, 10_000), st.booleans()),
        min_size=1,
        max_size=15,
    ),
    u=st.integers(0, 7),
)
def test_a_move_touches_exactly_the_holders_after_positions_open_and_close(
    small_case: SmallCase, trades: list[tuple[int, int, bool]], u: int
) -> None:
    """Trades that open positions and trades that close them (to exactly zero): a move
    then re-margins the accounts holding some instrument of its underlying, no more."""
    b, scen = small_case.book, small_case.scenarios
    eng = MarginEngine(b, scen, MODEL)
    ids = b.instruments.ids
    for a, x, close in trades:
        account, j = b.positions.accounts[a], x % len(ids)
        held = eng.current_book().positions.matrix[a, j]
        eng.apply_trade(account, ids[j], -held if close and held != 0 else 3.0)
    positions = eng.current_book().positions.matrix[:, b.instruments.underlying == u]
    touched = eng.apply_market(b.underlyings.ids[u], spot=float(b.market.spot[u]) * 1.01)
    assert touched.tolist() == np.flatnonzero(positions.getnnz(axis=1) > 0).tolist()


def test_what_if_refuses_a_quantity_that_is_not_finite(small_case: SmallCase) -> None:
    b = small_case.book
    eng = MarginEngine(b, small_case.scenarios, MODEL)
    with pytest.raises(ValidationError, match=r"quantity.*finite"):
        eng.what_if(b.positions.accounts[0], [(b.instruments.ids[0], float("nan"))])
    # beyond the plausibility bound: refused, not an infinite P&L term
    with pytest.raises(ValidationError, match=r"quantity.*within"):
        eng.what_if(b.positions.accounts[0], [(b.instruments.ids[0], 1e308)])
    with pytest.raises(ValidationError, match=r"quantity.*within"):
        eng.apply_trade(b.positions.accounts[0], b.instruments.ids[0], -1e308)
