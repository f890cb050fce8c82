"""The float32 normal CDF of the revaluation kernel against scipy's ``ndtr`` (float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from scipy.special import ndtr

from marginflow.pricing.american import early_exercise_premium, premium_rows
from marginflow.pricing.single import CUT, NCDF32_ERROR, log32, ncdf32


def _elementwise(fn: Callable[[np.float32], np.float32]) -> Callable[[np.ndarray], np.ndarray]:
    """``fn`` over an array, in a loop LLVM vectorises, with a scalar remainder for the last
    elements."""

    @njit
    def loop(x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = fn(x[i])
        return out

    return loop  # type: ignore[no-any-return]


_cdfs = _elementwise(ncdf32)
_logs = _elementwise(log32)


@njit(cache=True)
def _one(x: np.float32) -> np.float32:
    return ncdf32(x)


def test_within_its_stated_error_everywhere() -> None:
    x = np.concatenate(
        [
            np.linspace(-15.0, 15.0, 1_000_001, dtype=np.float32),
            np.random.default_rng(0).uniform(-3.0, 3.0, 1_000_000).astype(np.float32),
        ]
    )
    err = np.abs(_cdfs(x).astype(np.float64) - ndtr(x.astype(np.float64)))
    assert err.max() <= NCDF32_ERROR


@settings(max_examples=300, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=True))
def test_any_float32_is_within_the_error_and_in_0_1(x: float) -> None:
    v = float(_one(np.float32(x)))
    assert 0.0 <= v <= 1.0
    assert abs(v - float(ndtr(x))) <= NCDF32_ERROR


def test_no_subnormal_exact_tails_and_nan() -> None:
    # A subnormal float32 costs a microcode assist per SIMD operation; beyond the cut the
    # tail is exactly 0 or 1, and NaN stays NaN.
    x = np.concatenate(
        [np.linspace(-200.0, 200.0, 400_001, dtype=np.float32), np.float32([-np.inf, np.inf])]
    )
    out = _cdfs(x)
    tiny = np.finfo(np.float32).tiny
    assert not ((out != 0.0) & (np.abs(out) < tiny)).any()
    assert (out[x < -CUT] == 0.0).all()
    assert (out[x > CUT] == 1.0).all()
    assert 0.0 < _one(-CUT) < 1e-37  # N(-12.8) = 8.2e-38, inside the cut
    assert np.isnan(_cdfs(np.float32([np.nan]))).all()


def test_vectorised_loop_and_scalar_give_the_same_bits() -> None:
    x = np.random.default_rng(1).normal(0.0, 4.0, 1_003).astype(np.float32)
    scalar = np.array([_one(v) for v in x], dtype=np.float32)
    assert (_cdfs(x).view(np.int32) == scalar.view(np.int32)).all()


def test_premium_integral_in_float32_within_its_bound() -> None:
    # The integrand's weights sum to about (r + q) T per unit strike, each CDF within
    # NCDF32_ERROR, S/K in the second term: the bound early_exercise_premium states.
    rng = np.random.default_rng(20261208)
    n_rows = 200
    t = rng.integers(7, 365 * 3, n_rows) / 365.0
    t[:8] = rng.uniform(20.0, 60.0, 8)  # long-dated rows: the high-precision scheme
    r, q = rng.uniform(0.0, 0.08, n_rows), rng.uniform(0.0, 0.06, n_rows)
    rows = premium_rows(
        is_call=rng.random(n_rows) < 0.5,
        expiry_years=t,
        rate=r,
        dividend_yield=q,
        vol=rng.uniform(0.1, 0.6, n_rows),
    )
    row, m = rng.integers(0, n_rows, 50_000), rng.uniform(-1.5, 1.5, 50_000)
    double = early_exercise_premium(rows, row, m)
    single = early_exercise_premium(rows, row, m, single=True)
    np.testing.assert_array_equal(np.isnan(single), np.isnan(double))
    horizon = np.minimum(t, rows.solve_t)[row]
    bound = NCDF32_ERROR * (1.0 + np.exp(np.abs(m))) * (r + q)[row] * horizon
    assert np.nanmax(np.abs(single - double) - bound) <= 0.0
    assert np.nanmax(np.abs(single - double)) > 0.0  # the float32 path was taken


def test_log32_within_its_stated_error() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-80.0, 80.0, 1_000_000)).astype(np.float32),
            rng.uniform(0.3, 3.0, 1_000_000).astype(np.float32),
            np.float32([1.0, 2.0, 0.5, np.sqrt(2.0), np.finfo(np.float32).tiny]),
        ]
    )
    got = _logs(x).astype(np.float64)
    ref = np.log(x.astype(np.float64))
    bound = 1.1e-7 + 0.5 * np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert (np.abs(got - ref) <= bound).all()
    assert _logs(np.float32([1.0]))[0] == 0.0
