"""Sparse positions × P&L matrix: against SciPy's own product, and the rounded terms that
make an account's sum exact whatever the order in which its positions arrived."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.engine.aggregate import (
    PNL_QUANTUM,
    account_pnl,
    add_position_changes,
)


def test_matches_scipy_in_float64() -> None:
    rng = np.random.default_rng(0)
    x = sp.random(50, 300, density=0.05, random_state=1, format="csr") * 100
    m = rng.normal(0, 1000, (300, 257)).astype(np.float32)
    ref = x @ m.astype(np.float64)
    out = account_pnl(x, m)
    # each term rounded to the quantum: at most half a quantum per holding away
    per_account = np.diff(x.indptr)[:, None] * PNL_QUANTUM / 2
    assert np.all(np.abs(out - ref) <= per_account + 1e-9)
    assert np.all(out / PNL_QUANTUM == np.rint(out / PNL_QUANTUM))
    rows = np.array([3, 0, 49])
    assert np.array_equal(account_pnl(x, m, rows=rows), out[rows])


def test_empty_account_is_zero() -> None:
    x = sp.csr_matrix((2, 3))
    assert not account_pnl(x, np.ones((3, 4), dtype=np.float32)).any()


def test_sum_does_not_depend_on_the_order_of_holdings() -> None:
    # the property the engine's incremental path stands on: permuting an account's
    # holdings (so the kernel's groups of four differ) leaves its vector identical
    rng = np.random.default_rng(2)
    n, s = 40, 333
    m = (rng.standard_cauchy((n, s)) * 1e4).astype(np.float32)
    q = rng.normal(0, 1e3, n)
    ref = account_pnl(sp.csr_matrix(q[None, :]), m)
    for seed in range(20):
        order = np.random.default_rng(seed).permutation(n)
        x = sp.csr_matrix((q[order], order, np.array([0, n])), shape=(1, n))
        assert np.array_equal(account_pnl(x, m), ref)


trades = st.lists(
    st.tuples(
        st.integers(0, 5),  # account
        st.integers(0, 11),  # instrument
        st.one_of(
            st.integers(-1000, 1000).map(float),
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        ),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(trades=trades, seed=st.integers(0, 2**32 - 1))
def test_changes_equal_a_fresh_sum_to_the_bit(
    trades: list[tuple[int, int, float]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    m = (rng.normal(0, 1, (12, 97)) * 10.0 ** rng.integers(-3, 6, (12, 1))).astype(np.float32)
    pnl = np.zeros((6, 97))
    held = np.zeros((6, 12))
    for a, j, dq in trades:
        old = held[a, j]
        held[a, j] = old + dq
        add_position_changes(
            pnl,
            np.array([a]),
            np.array([j]),
            np.array([old]),
            np.array([held[a, j]]),
            m,
        )
    assert np.array_equal(pnl, account_pnl(sp.csr_matrix(held), m))


def test_changes_on_one_account_in_one_call() -> None:
    m = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    pnl = np.zeros((2, 4))
    add_position_changes(
        pnl,
        np.array([1, 1, 1]),
        np.array([0, 2, 0]),
        np.array([0.0, 0.0, 5.0]),
        np.array([5.0, -2.0, 3.0]),
        m,
    )
    held = sp.csr_matrix(np.array([[0.0, 0.0, 0.0], [3.0, 0.0, -2.0]]))
    assert np.array_equal(pnl, account_pnl(held, m))
    assert pnl[1] == pytest.approx(3 * m[0] - 2 * m[2], abs=PNL_QUANTUM)
