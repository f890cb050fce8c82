"""The discrete ES / VaR definitions, checked against hand computations and a brute-force
reference written straight from the definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.errors import ValidationError
from marginflow.margin.expected_shortfall import tail, tail_stats


def _reference(pnl: np.ndarray, w: np.ndarray, alpha: float) -> tuple[float, float]:
    """ES and VaR straight from the definition: sort losses, walk the weights."""
    loss = -pnl
    order = np.argsort(-loss, kind="stable")
    cum, acc = 0.0, 0.0
    for i in order:
        if cum + w[i] <= alpha * (1 + 1e-12):
            acc += w[i] * loss[i]
            cum += w[i]
            continue
        acc += (alpha - cum) * loss[i]
        return acc / alpha, float(loss[i])
    raise AssertionError("weights do not reach the tail")


def test_whole_k_averages_the_k_worst_and_var_is_the_next() -> None:
    # N = 1,000 at 99%: k = 10, ES = mean of the 10 worst losses, VaR = the 11th worst.
    pnl = -np.arange(1000, dtype=float)  # losses 0..999
    s = tail_stats(pnl, confidence=0.99)
    assert s.es[0] == pytest.approx(np.mean(np.arange(990, 1000)), rel=1e-14)
    assert s.var[0] == 989.0
    assert s.worst[0] == 999


def test_fractional_k_counts_part_of_the_next_scenario() -> None:
    # N = 1,250 at 99%: k = 12.5, ES = (12 worst + 0.5 × 13th) / 12.5, VaR = 13th worst.
    rng = np.random.default_rng(1)
    pnl = rng.normal(0.0, 1000.0, 1250)
    losses = np.sort(-pnl)[::-1]
    expected = (losses[:12].sum() + 0.5 * losses[12]) / 12.5
    s = tail_stats(pnl, confidence=0.99)
    assert s.es[0] == pytest.approx(expected, rel=1e-13)
    assert s.var[0] == losses[12]


def test_hand_example_small() -> None:
    # N = 7 at 80%: k = 1.4 → ES = (L1 + 0.4 L2) / 1.4 = (50 + 0.4 × 30) / 1.4 = 44.2857...
    pnl = np.array([10.0, -30.0, 5.0, -50.0, 0.0, -10.0, 20.0])
    s = tail_stats(pnl, confidence=0.8)
    assert s.es[0] == pytest.approx(62.0 / 1.4, rel=1e-14)
    assert s.var[0] == 30.0


def test_k_below_one_gives_the_worst_loss() -> None:
    pnl = np.array([1.0, -7.0, 3.0, -2.0])  # k = 0.04
    s = tail_stats(pnl, confidence=0.99)
    assert s.es[0] == 7.0
    assert s.var[0] == 7.0


def test_flat_and_tied_rows() -> None:
    # A flat account (all zeros) and heavy ties: no loss, and no slow path.
    s = tail_stats(np.zeros((2, 5000)) + np.array([[0.0], [-3.0]]), confidence=0.99)
    assert s.es == pytest.approx([0.0, 3.0], rel=1e-14, abs=1e-14)
    assert s.var.tolist() == [0.0, 3.0]


def test_all_gains_give_negative_es() -> None:
    # The statistic itself can be negative; the margin model floors it at zero.
    s = tail_stats(np.array([5.0, 6.0, 7.0, 8.0]), confidence=0.5)
    assert s.es[0] == pytest.approx(-5.5)


def test_weighted_stressed_scenarios() -> None:
    # 8 ordinary scenarios at 0.75/8 each, 2 stressed at 0.125 each; α = 0.2:
    # worst is stressed (-100, w .125), then ordinary (-60, w .09375) partly: .075 of it.
    pnl = np.array([-100.0, -60.0, -50.0, 0, 0, 0, 0, 0, 0, -20.0])
    w = np.array([0.125] + [0.75 / 8] * 8 + [0.125])
    s = tail_stats(pnl, confidence=0.8, weights=w)
    expected = (0.125 * 100 + 0.075 * 60) / 0.2
    assert s.es[0] == pytest.approx(expected, rel=1e-14)
    assert s.var[0] == 60.0


def test_include_restricts_the_scenarios() -> None:
    pnl = np.array([-1000.0, -1.0, -2.0, -3.0])
    s = tail_stats(pnl, confidence=0.5, include=np.array([1, 2, 3]))
    # k = 1.5 over {-1,-2,-3}: (3 + 0.5 × 2) / 1.5
    assert s.es[0] == pytest.approx(4.0 / 1.5)


def test_tail_shares_reproduce_es() -> None:
    rng = np.random.default_rng(2)
    pnl = rng.standard_t(3, 2000) * 100
    t = tail(pnl, confidence=0.99)
    assert t.share.sum() == pytest.approx(1.0, rel=1e-12)
    assert -(t.share @ pnl[t.index]) == pytest.approx(tail_stats(pnl, confidence=0.99).es[0])
    assert t.index.size == 21  # k = 20 whole: 20 full shares and a zero-share quantile


def test_rows_and_bad_inputs() -> None:
    pnl = np.vstack([np.arange(10.0), -np.arange(10.0)])
    s = tail_stats(pnl, confidence=0.9, rows=np.array([1]))
    assert s.es[0] == pytest.approx(9.0, rel=1e-14)
    with pytest.raises(ValidationError, match="confidence"):
        tail_stats(pnl, confidence=1.0)
    with pytest.raises(ValidationError, match="weights"):
        tail_stats(pnl, confidence=0.9, weights=np.full(10, 0.2))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 300),
    confidence=st.floats(0.5, 0.999),
    seed=st.integers(0, 2**31),
    weighted=st.booleans(),
    ties=st.booleans(),
)
def test_matches_brute_force_reference(
    n: int, confidence: float, seed: int, weighted: bool, ties: bool
) -> None:
    rng = np.random.default_rng(seed)
    pnl = rng.normal(0, 100, n)
    if ties:
        pnl = np.round(pnl / 50) * 50
    w = rng.uniform(0.2, 1.0, n) if weighted else np.ones(n)
    w /= w.sum()
    es, var = _reference(pnl, w, 1 - confidence)
    s = tail_stats(pnl, confidence=confidence, weights=w if weighted else None)
    # Same arithmetic in a different order: agreement to rounding.
    assert s.es[0] == pytest.approx(es, rel=1e-9, abs=1e-9)
    assert s.var[0] == pytest.approx(var, rel=1e-12, abs=1e-12)
    assert s.es[0] >= s.var[0] - 1e-9  # ES is never below VaR
    assert s.es[0] <= -pnl.min() + 1e-9


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(0.01, 100), shift=st.floats(-1e3, 1e3))
def test_positive_homogeneity_and_translation(seed: int, scale: float, shift: float) -> None:
    pnl = np.random.default_rng(seed).normal(0, 10, 500)
    base = tail_stats(pnl, confidence=0.975).es[0]
    assert tail_stats(pnl * scale, confidence=0.975).es[0] == pytest.approx(base * scale, rel=1e-9)
    assert tail_stats(pnl + shift, confidence=0.975).es[0] == pytest.approx(
        base - shift, rel=1e-9, abs=1e-9
    )


def test_k_whole_despite_rounding_of_one_minus_confidence() -> None:
    # 1 - 0.99 = 0.010000000000000009; N = 100 → k = 1.0000000000000009: still whole.
    pnl = -np.arange(100, dtype=float)
    s = tail_stats(pnl, confidence=0.99)
    assert s.es[0] == pytest.approx(99.0, rel=1e-13)
    assert s.var[0] == 98.0
    assert math.isclose(1 - 0.99, 0.01, rel_tol=1e-14)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_pnl_is_refused_never_skipped(bad: float) -> None:
    # NaN compares false, so a sorting kernel would silently leave it out of the tail
    pnl = np.array([[-5.0, -1.0, 2.0, 3.0], [-100.0, -1.0, 2.0, 3.0]])
    pnl[1, 0] = bad
    with pytest.raises(ValidationError, match=r"pnl: row 1, scenario 0: P&L must be finite"):
        tail_stats(pnl, confidence=0.75)
    with pytest.raises(ValidationError, match=r"row 1, scenario 0"):
        tail_stats(pnl, confidence=0.75, rows=np.array([1], dtype=np.intp))
    assert tail_stats(pnl, confidence=0.75, rows=np.array([0], dtype=np.intp)).es[0] == 5.0
    with pytest.raises(ValidationError, match="P&L must be finite"):
        tail(pnl[1], confidence=0.75)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_pnl_is_refused_among_many_rows(bad: float) -> None:
    # many rows take the parallel tail kernel; the error names the row and scenario
    pnl = np.random.default_rng(3).normal(0.0, 100.0, (64, 500))
    pnl[40, 321] = bad
    with pytest.raises(ValidationError, match=r"pnl: row 40, scenario 321: P&L must be finite"):
        tail_stats(pnl, confidence=0.99)
    ok = tail_stats(pnl, confidence=0.99, rows=np.arange(40))
    assert np.isfinite(ok.es).all()
