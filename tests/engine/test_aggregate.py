"""Sparse positions × P&L matrix against SciPy's own product."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from marginflow.engine.aggregate import account_pnl, add_row_differences, add_scaled_row


def test_matches_scipy_in_float64() -> None:
    rng = np.random.default_rng(0)
    x = sp.random(50, 300, density=0.05, random_state=1, format="csr") * 100
    m = rng.normal(0, 1000, (300, 257)).astype(np.float32)
    ref = x @ m.astype(np.float64)
    out = account_pnl(x, m)
    # float64 accumulation of exact float32 × float64 products: only summation order differs.
    assert out == pytest.approx(ref, rel=1e-12, abs=1e-9)
    rows = np.array([3, 0, 49])
    assert np.array_equal(account_pnl(x, m, rows=rows), out[rows])


def test_empty_account_is_zero() -> None:
    x = sp.csr_matrix((2, 3))
    assert not account_pnl(x, np.ones((3, 4), dtype=np.float32)).any()


def test_row_updates() -> None:
    rng = np.random.default_rng(1)
    target = rng.normal(size=(3, 5))
    before = target.copy()
    row = rng.normal(size=5).astype(np.float32)
    add_scaled_row(target[1], 2.0, row)
    assert target[1] == pytest.approx(before[1] + 2.0 * row, rel=1e-15)
    new, old = (
        rng.normal(size=(2, 5)).astype(np.float32),
        rng.normal(size=(2, 5)).astype(np.float32),
    )
    t2 = target.copy()
    add_row_differences(
        t2,
        np.array([0, 2]),
        np.array([1.5, -2.0, 3.0]),
        np.array([0, 1, 1]),
        np.array([0, 2, 3]),
        new,
        old,
    )
    d = new.astype(float) - old
    assert t2[0] == pytest.approx(target[0] + 1.5 * d[0] - 2.0 * d[1], rel=1e-12)
    assert t2[2] == pytest.approx(target[2] + 3.0 * d[1], rel=1e-12)
    assert np.array_equal(t2[1], target[1])
