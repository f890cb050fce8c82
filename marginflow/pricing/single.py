"""The standard normal distribution in single precision (float32), for the revaluation
kernel's European prices.

A scenario P&L is stored as float32, and its tolerance is 1e-3 per unit of underlying at
spot 100 (``docs/margin.md``). The two normal CDFs of a Black-Scholes price are most of
the kernel's arithmetic, and in float32 a SIMD register holds twice the lanes and the
polynomials need half the degree: 0.7 against 2.0-3.4 ns a value on one core (measured
2026-12-08, Intel Xeon, AVX2 registers).

Accuracy (measured on 2 M points uniform in [-14, 14] against ``scipy.special.ndtr`` of
the same float32 input): absolute error < 3e-7, the rounding of about eight float32
operations near N = 1/2 (:data:`NCDF32_ERROR`); beyond :data:`CUT` the tail is exactly 0
or 1. A price S e^{-qT} N(d1) - K e^{-rT} N(d2) is therefore within 3e-7 (S + K), 6e-5 at
spot and strike 100, and a P&L, the difference of two prices, within 1.2e-4: 8 times
inside its tolerance. The arguments d1 and d2 are computed in
float64 and rounded once to float32 (a relative 6e-8: an error of at most
6e-8 · |d| n(d) < 1.5e-8 in N).

As in :mod:`marginflow.pricing.american`, no fast-math flag is set and every fused
multiply-add of the polynomials is written out, so a vectorised loop and its scalar
remainder give the same bits. Inlined into a kernel compiled with contraction (the
revaluation kernel), the caller's flag applies to the remaining multiplies and adds.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from marginflow.pricing.intrinsics import bits_of_f32, f32_of_bits, fma_f32

__all__ = ["CUT", "NCDF32_ERROR", "log32", "ncdf32"]


_fma32, _bits32, _as_float32 = fma_f32, bits_of_f32, f32_of_bits

_F = np.float32
# Globals are frozen into the kernels with their NumPy type: float32 constants keep the
# arithmetic in float32 (a Python float would promote it to float64).
_ZERO, _HALF, _ONE, _TWO, _FOUR = _F(0.0), _F(0.5), _F(1.0), _F(2.0), _F(4.0)
_LOG2E = _F(1.0 / math.log(2.0))
_LN2_HI = _F(0.693359375)  # 9 significant bits: k · _LN2_HI is exact for |k| < 2^15
_LN2_LO = _F(math.log(2.0) - 0.693359375)
_SHIFT = _F(12582912.0)  # 1.5 · 2^23
_SHIFT_BITS = np.int32(0x4B400000)  # the bits of _SHIFT
_EXP_MIN, _EXP_MAX = _F(-86.0), _F(88.0)  # results stay normal floats (no subnormal)
# e^r on |r| <= ln(2)/2, degree 6, least squares at Chebyshev points (relative error
# 2.6e-9), coefficients of r^2 .. r^6 (those of r^0 and r^1 round to 1):
_X2, _X3, _X4 = _F(0.5), _F(0.16666415), _F(0.041666217)
_X5, _X6 = _F(0.008375129), _F(0.0013948581)

CUT = _F(12.8)
"""|x| beyond which the tail is taken as 0: N(-12.8) = 8.2e-38, the last tail that is a
normal float32 (the smallest is 1.2e-38); a subnormal costs a microcode assist per SIMD
operation on Intel CPUs (see :data:`marginflow.pricing.american._TAIL_CUT`)."""

NCDF32_ERROR = 3e-7
"""Bound on |ncdf32(x) - N(x)| for every float32 x (2.7e-7 measured): the tolerance of a
float32-CDF price is NCDF32_ERROR · (S e^{-qT} + K e^{-rT}), and of a P&L the sum of two
prices' (1.2e-4 per unit at spot and strike 100; measured 7.2e-5 on the quick margin
book's 5,000 option rows × 10,000 scenarios)."""

_INV_SQRT2 = _F(1.0 / math.sqrt(2.0))
# erfcx(z) / t with t = 4 / (4 + z), as a polynomial of y = 2t - 1 on t in [0.3065, 1]
# (z up to CUT / sqrt 2), degree 9, least squares at Chebyshev points against
# scipy.special.erfcx (relative error 4.8e-8), coefficients of y^0 .. y^9:
_C0, _C1, _C2, _C3 = _F(0.27399892), _F(0.24413735), _F(0.19330196), _F(0.13520688)
_C4, _C5, _C6, _C7 = _F(0.08272367), _F(0.0435687), _F(0.018940693), _F(0.0064754356)
_C8, _C9 = _F(0.0021303047), _F(-0.0004838865)


@njit(cache=True, inline="always", error_model="numpy")
def _exp32(x: np.float32) -> np.float32:
    """e^x in float32 for x in [-86, 88] (clamped outside; NaN stays NaN), relative error
    about 1e-7 (the polynomial's 2.6e-9 and the roundings)."""
    x = _EXP_MAX if x > _EXP_MAX else x
    x = _EXP_MIN if x < _EXP_MIN else x
    kd = _fma32(x, _LOG2E, _SHIFT)  # k = round(x / ln 2) in the low mantissa bits
    k = kd - _SHIFT
    r = _fma32(-k, _LN2_LO, _fma32(-k, _LN2_HI, x))
    r2 = r * r
    hi = _fma32(_fma32(_X6, r, _X5), r2, _fma32(_X4, r, _X3))
    p = _fma32(_fma32(hi, r, _X2), r2, r + _ONE)
    scale = _as_float32((_bits32(kd) - _SHIFT_BITS + np.int32(127)) << np.int32(23))
    return p * scale  # type: ignore[no-any-return]


@njit(cache=True, inline="always", error_model="numpy")
def ncdf32(x: np.float32) -> np.float32:
    """Standard normal N(x) of a float32, in float32: absolute error < 3e-7; exactly 0 or
    1 beyond :data:`CUT`; NaN stays NaN. Vectorises (no call, no branch)."""
    a = abs(x)
    far = a > CUT
    a = CUT if far else a
    t = _FOUR / (_FOUR + a * _INV_SQRT2)
    y = _TWO * t - _ONE
    y2 = y * y
    y4 = y2 * y2
    q0 = _fma32(_fma32(_C3, y, _C2), y2, _fma32(_C1, y, _C0))
    q1 = _fma32(_fma32(_C7, y, _C6), y2, _fma32(_C5, y, _C4))
    q2 = _fma32(_C9, y, _C8)
    poly = _fma32(q2, y4 * y4, _fma32(q1, y4, q0))
    tail = _HALF * _exp32(-_HALF * a * a) * t * poly
    tail = _ZERO if far else tail
    return tail if x < _ZERO else _ONE - tail


_SQRT2 = _F(math.sqrt(2.0))
_LN2_F = _F(math.log(2.0))
_LN2_F_LO = _F(math.log(2.0) - float(_F(math.log(2.0))))
_MANTISSA = np.int32(0x007FFFFF)
_ONE_BITS = np.int32(0x3F800000)
_BIAS = np.int32(127)
_L3, _L5, _L7, _L9 = _F(1.0 / 3.0), _F(1.0 / 5.0), _F(1.0 / 7.0), _F(1.0 / 9.0)


@njit(cache=True, inline="always", error_model="numpy")
def log32(x: np.float32) -> np.float32:
    """ln(x) in float32 for positive normal x: within 1.1e-7 plus half the float32 spacing
    at the result (measured on 4 M points, ln x in [-80, 80]), vectorises. x = 2^k m with
    m in [sqrt(1/2), sqrt(2)), and ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716:
    terms to s^9 (the first left out, 2 s^11 / 11, is 6.9e-10)."""
    bits = _bits32(x)
    k = _F((bits >> np.int32(23)) - _BIAS)
    m = _as_float32((bits & _MANTISSA) | _ONE_BITS)  # [1, 2)
    big = m > _SQRT2
    m = _HALF * m if big else m
    k = k + _ONE if big else k
    s = (m - _ONE) / (m + _ONE)
    z = s * s
    z2 = z * z
    poly = _fma32(_fma32(z, _L9, _L7), z2 * z, _fma32(_fma32(z, _L5, _L3), z, _ONE))
    return _fma32(k, _LN2_F, _fma32(k, _LN2_F_LO, _TWO * s * poly))  # type: ignore[no-any-return]
