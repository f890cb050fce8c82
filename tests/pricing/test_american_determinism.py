"""Bit-determinism of the American pricer: a value depends on its own inputs alone.

Not on where the arrays sit in memory, nor on the points or options computed beside it.
The engine relies on it (a restored engine against an uninterrupted one, a cached grid
against a fresh one, compared to the bit). With fast-math contraction allowed, LLVM fused
multiply-adds differently in a loop's vectorised body and in its scalar fallback, and which
one ran an element depended on run-time overlap checks of array addresses and on the
element's place in its block: 8 distinct outputs in 60 calls on the same 20,000 points.
"""

from __future__ import annotations

import numpy as np
import pytest

from marginflow.core.batch import OptionBatch
from marginflow.pricing.american import (
    PremiumRows,
    american_price,
    early_exercise_premium,
    premium_rows,
)

_OFFSETS = (1, 3, 5)


def _at_offset(a: np.ndarray, offset: int) -> np.ndarray:
    """A view of a copy of ``a`` starting ``offset`` elements into a larger array."""
    big = np.zeros(a.size + 8, dtype=a.dtype)
    big[offset : offset + a.size] = a
    return big[offset : offset + a.size]


@pytest.fixture(scope="module")
def rows_and_points() -> tuple[PremiumRows, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261207)
    n_rows = 200
    t = rng.integers(7, 365 * 3, n_rows) / 365.0
    t[:8] = rng.uniform(20.0, 60.0, 8)  # long-dated rows: the high-precision scheme
    rows = premium_rows(
        is_call=rng.random(n_rows) < 0.5,
        expiry_years=t,
        rate=rng.uniform(0.0, 0.08, n_rows),
        dividend_yield=rng.uniform(0.0, 0.06, n_rows),
        vol=rng.uniform(0.1, 0.6, n_rows),
    )
    n = 10_000
    return rows, rng.integers(0, n_rows, n), rng.uniform(-0.5, 0.5, n)


@pytest.mark.parametrize("single", [False, True])
def test_premium_same_bits_at_any_offset_and_allocation(
    rows_and_points: tuple[PremiumRows, np.ndarray, np.ndarray], single: bool
) -> None:
    rows, row, m = rows_and_points
    expected = early_exercise_premium(rows, row, m, single=single).tobytes()
    held = []
    for rep in range(30):
        # Different heap layouts between calls move the kernel's work arrays about.
        held.append(np.empty(1 + 97 * rep))
        offset = _OFFSETS[rep % len(_OFFSETS)]
        got = early_exercise_premium(
            rows, _at_offset(row, offset), _at_offset(m, offset), single=single
        )
        assert got.tobytes() == expected, f"call {rep}, offset {offset}"


@pytest.mark.parametrize("single", [False, True])
def test_premium_same_bits_alone_or_among_others(
    rows_and_points: tuple[PremiumRows, np.ndarray, np.ndarray], single: bool
) -> None:
    rows, row, m = rows_and_points
    everything = early_exercise_premium(rows, row, m, single=single)
    # A point alone runs a loop's scalar remainder; among others, mostly its SIMD body.
    for i in range(0, row.size, 97):
        alone = early_exercise_premium(rows, row[i : i + 1], m[i : i + 1], single=single)
        assert alone.tobytes() == everything[i : i + 1].tobytes(), f"point {i}"
    reverse = early_exercise_premium(rows, row[::-1], m[::-1], single=single)
    assert reverse[::-1].tobytes() == everything.tobytes()


def _random_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "is_call": rng.random(n) < 0.5,
        "is_american": np.ones(n, dtype=np.bool_),
        "spot": np.full(n, 100.0),
        "strike": 100.0 * np.exp(rng.uniform(-0.4, 0.4, n)),
        "expiry_years": rng.integers(7, 365 * 3, n) / 365.0,
        "rate": rng.uniform(0.0, 0.08, n),
        "dividend_yield": rng.uniform(0.0, 0.06, n),
        "vol": rng.uniform(0.1, 0.6, n),
    }


def test_american_price_same_bits_at_any_offset_alone_or_among_others() -> None:
    columns = _random_batch(1_500, 7)
    expected = american_price(OptionBatch(**columns))
    for offset in _OFFSETS:
        views = {k: _at_offset(a, offset) for k, a in columns.items()}
        got = american_price(OptionBatch(**views))
        assert got.tobytes() == expected.tobytes(), f"offset {offset}"
    reverse = american_price(OptionBatch(**{k: a[::-1].copy() for k, a in columns.items()}))
    assert reverse[::-1].tobytes() == expected.tobytes()
    for i in range(0, 1_500, 61):
        alone = american_price(OptionBatch(**{k: a[i : i + 1] for k, a in columns.items()}))
        assert alone.tobytes() == expected[i : i + 1].tobytes(), f"option {i}"
