"""American options by the Andersen-Lake-Offengenden (ALO) fixed-point method.

Every option is priced as a put with unit strike: a call is a put by put-call symmetry,
``C(S, K, r, q) = P(K, S, q, r)``, and prices are homogeneous of degree one in (S, K), so
``P(S, K, r, q) = K · p(S/K; r, q)``. The unit-strike put ``p`` is (Kim's representation)

    p(x) = p_European(x) + ∫_0^T [r e^{-rt} N(-d-) - q x e^{-qt} N(-d+)] dt,
    d± = (ln(x / B(T-t)) + (r - q) t) / (vol sqrt(t)) ± vol sqrt(t) / 2,

where ``B(τ)`` is the exercise boundary at time to expiry ``τ``. The boundary depends on
(r, q, vol, T) but not on the spot, so one instrument revalued under many spots solves for
it once (:func:`american_price_spots`); with the boundary fixed the price is a smooth
function of the spot.

The boundary is solved as in Andersen, Lake and Offengenden, "High Performance American
Option Pricing" (J. Comp. Finance 2016), and QuantLib's ``QdFpAmericanEngine``:

* collocation on Chebyshev-Lobatto nodes in ``sqrt(τ)``, interpolating
  ``H = ln(B / B(0+))²``, with ``B(0+) = K min(1, r/q)``;
* initial guess from the QD+ approximation (Li 2010) at every node, by Halley's method;
* fixed-point iterations on ``B = K e^{-(r-q)τ} N(B) / D(B)``, the first a partial
  Jacobi-Newton step. ALO give two forms of N/D, FP-A and FP-B.

What we do differently, each choice measured against QuantLib's high-precision scheme on
random options (``tests/pricing/test_american_quantlib.py``):

* Quadrature in an angle: ``t = T sin²φ`` in the premium and ``u = τ cos²φ`` inside the
  iterations, instead of QuantLib's ``t = z²``. It removes the square-root singularities at
  *both* ends (the ``1/sqrt(t)`` of d± at one, the ``sqrt(τ)`` of the boundary at the
  other), so Gauss-Legendre converges geometrically: 128 points do what 2,000 do with
  ``t = z²``.
* FP-A when ``|2(r-q)/vol²| < 8``, FP-B outside. FP-A converges in 2-4 steps where FP-B
  needs 6-10, but it oscillates and diverges when the drift dominates the volatility
  (low vol, long expiry, |r - q| large), where FP-B converges. (QuantLib uses FP-B unless
  ``|r - q| < 0.001``.)
* Anderson (depth one) acceleration after the Jacobi-Newton step, and a stopping rule on
  the change of ``ln B`` (:class:`AloScheme` ``tolerance``) under a cap.
* Options are solved in groups of 32, one SIMD lane per (option, node) or (option, point),
  with exp, log and the normal distribution in plain arithmetic (``_fast_exp``,
  ``_fast_log``, ``_fast_ncdf``; relative errors below 3e-13) so LLVM vectorises the loops.

Regimes, in put space (rates ``r``, ``q`` of the equivalent put):

* ``T == 0``: intrinsic value.
* ``vol · sqrt(T) <= 1e-5``: the deterministic value ``max over t in [0, T] of
  (K e^{-rt} - S e^{-qt})⁺``, exact at zero volatility and within 4e-4 per 100 below
  that threshold.
* ``r <= 0`` and ``q >= r``: early exercise is never optimal; the European price is exact
  (Andersen and Lake, "Fast American Option Pricing: the Double-Boundary Case", 2021,
  table 2).
* ``q < r < 0`` (for a call: ``r < q < 0``): the exercise region lies between two
  boundaries and ALO's single boundary does not apply. These options go to a
  Crank-Nicolson finite-difference solver (``_fd_put_grid``, Richardson-extrapolated in
  time): within 1.3e-4 per 100 of QuantLib's finite differences, ~15 ms per option.
* otherwise (``r > 0``, or ``r == 0 > q``): ALO, floored by the deterministic value.

Known limit: when the volatility is small against the carry, ``vol / (|r - q| sqrt(T))``
below ~0.1 (e.g. vol 1% with r - q = 20% over 5 years; outside the tested range
vol >= 5%, |r - q| <= 12%, T <= 5y, where it is >= 0.19), the integrands approach steps
and the default scheme's error exceeds 1e-3 per 100: measured worst 5e-2 below 0.03 and
2e-3 between 0.03 and 0.1 (about 60 random options per band against QuantLib's high
precision), against 5e-5 above 0.1.

Known limit 2: far outside the tested ranges the 8 default nodes under-resolve the
boundary: vol = 100 (10,000%) is off by 3e-3, a 1,000% dividend yield call by 1.4e-2 per
100; :data:`HIGH_PRECISION_SCHEME` gets both within 1.2e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numba import get_num_threads, njit, prange
from numpy.typing import ArrayLike, NDArray

from marginflow.core.batch import BoolArray, FloatArray, OptionBatch
from marginflow.core.errors import ValidationError
from marginflow.core.limits import MONEYNESS_MAX
from marginflow.pricing.black_scholes import bsm_scalar
from marginflow.pricing.intrinsics import bits_of_f64, f64_of_bits, fma_f64
from marginflow.pricing.single import ncdf32

IntArray = NDArray[np.int64]

__all__ = [
    "DEFAULT_SCHEME",
    "HIGH_PRECISION_SCHEME",
    "QD_PLUS_SCHEME",
    "AloScheme",
    "ExerciseBoundary",
    "american_price",
    "american_price_spots",
    "exercise_boundary",
    "exercise_log_moneyness",
    "perpetual_put",
]


# --------------------------------------------------------------------------------------
# Scheme
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AloScheme:
    """Discretisation of the ALO method.

    Attributes
    ----------
    chebyshev_nodes : int
        Collocation nodes of the exercise boundary in ``sqrt(τ)`` (besides ``τ = 0``).
        Multiples of 8 run fastest: the loops over nodes fill SIMD registers of 8 lanes.
    fixed_point_iterations : int
        Most fixed-point iterations (the first is a partial Jacobi-Newton step). With 0
        the price uses the QD+ boundary itself (see :data:`QD_PLUS_SCHEME`).
    tolerance : float
        Iterations stop once no node's ``ln B`` moves by more than this, weighted by
        ``sqrt(τ_i / T)`` (the nodes nearest expiry settle slowest and weigh least).
    iteration_points : int
        Gauss-Legendre points of each boundary integral inside the iterations.
    premium_points : int
        Gauss-Legendre points of the early-exercise premium integral.
    """

    chebyshev_nodes: int = 8
    fixed_point_iterations: int = 8
    tolerance: float = 1e-5
    iteration_points: int = 6
    premium_points: int = 24

    def __post_init__(self) -> None:
        for name in (
            "chebyshev_nodes",
            "fixed_point_iterations",
            "iteration_points",
            "premium_points",
        ):
            value = getattr(self, name)
            least = 0 if name == "fixed_point_iterations" else 1
            if not isinstance(value, int) or value < least:
                raise ValidationError(name, f"must be an integer >= {least}, got {value!r}")
        if not (isinstance(self.tolerance, float) and self.tolerance >= 0.0):
            raise ValidationError("tolerance", f"must be a float >= 0, got {self.tolerance!r}")


#: Meets 0.001 in price (per 100 of spot) against QuantLib's high-precision scheme on
#: random options with T <= 5y at the best speed measured.
DEFAULT_SCHEME = AloScheme()

#: Converged to about 1e-8 per unit strike (within 4e-6 per 100 of QuantLib's
#: high-precision scheme on random options): for references and for checking the default.
HIGH_PRECISION_SCHEME = AloScheme(
    chebyshev_nodes=32,
    fixed_point_iterations=30,
    tolerance=1e-12,
    iteration_points=32,
    premium_points=64,
)

#: The QD+ approximation alone (Li 2010; no fixed-point iterations) on 8 Chebyshev points,
#: as QuantLib's ``QdPlusAmericanEngine(process, 8, Halley, 1e-10)``: reproduces its
#: values to 1e-11. Off by up to a few cents per 100 on long expiries.
QD_PLUS_SCHEME = AloScheme(
    chebyshev_nodes=7,
    fixed_point_iterations=0,
    tolerance=0.0,
    iteration_points=1,
    premium_points=256,
)


class _Tables(NamedTuple):
    """Scheme constants, independent of the option (all in units of T or τ)."""

    node_s: FloatArray  # τ_i / T at the Chebyshev-Lobatto nodes, i = 0..n (node 0: τ = 0)
    # Per iteration point k of node i, stored at k·n + i-1 (flat loops vectorise):
    fp_s: FloatArray  # τ_i / T
    fp_mu: FloatArray  # m / τ = sin²φ_k (m = τ - u, from the point to the node)
    fp_wt: FloatArray  # weight of ∫_0^τ g du = τ Σ_k fp_wt g(u_k)
    fp_wa: FloatArray  # weight of ∫_0^τ g dm / sqrt(m) = sqrt(τ) Σ_k fp_wa g(u_k)
    fp_interp: FloatArray  # (n+1, l·n): H(u_ik) = Σ_j fp_interp[j, k·n + i-1] H_j
    pr_theta: FloatArray  # t / T = sin²φ_p at the premium points
    pr_wt: FloatArray  # weight of ∫_0^T g dt = T Σ pr_wt g(t_p)
    pr_interp: FloatArray  # (n+1, p): H(T - t_p) = Σ_j pr_interp[j, p] H_j


def _cardinal_matrix(nodes: FloatArray, z: FloatArray) -> FloatArray:
    """Lagrange weights of Chebyshev-Lobatto ``nodes`` at points ``z`` (barycentric form)."""
    n = nodes.size - 1
    w = (-1.0) ** np.arange(n + 1)
    w[0] *= 0.5
    w[-1] *= 0.5
    out = np.zeros((z.size, n + 1))
    for a, za in enumerate(z):
        diff = za - nodes
        hit = np.flatnonzero(np.abs(diff) < 1e-14)
        if hit.size:
            out[a, hit[0]] = 1.0
        else:
            terms = w / diff
            out[a] = terms / terms.sum()
    return out


@lru_cache(maxsize=16)
def _tables(scheme: AloScheme) -> _Tables:
    n, n_pts, p = scheme.chebyshev_nodes, scheme.iteration_points, scheme.premium_points
    z = -np.cos(np.pi * np.arange(n + 1) / n)  # z = 2 sqrt(τ/T) - 1, ascending
    node_s = 0.25 * (1.0 + z) ** 2

    y, w = np.polynomial.legendre.leggauss(n_pts)
    phi = 0.25 * np.pi * (1.0 + y)  # φ ∈ (0, π/2); m = τ sin²φ, u = τ cos²φ
    fp_mu = np.repeat(np.sin(phi) ** 2, n)
    fp_wt = np.repeat(0.25 * np.pi * w * np.sin(2.0 * phi), n)  # dm = τ sin 2φ dφ
    fp_wa = np.repeat(0.25 * np.pi * w * 2.0 * np.cos(phi), n)  # dm/sqrt(m) = 2 sqrt(τ) cos φ dφ
    fp_s = np.tile(node_s[1:], n_pts)
    # u_ik / T = s_i cos²φ_k  ->  z = 2 sqrt(s_i) cos φ_k - 1; point k, node i at k·n + i-1
    z_fp = (2.0 * np.cos(phi)[:, None] * np.sqrt(node_s[None, 1:]) - 1.0).ravel()
    fp_interp = _cardinal_matrix(z, z_fp).T.copy()

    x, wx = np.polynomial.legendre.leggauss(p)
    phi_p = 0.25 * np.pi * (1.0 + x)  # t = T sin²φ, τ = T - t = T cos²φ
    pr_theta = np.sin(phi_p) ** 2
    pr_wt = 0.25 * np.pi * wx * np.sin(2.0 * phi_p)
    pr_interp = _cardinal_matrix(z, 2.0 * np.cos(phi_p) - 1.0).T.copy()
    return _Tables(node_s, fp_s, fp_mu, fp_wt, fp_wa, fp_interp, pr_theta, pr_wt, pr_interp)


# --------------------------------------------------------------------------------------
# Vectorisable elementary functions
# --------------------------------------------------------------------------------------


_bits_as_float = f64_of_bits
_float_bits = bits_of_f64
_fma = fma_f64

# No fast-math flags, not even "contract": with contraction allowed, LLVM fuses a
# multiply and an add into an FMA or not depending on the code around them, and the
# vectorised body of a loop and its scalar fallback came out fused differently. Which of
# the two runs an element is decided at run time by overlap checks on the addresses of
# the arrays (one includes the address a negative index would wrap to), so the same
# inputs gave results differing in the last bits from call to call (measured: 8 distinct
# outputs in 60 calls of early_exercise_premium on 20,000 points). Every operation is now
# rounded as written, so both bodies agree bit for bit; the polynomials that dominate the
# run time use explicit _fma, which both bodies execute alike.
_CONTRACT: set[str] = set()
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_SHIFT = 6755399441055744.0  # 1.5 · 2^52


@njit(cache=True, inline="always")
def _fmax(a: float, b: float) -> float:
    """max as a select. The builtin ``max`` can stay an out-of-line call in large kernels
    (LLVM's inlining budget), and a call in a loop stops its vectorisation."""
    return a if a > b else b


@njit(cache=True, inline="always")
def _fmin(a: float, b: float) -> float:
    """min as a select (see ``_fmax``)."""
    return a if a < b else b


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_exp(x: float) -> float:
    """exp(x), relative error < 1.5e-15 for x in [-708, 709] (clamped outside; NaN gives
    NaN), in plain arithmetic.

    ``math.exp`` is a libm call that LLVM cannot vectorise; this one it can. Polynomials
    are evaluated in Estrin's scheme: short dependency chains matter more than operation
    counts when only one or two SIMD vectors are in flight.
    """
    x = _fmin(709.0, _fmax(-708.0, x))  # in this order NaN stays NaN (a select keeps x)
    # k = round(x / ln 2) by the 1.5·2^52 shift: kd holds k in its low mantissa bits, so
    # the scale 2^k is built with integer adds and shifts. floor and a float-to-int64
    # conversion (which AVX2 lacks: LLVM made it four scalar conversions) are avoided.
    kd = _fma(x, _LOG2E, _SHIFT)
    k = kd - _SHIFT
    r = _fma(-k, _LN2_LO, _fma(-k, _LN2_HI, x))  # |r| <= ln(2)/2
    # Degree-10 polynomial fitted at Chebyshev points of |r| <= ln(2)/2 (relative error
    # 1.1e-15; the Taylor series needs degree 12 for the same).
    r2 = r * r
    r4 = r2 * r2
    q0 = _fma(
        _fma(0.1666666666654875, r, 0.49999999999999994), r2,
        _fma(1.0000000000000075, r, 1.0000000000000002),
    )  # fmt: skip
    q1 = _fma(
        _fma(0.00019841170637531312, r, 0.0013888888943990208), r2,
        _fma(0.00833333338617508, r, 0.041666666666584994),
    )  # fmt: skip
    q2 = _fma(2.763814659092266e-07, r2, _fma(2.7639792518366406e-06, r, 2.480148100945729e-05))
    p: float = _fma(q2, r4 * r4, _fma(q1, r4, q0))
    # bits(kd) = (1075 << 52) + 2^51 + k: shifted by 52, all but k + 1023 overflows away
    scale: float = _bits_as_float((_float_bits(kd) + 1023) << 52)
    return p * scale


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
_ERFC_A = 4.0


# erfcx(z) / t with t = 4 / (4 + z), as a polynomial of y = 2t - 1 (degree 18, fitted at
# Chebyshev points of t ∈ [0, 1] to scipy.special.erfcx; relative error < 2e-14),
# coefficients of y^0 .. y^18:
_ERFCX_C = (
    0.2739989152501273, 0.2441371822701801, 0.19330217556544546, 0.13521345783067684,
    0.08271289699848103, 0.04350273426937359, 0.01909537835146112, 0.006592513652162795,
    0.0015280163907356765, 7.023837789550764e-05, -0.00011377258198469359,
    -4.4199908880905665e-05, -8.868605728769387e-07, 4.710390743263813e-06,
    1.1415633739615357e-06, -3.5197318635554733e-07, -1.8261504784072296e-07,
    1.7147567987791642e-08, 1.5881454075121282e-08,
)  # fmt: skip
_E0, _E1, _E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9 = _ERFCX_C[:10]
_E10, _E11, _E12, _E13, _E14, _E15, _E16, _E17, _E18 = _ERFCX_C[10:]


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _erfcx_poly(y: float) -> float:
    """Σ _ERFCX_C[k] y^k in Estrin's scheme."""
    y2 = y * y
    y4 = y2 * y2
    y8 = y4 * y4
    q0 = _fma(_fma(_E3, y, _E2), y2, _fma(_E1, y, _E0))
    q1 = _fma(_fma(_E7, y, _E6), y2, _fma(_E5, y, _E4))
    q2 = _fma(_fma(_E11, y, _E10), y2, _fma(_E9, y, _E8))
    q3 = _fma(_fma(_E15, y, _E14), y2, _fma(_E13, y, _E12))
    q4 = _fma(_E18, y2, _fma(_E17, y, _E16))
    out: float = _fma(q4, y8 * y8, _fma(_fma(q3, y4, q2), y8, _fma(q1, y4, q0)))
    return out


_TAIL_CUT = 37.0
"""|x| beyond which the normal tail is taken as 0: N(-37) = 5.7e-300, the last tail that
is a normal double with room to spare. Beyond it the true tail is subnormal or underflows,
and a subnormal operand or result costs ~100 cycles per SIMD operation on these CPUs (a
microcode assist): far-from-the-money nodes, common in premium grids, made the premium
integral 2.3 times slower (412 against 183 ns a node on one thread, a back-test day's 5.6 M
nodes). Within the cut every helper's value is as before, bit for bit (a value built from a
density passed on, as ``_ncdf_given_npdf`` takes it, is 0 where that density's own argument
was beyond the cut); beyond it a value moves by less than 1e-299
(on that day's nodes, 285 premiums of 5.6 M moved, by at most 5.4e-306)."""


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _tail_arg(x: float) -> tuple[float, bool]:
    """(|x| clamped to the cut, whether it was beyond it); NaN stays NaN (not beyond)."""
    a = abs(x)
    far = a > _TAIL_CUT
    return (_TAIL_CUT if far else a), far


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_ncdf(x: float) -> float:
    """Standard normal N(x), relative error < 3e-13 for |x| <= 37 (tails included),
    vectorisable; exactly 0 or 1 beyond (:data:`_TAIL_CUT`: no subnormal is made)."""
    a, far = _tail_arg(x)
    t = _ERFC_A / (_ERFC_A + a * _INV_SQRT2)
    tail = 0.5 * _fast_exp(-0.5 * a * a) * t * _erfcx_poly(2.0 * t - 1.0)
    tail = 0.0 if far else tail
    return tail if x < 0.0 else 1.0 - tail


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_npdf(x: float) -> float:
    """Standard normal density n(x), vectorisable; 0 beyond :data:`_TAIL_CUT`."""
    a, far = _tail_arg(x)
    return 0.0 if far else _INV_SQRT_2PI * _fast_exp(-0.5 * a * a)


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_ncdf_npdf(x: float) -> tuple[float, float]:
    """(N(x), n(x)) sharing one exponential (each as :func:`_fast_ncdf`, :func:`_fast_npdf`)."""
    a, far = _tail_arg(x)
    t = _ERFC_A / (_ERFC_A + a * _INV_SQRT2)
    e = 0.0 if far else _fast_exp(-0.5 * a * a)
    tail = 0.5 * e * t * _erfcx_poly(2.0 * t - 1.0)
    return (tail if x < 0.0 else 1.0 - tail), _INV_SQRT_2PI * e


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _ncdf_given_npdf(x: float, pdf: float) -> float:
    """N(x) given the density n(x) (computed from a related one without an exponential);
    0 or 1 beyond :data:`_TAIL_CUT`."""
    a, far = _tail_arg(x)
    t = _ERFC_A / (_ERFC_A + a * _INV_SQRT2)
    tail = 0.0 if far else _SQRT_HALF_PI * pdf * t * _erfcx_poly(2.0 * t - 1.0)
    return tail if x < 0.0 else 1.0 - tail


_SQRT2 = math.sqrt(2.0)
_INV3, _INV5, _INV7, _INV9 = 1.0 / 3.0, 1.0 / 5.0, 1.0 / 7.0, 1.0 / 9.0
_INV11, _INV13, _INV15, _INV17 = 1.0 / 11.0, 1.0 / 13.0, 1.0 / 15.0, 1.0 / 17.0
_LN2 = math.log(2.0)
_EXP_BIAS = _SHIFT + 1023.0  # the shift and the exponent bias


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_log(x: float) -> float:
    """ln(x) for positive normal x, absolute error < 1e-15, in plain arithmetic (vectorises)."""
    bits: int = _float_bits(x)
    # The exponent as a float by the 1.5·2^52 bit trick: AVX2 has no vector int64 to float
    # conversion (LLVM would make it four scalar ones). Exact for any bits (a negative x
    # gives a finite value, as the integer form did).
    e: float = _bits_as_float((bits >> 52) + 0x4338000000000000) - _EXP_BIAS
    m = _bits_as_float((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)  # [1, 2)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    k = e + 1.0 if big else e
    s = (m - 1.0) / (m + 1.0)  # |s| <= 0.1716
    z = s * s
    z2 = z * z
    z4 = z2 * z2
    # 2 atanh(s) = 2 s (1 + z/3 + z²/5 + ...), z = s²: terms to s^17, remainder < 4e-16.
    # The coefficients are multiplied, not divided by: a division is a 2-cycle-a-lane unit
    # that does not pipeline, and four of them had made this log cost as much as a price.
    q0 = _fma(_fma(z, _INV7, _INV5), z2, _fma(z, _INV3, 1.0))
    q1 = _fma(_fma(z, _INV15, _INV13), z2, _fma(z, _INV11, _INV9))
    q2 = _INV17
    out: float = _fma(k, _LN2, 2.0 * s * _fma(q2, z4 * z4, _fma(q1, z4, q0)))
    return out


# --------------------------------------------------------------------------------------
# Regimes of the unit-strike put
# --------------------------------------------------------------------------------------

_EXPIRED = 0
_DETERMINISTIC = 1
_EUROPEAN = 2
_DOUBLE_BOUNDARY = 3
_SINGLE_BOUNDARY = 4

# Below this total volatility the deterministic value is exact to far below a cent.
# Below this total volatility vol sqrt(T) the deterministic value is used: it is a lower
# bound, and the price exceeds it by at most about n(0) vol sqrt(T) max(S, K) (a vega
# bound), 4e-4 per 100 here. Near that limit the boundary is a step the collocation cannot
# follow.
_TINY_TOTAL_VOL = 1e-5
# FP-A where |2(r-q)/vol²| < 8, FP-B outside (see the module docstring).
_FP_A_MAX_OMEGA = 8.0
# QD+ is only the starting point of the iterations: Halley's method stops once no node
# moves by more than _QD_TOL in ln S (the QD+ boundary itself is off by ~1e-2).
_QD_MAX_HALLEY = 16
_QD_TOL = 3e-3


@njit(cache=True, inline="always")
def _regime(r: float, q: float, v: float, t: float) -> int:
    if t <= 0.0:
        return _EXPIRED
    # Early exercise never pays when r <= 0 and q >= r; for 0 < r T <= 1e-12 the premium
    # is below r T K (its integrand is at most r K e^{-rt}): nothing in double precision.
    if r * t <= 1e-12 and q >= r:
        return _EUROPEAN
    if v * math.sqrt(t) <= _TINY_TOTAL_VOL:
        return _DETERMINISTIC
    if q < r < 0.0:
        return _DOUBLE_BOUNDARY
    return _SINGLE_BOUNDARY


@njit(cache=True, inline="always")
def _u(index: int) -> np.uint64:
    """An index known to be >= 0, as unsigned: Numba then drops its wraparound check."""
    return np.uint64(index)


@njit(cache=True, inline="always")
def _intrinsic(is_call: bool, s: float, k: float) -> float:
    return _fmax(s - k, 0.0) if is_call else _fmax(k - s, 0.0)


@njit(cache=True, inline="always")
def _deterministic_put(x: float, r: float, q: float, t: float) -> float:
    """Unit-strike put with zero volatility: max over exercise times of K e^{-rt} - S e^{-qt}."""
    best = max(1.0 - x, math.exp(-r * t) - x * math.exp(-q * t), 0.0)
    if r != q and r * q > 0.0:
        ratio = r / (q * x)
        if ratio > 0.0:
            t_star = math.log(ratio) / (r - q)
            if 0.0 < t_star < t:
                best = max(best, math.exp(-r * t_star) - x * math.exp(-q * t_star))
    return best


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _deterministic_floor(x: float, r: float, q: float, t: float) -> float:
    """``_deterministic_put`` without branches on the data (vectorises): the ALO floor."""
    at_expiry = _fmax(_fmax(1.0 - x, _fast_exp(-r * t) - x * _fast_exp(-q * t)), 0.0)
    # Interior optimum of K e^{-rt} - S e^{-qt} at t* = ln(r / (q x)) / (r - q), if any.
    ratio = r / (q * x) if (r != q and r * q > 0.0) else 1.0
    t_star = _fast_log(ratio) / (r - q) if ratio > 0.0 else -1.0
    t_star = t_star if (0.0 < t_star < t) else 0.0
    return _fmax(at_expiry, _fast_exp(-r * t_star) - x * _fast_exp(-q * t_star))


@njit(cache=True, inline="always")
def _boundary_at_zero(r: float, q: float) -> float:
    """B(0+) / K for a put in the single-boundary regime."""
    return r / q if (q > 0.0 and r < q) else 1.0


# --------------------------------------------------------------------------------------
# The ALO kernel (unit-strike puts, single boundary), a group of options at a time
# --------------------------------------------------------------------------------------
#
# Options are solved in groups of up to _GROUP. Every array below runs over "lanes": one
# lane per (option, node), per (option, iteration point) or per (option, premium point),
# option-major. A single option has only 8 nodes: its node-level steps (QD+, the
# fixed-point map) would fill one SIMD register and wait on latency; a group fills
# several and keeps the pipelines busy. The groups are homogeneous in FP-A / FP-B. Each
# option stops iterating on its own criterion, so its result does not depend on the
# options it is grouped with (prices with groups of 32 equal those with 8 to the bit).
# 32 rather than 8: american_price 0.91x the CPU time on the benchmark batch (median of
# 10 alternated pairs, 100k options, one thread; 16 gave 0.94x).

_GROUP = 32

# Rows of the scratch arrays.
_O_X, _O_R, _O_Q, _O_VOL, _O_T, _O_LNX, _O_QD_ON, _O_FP_ON, _O_GAMMA = range(9)
_N_TAU, _N_R, _N_Q, _N_VOL, _N_LNX, _N_V, _N_INVV, _N_CARRY, _N_RQT = range(9)
_N_W, _N_WPREV, _N_RPREV, _N_WNEW, _N_STEP, _N_SUMN, _N_SUMD = range(9, 16)
_N_QX, _N_QDR, _N_QDQ, _N_QFWD, _N_QALPHA, _N_QBETA, _N_QHALFINVT, _N_WEIGHT = range(16, 24)
_P_H, _P_INVSM, _P_SM, _P_CM, _P_C1, _P_C2, _P_C3 = range(7)
_R_LNX, _R_C0, _R_V, _R_CR, _R_CQ, _R_TERM = range(6)


class _Scratch(NamedTuple):
    """Per-thread work arrays for one group, one 1-D array per row constant above.

    Separate allocations, not rows of one 2-D array: LLVM vectorises a loop over several
    arrays only when it can check at run time that they do not overlap, which it cannot
    do for rows of one allocation.
    """

    opt: tuple[FloatArray, ...]  # 9 × (G,) per option
    nd: tuple[FloatArray, ...]  # 24 × (G·n,) per node
    pt: tuple[FloatArray, ...]  # 7 × (G·n·l,) per iteration point, point-major per option
    pr: tuple[FloatArray, ...]  # 6 × (G·p,) per premium point


@njit(cache=True)
def _rows3(m: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    return np.zeros(m), np.zeros(m), np.zeros(m)


@njit(cache=True)
def _make_scratch(n: int, n_pts: int, n_p: int) -> _Scratch:
    g = _GROUP
    m_n, m_pt, m_pr = g * n, g * n * n_pts, g * n_p
    nd: tuple[FloatArray, ...] = _rows3(m_n) + _rows3(m_n) + _rows3(m_n) + _rows3(m_n)
    nd = nd + _rows3(m_n) + _rows3(m_n) + _rows3(m_n) + _rows3(m_n)
    return _Scratch(
        _rows3(g) + _rows3(g) + _rows3(g),
        nd,
        _rows3(m_pt) + _rows3(m_pt) + (np.zeros(m_pt),),
        _rows3(m_pr) + _rows3(m_pr),
    )


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _group_nodes(size: int, tb_node_s: FloatArray, sc: _Scratch) -> None:
    """Copy option constants to their node lanes; the QD+ starting point."""
    n = tb_node_s.shape[0] - 1
    opt, nd = sc.opt, sc.nd
    for g in range(size):
        t, r, q, vol = opt[_O_T][g], opt[_O_R][g], opt[_O_Q][g], opt[_O_VOL][g]
        ln_x = math.log(_boundary_at_zero(r, q))
        opt[_O_LNX][g] = ln_x
        opt[_O_QD_ON][g] = 1.0
        opt[_O_FP_ON][g] = 1.0
        for i in range(n):
            lane = _u(g * n + i)
            tau = t * tb_node_s[i + 1]
            nd[_N_TAU][lane] = tau
            nd[_N_R][lane] = r
            nd[_N_Q][lane] = q
            nd[_N_VOL][lane] = vol
            nd[_N_LNX][lane] = ln_x
            nd[_N_V][lane] = vol * math.sqrt(tau)
            # Reciprocals and products constant over the iterations, so that the loops
            # that run many times divide as little as they can.
            nd[_N_INVV][lane] = 1.0 / (vol * math.sqrt(tau))
            nd[_N_RQT][lane] = (r - q) * tau
            nd[_N_CARRY][lane] = _fast_exp(-(r - q) * tau)
            # Start near the root: ln(B(0+)/B(τ)) is about vol sqrt(τ) except at small τ.
            nd[_N_QX][lane] = ln_x - vol * math.sqrt(tau)
            nd[_N_WPREV][lane] = 0.0
            # Convergence is measured on w weighted by sqrt(τ_i / T): the nodes nearest
            # expiry settle slowest and weigh least in the premium.
            nd[_N_WEIGHT][lane] = math.sqrt(tb_node_s[i + 1])
            nd[_N_RPREV][lane] = 0.0


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _group_qdplus(size: int, n: int, tol: float, sc: _Scratch) -> None:
    """QD+ exercise boundary (Li 2010) at every node lane, as the initial guess.

    The boundary S* solves ``(1 - dq N(-d+)) S - β (K - S - p(S)) + α Θ(S) / dr = 0``
    (p and Θ the European put and its theta); Halley's method on ln S, into ``_N_QX``.
    """
    lanes = size * n
    nd = sc.nd
    tau_, r_, q_, vol_, v_ = nd[_N_TAU], nd[_N_R], nd[_N_Q], nd[_N_VOL], nd[_N_V]
    x_, dr_, dq_, alpha_dr_, beta_ = nd[_N_QX], nd[_N_QDR], nd[_N_QDQ], nd[_N_QALPHA], nd[_N_QBETA]
    step_, lnx_, inv_v_, rqt_ = nd[_N_STEP], nd[_N_LNX], nd[_N_INVV], nd[_N_RQT]
    half_inv_t_, fwd_ = nd[_N_QHALFINVT], nd[_N_QFWD]
    for lane in range(lanes):
        t, r, q = tau_[lane], r_[lane], q_[lane]
        s2 = vol_[lane] * vol_[lane]
        omega = 2.0 * (r - q) / s2
        dr = _fast_exp(-r * t)
        rt = r * t
        # r / (1 - e^{-rt}), with its series where the difference cancels
        ddr_small = 1.0 / (t * (1.0 - 0.5 * rt * (1.0 - rt / 3.0)))
        ddr = r / (1.0 - dr) if abs(rt) > 1e-5 else ddr_small
        disc = math.sqrt((omega - 1.0) ** 2 + 8.0 * ddr / s2)
        lam = 0.5 * (-(omega - 1.0) - disc)
        lam_p = 2.0 * ddr * ddr / (s2 * disc)
        den = 2.0 * lam + omega - 1.0
        alpha = 2.0 * dr / (s2 * den)
        dr_[lane] = dr
        dq_[lane] = _fast_exp(-q * t)
        fwd_[lane] = _fast_exp((r - q) * t)
        alpha_dr_[lane] = alpha / dr
        beta_[lane] = alpha * (ddr + lam_p / den) - lam
        half_inv_t_[lane] = 0.5 / t
    qd_on = sc.opt[_O_QD_ON]
    for _ in range(_QD_MAX_HALLEY):
        # Options whose nodes have all settled are skipped (their lanes would not move):
        # the group's slowest option no longer costs the others' work.
        for g in range(size):
            if qd_on[g] == 0.0:
                continue
            for i in range(n):
                li = _u(g * n + i)
                r, q, v, inv_v = r_[li], q_[li], v_[li], inv_v_[li]
                dr, dq, a_dr, beta = dr_[li], dq_[li], alpha_dr_[li], beta_[li]
                half_inv_t = half_inv_t_[li]
                s2 = vol_[li] * vol_[li]
                x = x_[li]
                s = _fast_exp(x)
                dp = (x + rqt_[li]) * inv_v + 0.5 * v
                dm = dp - v
                n_dp, pdf = _fast_ncdf_npdf(-dp)
                # n(d-) = n(d+) S e^{-qt} / (K e^{-rt}) (unit strike): no second exponential
                n_dm = _ncdf_given_npdf(-dm, pdf * s * fwd_[li])
                sdq = s * dq
                npv = dr * n_dm - sdq * n_dp
                theta = r * dr * n_dm - q * sdq * n_dp - 0.5 * s2 * sdq * pdf * inv_v
                charm = -dq * (pdf * ((r - q) * inv_v - dm * half_inv_t) + q * n_dp)
                g0 = (1.0 - dq * n_dp) * s - beta * (1.0 - s - npv) + a_dr * theta
                g1 = 1.0 - dq * n_dp + dq * pdf * inv_v + beta * (1.0 - dq * n_dp) + a_dr * charm
                # S γ (γ the gamma) and S² g'': g'' = γ (1 - d+/v + β + α/dr · colour/γ)
                s_gamma = pdf * dq * inv_v
                colour = q + (r - q) * dp * inv_v + (1.0 - dp * dm) * half_inv_t
                s2_g2 = s * s_gamma * ((1.0 - dp * inv_v) + beta + a_dr * colour)
                # Halley in x = ln S: G' = S g', G'' = S g' + S² g''; step G/G' / (1 - G G''/2G'²)
                gx1 = s * g1
                gx2 = gx1 + s2_g2
                step = g0 * gx1 / (gx1 * gx1 - 0.5 * g0 * gx2)
                step = _fmin(_fmax(step, -1.0), 1.0)
                x_[li] = _fmin(x - step, lnx_[li])
                step_[li] = abs(step)
        busy = False
        for g in range(size):
            if qd_on[g] == 0.0:
                continue
            worst = 0.0
            for i in range(n):
                worst = _fmax(worst, step_[_u(g * n + i)])
            if worst < tol:
                qd_on[g] = 0.0
            else:
                busy = True
        if not busy:
            break


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _group_boundary(
    size: int,
    use_a: bool,
    tb_node_s: FloatArray,
    tb_fp_s: FloatArray,
    tb_fp_mu: FloatArray,
    tb_fp_wt: FloatArray,
    tb_fp_wa: FloatArray,
    tb_fp_interp: FloatArray,
    max_iter: int,
    tol: float,
    sc: _Scratch,
) -> None:
    """Exercise boundaries of the group's unit-strike puts, into ``nd[_N_W]``:
    ``w = ln(B(0+) / B(τ_i))`` per node lane (τ_0 = 0, where w = 0, is left out)."""
    n = tb_node_s.shape[0] - 1
    nl = tb_fp_mu.shape[0]
    lanes = size * n
    opt, nd, pt = sc.opt, sc.nd, sc.pt
    _group_nodes(size, tb_node_s, sc)
    # Without iterations the QD+ boundary is the answer: solve it tightly.
    _group_qdplus(size, n, _QD_TOL if max_iter > 0 else 1e-12, sc)
    w = nd[_N_W]
    for lane in range(lanes):
        w[lane] = nd[_N_LNX][lane] - nd[_N_QX][lane]

    # Per-point constants: d-(m, B(τ)/B(u)) = (ln B(τ) - ln B(u)) / (vol sqrt m) + c_m,
    # and the weights of the N and D integrands.
    h, inv_sm, sm_, c_m = pt[_P_H], pt[_P_INVSM], pt[_P_SM], pt[_P_CM]
    c1, c2, c3 = pt[_P_C1], pt[_P_C2], pt[_P_C3]
    for g in range(size):
        r, q, vol, t_exp = opt[_O_R][g], opt[_O_Q][g], opt[_O_VOL][g], opt[_O_T][g]
        rq = r - q
        base = g * nl
        for ik in range(nl):
            m = t_exp * tb_fp_s[ik] * tb_fp_mu[ik]
            sm = vol * math.sqrt(m)
            sm_[_u(base + ik)] = sm
            inv_sm[_u(base + ik)] = 1.0 / sm
            c_m[_u(base + ik)] = rq * m / sm - 0.5 * sm
        if use_a:
            for ik in range(nl):
                t = t_exp * tb_fp_s[ik]
                u = t - t * tb_fp_mu[ik]
                st = math.sqrt(t) / vol
                e_q = q * _fast_exp(q * u)
                c1[_u(base + ik)] = r * _fast_exp(r * u) * tb_fp_wa[ik] * st
                c2[_u(base + ik)] = e_q * tb_fp_wt[ik] * t
                c3[_u(base + ik)] = e_q * tb_fp_wa[ik] * st
        else:
            for ik in range(nl):
                t = t_exp * tb_fp_s[ik]
                u = t - t * tb_fp_mu[ik]
                c1[_u(base + ik)] = r * _fast_exp(r * u) * tb_fp_wt[ik] * t
                c2[_u(base + ik)] = q * _fast_exp(q * u) * tb_fp_wt[ik] * t

    sum_n, sum_d, w_new = nd[_N_SUMN], nd[_N_SUMD], nd[_N_WNEW]
    w_prev, r_prev, weight_ = nd[_N_WPREV], nd[_N_RPREV], nd[_N_WEIGHT]
    v_, inv_v_, lnx_, rqt_, carry_ = nd[_N_V], nd[_N_INVV], nd[_N_LNX], nd[_N_RQT], nd[_N_CARRY]
    fp_on = opt[_O_FP_ON]
    for it in range(max_iter):
        # Options that have converged are skipped (their lanes would not move): the
        # group's slowest option no longer costs the others' work.
        # H at the iteration points (node 0 has H = 0 and drops out). Indices are cast to
        # unsigned where Numba cannot see they are >= 0: it then skips the negative-index
        # wraparound, which made such small loops a quarter of the run time.
        for g in range(size):
            if fp_on[g] == 0.0:
                continue
            base = g * nl
            for ik in range(nl):
                h[_u(base + ik)] = 0.0
            for j in range(n):
                hj = w[_u(g * n + j)] * w[_u(g * n + j)]
                jj = _u(j + 1)
                for ik in range(nl):
                    h[_u(base + ik)] += tb_fp_interp[jj, ik] * hj
        # Integrands, summed over the points of each node: ln(B(τ)/B(u)) = sqrt(H(u)) - w_i.
        # The innermost loop runs over the nodes of one point index k: one SIMD vector.
        for g in range(size):
            if fp_on[g] == 0.0:
                continue
            for i in range(n):
                sum_n[_u(g * n + i)] = 0.0
                sum_d[_u(g * n + i)] = 0.0
            base = g * nl
            for k in range(nl // n):
                for i in range(n):
                    p = _u(base + k * n + i)
                    li = _u(g * n + i)
                    dm = (math.sqrt(_fmax(h[p], 0.0)) - w[li]) * inv_sm[p] + c_m[p]
                    if use_a:
                        cdf_p, pdf_p = _fast_ncdf_npdf(dm + sm_[p])
                        sum_n[li] += c1[p] * _fast_npdf(dm)
                        sum_d[li] += c2[p] * cdf_p + c3[p] * pdf_p
                    else:
                        sum_n[li] += c1[p] * _fast_ncdf(dm)
                        sum_d[li] += c2[p] * _fast_ncdf(dm + sm_[p])
        # Fixed-point map B = K e^{-(r-q)τ} N / D at every node lane.
        first = it == 0
        for g in range(size):
            if fp_on[g] == 0.0:
                continue
            for i in range(n):
                li = _u(g * n + i)
                v, inv_v, carry = v_[li], inv_v_[li], carry_[li]
                ln_b = lnx_[li] - w[li]
                dp = (ln_b + rqt_[li]) * inv_v + 0.5 * v
                dm = dp - v
                cdf_p, pdf_p = _fast_ncdf_npdf(dp)
                # n(d-) = n(d+) B e^{(r-q)τ} (unit strike): no second exponential
                b_fwd = _fast_exp(ln_b + rqt_[li])
                pdf_m = pdf_p * b_fwd
                if use_a:
                    num = pdf_m * inv_v + sum_n[li]
                    den = pdf_p * inv_v + cdf_p + sum_d[li]
                else:
                    num = _ncdf_given_npdf(dm, pdf_m) + sum_n[li]
                    den = cdf_p + sum_d[li]
                f = carry * num / den
                if first:
                    # Partial Jacobi-Newton (derivative of the non-integral terms).
                    b = b_fwd * carry
                    inv_bv = inv_v / b
                    if use_a:
                        d_den = pdf_p * (1.0 - dp * inv_v) * inv_bv
                        d_num = -pdf_m * dm * inv_v * inv_bv
                    else:
                        d_num = pdf_m * inv_bv
                        d_den = pdf_p * inv_bv
                    fd = carry * (d_num / den - d_den * num / (den * den))
                    newton = b - (f - b) / (fd - 1.0)
                    f = newton if newton > 0.0 else f
                w_new[li] = abs(_fast_log(f) - lnx_[li])
        # Anderson (depth one) after the Jacobi-Newton and one plain step.
        busy = False
        for g in range(size):
            if fp_on[g] == 0.0:
                continue
            gamma = 0.0
            if it >= 2:
                num_g = 0.0
                den_g = 0.0
                for i in range(n):
                    li = _u(g * n + i)
                    res = w_new[li] - w[li]
                    d_res = res - r_prev[li]
                    num_g += d_res * res
                    den_g += d_res * d_res
                if den_g > 0.0:
                    gamma = num_g / den_g
            worst = 0.0
            for i in range(n):
                li = _u(g * n + i)
                res = w_new[li] - w[li]
                step = res - gamma * (w[li] - w_prev[li] + res - r_prev[li])
                r_prev[li] = res
                w_prev[li] = w[li]
                w[li] = abs(w[li] + step)
                worst = _fmax(worst, abs(step) * weight_[li])
            if worst < tol:
                fp_on[g] = 0.0
            else:
                busy = True
        if not busy:
            break


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _group_premium_terms(
    size: int,
    n: int,
    tb_pr_theta: FloatArray,
    tb_pr_wt: FloatArray,
    tb_pr_interp: FloatArray,
    sc: _Scratch,
) -> None:
    """Constants of the premium integrand at each premium lane, for any spot x:

    d+ = ln(x) pr[_R_LNX] + pr[_R_C0],  d- = d+ - pr[_R_V],
    premium(x) = Σ_p pr[_R_CR] N(-d-) - x pr[_R_CQ] N(-d+).
    """
    n_p = tb_pr_theta.shape[0]
    opt, w = sc.opt, sc.nd[_N_W]
    c_lnx, c_0, c_v, c_r, c_q = sc.pr[0], sc.pr[1], sc.pr[2], sc.pr[3], sc.pr[4]
    for g in range(size):
        r, q, vol, t_exp = opt[_O_R][g], opt[_O_Q][g], opt[_O_VOL][g], opt[_O_T][g]
        ln_x = opt[_O_LNX][g]
        base = g * n_p
        for p in range(n_p):
            c_0[_u(base + p)] = 0.0
        for j in range(n):
            hj = w[_u(g * n + j)] * w[_u(g * n + j)]
            jj = _u(j + 1)
            for p in range(n_p):
                c_0[_u(base + p)] += tb_pr_interp[jj, p] * hj
        for p in range(n_p):
            ln_b = ln_x - math.sqrt(_fmax(c_0[_u(base + p)], 0.0))
            t = t_exp * tb_pr_theta[p]
            vt = vol * math.sqrt(t)
            c_lnx[_u(base + p)] = 1.0 / vt
            c_0[_u(base + p)] = (-ln_b + (r - q) * t) / vt + 0.5 * vt
            c_v[_u(base + p)] = vt
            c_r[_u(base + p)] = t_exp * tb_pr_wt[p] * r * _fast_exp(-r * t)
            c_q[_u(base + p)] = t_exp * tb_pr_wt[p] * q * _fast_exp(-q * t)


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _group_prices(size: int, n_p: int, sc: _Scratch, out: FloatArray) -> None:
    """Unit-strike American puts of the group at their spots ``opt[_O_X]``."""
    opt, pr = sc.opt, sc.pr
    c_lnx, c_0, c_v, c_r, c_q, term = pr[0], pr[1], pr[2], pr[3], pr[4], pr[5]
    for g in range(size):
        x = opt[_O_X][g]
        lx = math.log(x)
        base = g * n_p
        for pp in range(n_p):
            p = _u(base + pp)
            dp = lx * c_lnx[p] + c_0[p]
            term[p] = c_r[p] * _fast_ncdf(c_v[p] - dp) - x * c_q[p] * _fast_ncdf(-dp)
    for g in range(size):
        premium = 0.0
        for pp in range(n_p):
            premium += term[_u(g * n_p + pp)]
        x, r, q, vol, t = opt[_O_X][g], opt[_O_R][g], opt[_O_Q][g], opt[_O_VOL][g], opt[_O_T][g]
        european = bsm_scalar(False, x, 1.0, t, r, q, vol)
        # Floors: exercising now, and exercising at the best fixed date (worth at least the
        # forward intrinsic value then, by Jensen), bound the price below. The second binds
        # only where the integrands are near steps (vol small against |r - q| T).
        value = _fmax(european + _fmax(premium, 0.0), _deterministic_floor(x, r, q, t))
        out[g] = value if premium == premium else np.nan


@njit(cache=True, inline="always")
def _uses_fp_a(r: float, q: float, vol: float) -> bool:
    return abs(2.0 * (r - q)) < _FP_A_MAX_OMEGA * vol * vol


@njit(cache=True, inline="always")
def _put_space(
    is_call: bool, s: float, k: float, r: float, q: float
) -> tuple[float, float, float, float]:
    """(x, scale, r', q'): the option is ``scale`` unit-strike puts at spot x, rates r', q'."""
    if is_call:
        return k / s, s, q, r
    return s / k, k, r, q


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _closed_form_or_kind(
    is_call: bool, s: float, k: float, t: float, r: float, q: float, v: float
) -> tuple[float, int]:
    """(price, kind): kind 0 with the price for the closed-form regimes, 1 (FP-A) or 2
    (FP-B) for the ALO regime, 3 for the double boundary (price NaN)."""
    x, scale, rr, qq = _put_space(is_call, s, k, r, q)
    regime = _regime(rr, qq, v, t)
    if regime == _SINGLE_BOUNDARY:
        return 0.0, 1 if _uses_fp_a(rr, qq, v) else 2
    # Closed forms in the option's own terms, so they equal the European pricer exactly.
    if regime == _EXPIRED:
        return _intrinsic(is_call, s, k), 0
    if regime == _EUROPEAN:
        # The intrinsic floor binds only where r T <= 1e-12 leaves a premium of that order
        # (a call at q = r > 0 and T ~ 1e-12 is worth its intrinsic value, the European less).
        return max(bsm_scalar(is_call, s, k, t, r, q, v), _intrinsic(is_call, s, k)), 0
    if regime == _DETERMINISTIC:
        # Both the deterministic value and the European price are lower bounds.
        floor = max(bsm_scalar(is_call, s, k, t, r, q, v), _intrinsic(is_call, s, k))
        return max(scale * _deterministic_put(x, rr, qq, t), floor), 0
    return np.nan, 3


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _alo_groups(
    todo: IntArray,
    n_a: int,
    grp_lo: int,
    grp_hi: int,
    is_call: BoolArray,
    s: FloatArray,
    k: FloatArray,
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    tb_node_s: FloatArray,
    tb_fp_s: FloatArray,
    tb_fp_mu: FloatArray,
    tb_fp_wt: FloatArray,
    tb_fp_wa: FloatArray,
    tb_fp_interp: FloatArray,
    tb_pr_theta: FloatArray,
    tb_pr_wt: FloatArray,
    tb_pr_interp: FloatArray,
    max_iter: int,
    tol: float,
    out: FloatArray,
) -> None:
    """ALO prices of groups ``grp_lo .. grp_hi - 1`` of ``todo`` (FP-A options first)."""
    n = tb_node_s.shape[0] - 1
    n_p = tb_pr_theta.shape[0]
    sc = _make_scratch(n, tb_fp_mu.shape[0] // n, n_p)
    prices = np.empty(_GROUP)
    n_groups_a = (n_a + _GROUP - 1) // _GROUP
    for grp in range(grp_lo, grp_hi):
        if grp < n_groups_a:
            lo = grp * _GROUP
            hi = min(lo + _GROUP, n_a)
        else:
            lo = n_a + (grp - n_groups_a) * _GROUP
            hi = min(lo + _GROUP, todo.shape[0])
        size = hi - lo
        for g in range(size):
            i = todo[lo + g]
            x, _, rr, qq = _put_space(is_call[i], s[i], k[i], r[i], q[i])
            sc.opt[_O_X][g] = x
            sc.opt[_O_R][g] = rr
            sc.opt[_O_Q][g] = qq
            sc.opt[_O_VOL][g] = v[i]
            sc.opt[_O_T][g] = t[i]
        _group_boundary(
            size, grp < n_groups_a,
            tb_node_s, tb_fp_s, tb_fp_mu, tb_fp_wt, tb_fp_wa, tb_fp_interp,
            max_iter, tol, sc,
        )  # fmt: skip
        _group_premium_terms(size, n, tb_pr_theta, tb_pr_wt, tb_pr_interp, sc)
        _group_prices(size, n_p, sc, prices)
        for g in range(size):
            i = todo[lo + g]
            # NaN (a boundary that failed to converge) is left for the fallback.
            scaled = (s[i] if is_call[i] else k[i]) * prices[g]
            out[i] = max(scaled, _intrinsic(is_call[i], s[i], k[i])) if scaled == scaled else scaled


@njit(cache=True, parallel=True)
def _american_kernel(
    is_call: BoolArray,
    s: FloatArray,
    k: FloatArray,
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    tb_node_s: FloatArray,
    tb_fp_s: FloatArray,
    tb_fp_mu: FloatArray,
    tb_fp_wt: FloatArray,
    tb_fp_wa: FloatArray,
    tb_fp_interp: FloatArray,
    tb_pr_theta: FloatArray,
    tb_pr_wt: FloatArray,
    tb_pr_interp: FloatArray,
    max_iter: int,
    tol: float,
    n_chunks: int,
    out: FloatArray,
) -> None:
    """Prices every option; NaN where the finite-difference fallback must take over."""
    size = s.shape[0]
    # Pass 1: closed forms; ALO options sorted into FP-A (kind 1) and FP-B (kind 2).
    kind = np.zeros(size, dtype=np.int64)
    for i in prange(size):
        price, kind_i = _closed_form_or_kind(is_call[i], s[i], k[i], t[i], r[i], q[i], v[i])
        out[i] = price
        kind[i] = kind_i
    fp_a = np.flatnonzero(kind == 1)
    todo = np.concatenate((fp_a, np.flatnonzero(kind == 2)))
    n_a = fp_a.shape[0]
    # Pass 2: groups of _GROUP options of one kind; a range of groups per task.
    n_groups = (n_a + _GROUP - 1) // _GROUP + (todo.shape[0] - n_a + _GROUP - 1) // _GROUP
    n_tasks = max(1, min(n_chunks, n_groups))
    for c in prange(n_tasks):
        _alo_groups(
            todo, n_a, c * n_groups // n_tasks, (c + 1) * n_groups // n_tasks,
            is_call, s, k, t, r, q, v,
            tb_node_s, tb_fp_s, tb_fp_mu, tb_fp_wt, tb_fp_wa, tb_fp_interp,
            tb_pr_theta, tb_pr_wt, tb_pr_interp, max_iter, tol, out,
        )  # fmt: skip


def american_price(batch: OptionBatch, *, scheme: AloScheme = DEFAULT_SCHEME) -> FloatArray:
    """American price of every option in ``batch`` (``is_american`` is ignored).

    Per unit of the underlying; rates and yield continuously compounded, vol annualised,
    ``expiry_years`` in years (ACT/365 by convention). See the module docstring for the
    method and for how each regime of (rate, dividend yield) is handled, and
    :func:`_long_dated` for expiries long against the option's time scales.
    """
    check_moneyness(batch.spot, batch.strike)
    out = _kernel_prices(batch, scheme)
    _long_dated(batch, out, scheme)
    return out


def check_moneyness(spot: FloatArray, strike: FloatArray | float) -> None:
    """Refuse spot/strike outside [1/MONEYNESS_MAX, MONEYNESS_MAX] (a ValidationError, not
    the finite-difference grid's SystemError of a ln(S/K) of 900)."""
    with np.errstate(over="ignore", under="ignore"):
        ratio = np.asarray(spot, dtype=np.float64) / strike
    bad = ~((ratio >= 1.0 / MONEYNESS_MAX) & (ratio <= MONEYNESS_MAX))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(
            "spot",
            f"spot/strike must be in [{1.0 / MONEYNESS_MAX:g}, {MONEYNESS_MAX:g}] for an "
            f"American option; index {i} has {float(np.broadcast_to(ratio, bad.shape)[i])!r}",
        )


def _kernel_prices(batch: OptionBatch, scheme: AloScheme) -> FloatArray:
    out = np.empty(len(batch), dtype=np.float64)
    if len(batch) == 0:
        return out
    tb = _tables(scheme)
    _american_kernel(
        batch.is_call, batch.spot, batch.strike, batch.expiry_years,
        batch.rate, batch.dividend_yield, batch.vol,
        tb.node_s, tb.fp_s, tb.fp_mu, tb.fp_wt, tb.fp_wa, tb.fp_interp,
        tb.pr_theta, tb.pr_wt, tb.pr_interp,
        scheme.fixed_point_iterations, scheme.tolerance,
        16 * get_num_threads(), out,
    )  # fmt: skip
    todo = np.flatnonzero(np.isnan(out))
    if todo.size:
        out[todo] = _fd_prices(batch.take(todo))
    return out


# --------------------------------------------------------------------------------------
# Long-dated options: the perpetual limit
# --------------------------------------------------------------------------------------

# Dimensionless length of an option: T · max(vol², |r|, |q|). Up to _LONG the default
# scheme is used as it is (every tested option; its error at 2 is ~6e-5 per 100); beyond,
# the collocation in sqrt(τ) spreads the default's 8 nodes too thin (S = K = 100, r = 5%,
# vol 30%: 23.2123 at 100 years, 18.79 at 10,000, 0 at 10⁶, against the perpetual 23.2147)
# and the high-precision scheme takes over, up to _TRUSTED (measured within 1e-5 of the
# perpetual value there; it drifts by 3e-3 at 3,000 years in the example). Beyond
# _TRUSTED the price is bracketed by rigorous bounds instead (see _long_dated).
_LONG = 2.0
_TRUSTED = 50.0
# Years beyond which the high-precision scheme prices whatever the length: at low vol and
# a high rate (r/σ² of 20-40) the default scheme's error grows past 1e-3 per 100 well
# before T·max(σ², |r|, |q|) reaches _LONG (measured: 2.4e-2 at 9.5 years, 3.8e-2 at 21,
# r 9-15%, vol 5-7%; within 7.4e-4 up to 5 years over 103,000 random puts).
_LONG_YEARS = 5.0


def perpetual_put(x: ArrayLike, r: ArrayLike, q: ArrayLike, vol: ArrayLike) -> FloatArray:
    """Perpetual American put per unit strike at spot ``x`` (= S/K), rate r > 0, yield q.

    Merton (1973), "Theory of Rational Option Pricing", Bell Journal of Economics 4(1),
    141-183, section 8 (q = 0); with a dividend yield as in McDonald and Siegel (1986) or
    Hull, *Options, Futures, and Other Derivatives*, "perpetual American options":

        β = the negative root of ½σ²β(β - 1) + (r - q)β - r = 0,
        x* = β / (β - 1)  (exercise at or below x*),
        P∞(x) = (1 - x*) (x / x*)^β = 1/(1 - β) · ((β - 1)/β · x)^β  for x > x*,
        P∞(x) = 1 - x                                               for x <= x*.

    (q = 0 gives β = -2r/σ², Merton's form.) A perpetual call on (S, K, r, q) is K times
    this put at x = K/S with r and q swapped and scaled by S/K (put-call symmetry).
    """
    x, r, q, v = (np.asarray(a, dtype=np.float64) for a in (x, r, q, vol))
    beta = _perpetual_root(r, q, v)
    x_star = beta / (beta - 1.0)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        value = (1.0 - x_star) * np.exp(beta * (np.log(x) - np.log(x_star)))
    return np.asarray(np.where(x <= x_star, 1.0 - x, value), dtype=np.float64)


def _perpetual_root(r: FloatArray, q: FloatArray, v: FloatArray) -> FloatArray:
    """The negative root β of ½σ²β(β - 1) + (r - q)β - r = 0, without cancellation: with
    b = r - q - σ²/2, (-b - √D) / σ² when b >= 0, else -2r / (|b| + √D) (the same number)."""
    a = 0.5 * v * v
    b = r - q - a
    root = np.sqrt(b * b + 4.0 * a * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(b >= 0.0, (-b - root) / (2.0 * a), -2.0 * r / (np.abs(b) + root))
    return np.asarray(beta, dtype=np.float64)


def _unexercised_bound(x: FloatArray, r: FloatArray, q: FloatArray, v: FloatArray,
                       t: FloatArray) -> FloatArray:  # fmt: skip
    """G(T) with P∞ - G(T) <= P(T) <= P∞, per unit strike (put space, r > 0).

    Lower bound: the perpetual exercise rule (exercise when x first touches x*) followed up
    to T, and nothing if it has not been followed by then, is a strategy of the T-expiry
    option, so P(T) >= P∞ - E[e^{-rτ}(1 - x*) 1{τ > T}] >= P∞ - (1 - x*) e^{-rT} P(τ > T),
    with τ the first passage of ln x (drift μ = r - q - σ²/2, volatility σ) down to ln x*:
    P(τ <= T) = N((-d - μT)/(σ√T)) + e^{-2μd/σ²} N((-d + μT)/(σ√T)), d = ln(x / x*).
    """
    from scipy.special import log_ndtr, ndtr

    a = 0.5 * v * v
    beta = _perpetual_root(r, q, v)
    x_star = beta / (beta - 1.0)
    d = np.maximum(np.log(x) - np.log(x_star), 0.0)
    mu = r - q - a
    sd = v * np.sqrt(t)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        hit = ndtr((-d - mu * t) / sd) + np.exp(
            log_ndtr((-d + mu * t) / sd) - 2.0 * mu * d / (v * v)
        )
        survive = np.clip(1.0 - np.nan_to_num(hit, nan=0.0, posinf=1.0), 0.0, 1.0)
        bound = (1.0 - x_star) * np.exp(-r * t) * survive
    return np.asarray(np.where(d > 0.0, bound, 0.0), dtype=np.float64)


def _long_dated(batch: OptionBatch, out: FloatArray, scheme: AloScheme) -> None:
    """Reprice in place the options long against their time scales (T · max(σ², |r|, |q|)
    above _LONG, or T above _LONG_YEARS; put-space r > 0, single boundary), so that prices
    stay accurate,
    non-decreasing in T and converge to the perpetual value (:func:`perpetual_put`):

    * up to _TRUSTED, the high-precision scheme at T;
    * beyond, the high-precision price at the trusted length (a lower bound: the true price
      does not fall as T grows);
    * either clipped to [P∞ - G(T), P∞] (:func:`_unexercised_bound`), both bounds rigorous
      and non-decreasing in T, so the clip only removes error; G falls like e^{-rT}, so the
      price reaches P∞ to the last digit.
    """
    if scheme.fixed_point_iterations == 0:
        return  # the QD+ preset reproduces an approximation as it is, long-dated or not
    call = batch.is_call
    x = np.where(call, batch.strike / batch.spot, batch.spot / batch.strike)
    scale = np.where(call, batch.spot, batch.strike)
    r = np.where(call, batch.dividend_yield, batch.rate)
    q = np.where(call, batch.rate, batch.dividend_yield)
    v, t = batch.vol, batch.expiry_years
    speed = np.maximum(v * v, np.maximum(np.abs(r), np.abs(q)))
    # r T <= 1e-12 is the pricer's European regime (no premium in double precision).
    long = ((speed * t > _LONG) | (t > _LONG_YEARS)) & (r * t > 1e-12)
    long &= v * np.sqrt(t) > _TINY_TOTAL_VOL
    idx = np.flatnonzero(long)
    if idx.size == 0:
        return
    x, scale, r, q, v, t, speed = (a[idx] for a in (x, scale, r, q, v, t, speed))
    trusted = np.minimum(t, _TRUSTED / speed)
    unit = OptionBatch.of(is_call=False, spot=x, strike=1.0, expiry_years=trusted,
                          rate=r, dividend_yield=q, vol=v)  # fmt: skip
    p = _kernel_prices(unit, HIGH_PRECISION_SCHEME)
    upper = perpetual_put(x, r, q, v)
    lower = upper - _unexercised_bound(x, r, q, v, t)
    p = np.minimum(np.maximum(p, lower), upper)
    out[idx] = np.maximum(scale * p, scale * np.maximum(1.0 - x, 0.0))


def _single_boundary(
    r: float, q: float, vol: float, t: float, scheme: AloScheme
) -> tuple[_Scratch, _Tables]:
    """Solve one option's boundary (a group of one) and its premium constants."""
    tb = _tables(scheme)
    sc = _make_scratch(scheme.chebyshev_nodes, scheme.iteration_points, tb.pr_theta.size)
    sc.opt[_O_R][0], sc.opt[_O_Q][0], sc.opt[_O_VOL][0], sc.opt[_O_T][0] = r, q, vol, t
    _group_boundary(
        1, bool(_uses_fp_a(r, q, vol)),
        tb.node_s, tb.fp_s, tb.fp_mu, tb.fp_wt, tb.fp_wa, tb.fp_interp,
        scheme.fixed_point_iterations, scheme.tolerance, sc,
    )  # fmt: skip
    _group_premium_terms(1, scheme.chebyshev_nodes, tb.pr_theta, tb.pr_wt, tb.pr_interp, sc)
    return sc, tb


# --------------------------------------------------------------------------------------
# Finite differences for the double-boundary regime (q < r < 0 for the put)
# --------------------------------------------------------------------------------------

# Grid of the fallback: about 2,001 points in ln(S/K) over ±(6 vol sqrt(T) + |r-q| T + 0.25)
# around the spot and strike, both on nodes; 200 and 400 time steps combined by Richardson
# extrapolation (the moving exercise boundary leaves the time error first order). Measured
# against the ALO high-precision scheme on single-boundary puts: within 1.2e-4 per 100 of
# strike (1e-3 without the extrapolation); 10-20 ms per option.
_FD_SPACE_POINTS = 2001
_FD_TIME_STEPS = 200
_FD_WIDTH_SIGMAS = 6.0


@njit(cache=True)
def _fd_put_grid(
    r: float, q: float, vol: float, t: float, y_lo: float, h: float, nx: int, nt: int
) -> FloatArray:
    """Unit-strike American put on the grid ``y_j = y_lo + j h`` (y = ln(S/K)).

    Theta scheme in time to expiry: four implicit Euler half-steps (Rannacher), then
    Crank-Nicolson. Each step solves the linear complementarity problem
    ``min(A v - rhs, v - payoff) = 0`` by policy iteration (Howard): rows in the exercise
    set become ``v = payoff``, the tridiagonal system is solved, the set updated, until it
    stops changing (two or three rounds). Unlike projecting on the payoff after the solve,
    this keeps the time error second order, and it handles an exercise region with two
    boundaries. Dirichlet ends: the zero-volatility value far in the money, zero far out.
    """
    a = 0.5 * vol * vol
    b = r - q - a
    lo = a / (h * h) - b / (2.0 * h)
    di = -2.0 * a / (h * h) - r
    up = a / (h * h) + b / (2.0 * h)
    payoff = np.empty(nx)
    for j in range(nx):
        payoff[j] = _fmax(1.0 - math.exp(y_lo + j * h), 0.0)
    v = payoff.copy()
    rhs = np.empty(nx)
    cp = np.empty(nx)
    dp = np.empty(nx)
    exercise = np.zeros(nx, dtype=np.bool_)
    x_lo = math.exp(y_lo)
    dt_full = t / nt
    tau = 0.0
    steps = nt + 2  # the first two full steps are split into four half-steps
    for step in range(steps):
        if step < 4:
            dt, theta = 0.5 * dt_full, 1.0
        else:
            dt, theta = dt_full, 0.5
        tau += dt
        e = (1.0 - theta) * dt
        for j in range(1, nx - 1):
            rhs[j] = v[j] + e * (lo * v[j - 1] + di * v[j] + up * v[j + 1])
        left = _deterministic_put(x_lo, r, q, tau)
        il = -theta * dt * lo
        idi = 1.0 - theta * dt * di
        iu = -theta * dt * up
        for j in range(nx):
            exercise[j] = v[j] <= payoff[j] and payoff[j] > 0.0
        for _ in range(50):
            # Thomas algorithm; exercised rows read v_j = payoff_j.
            cp[0] = 0.0
            dp[0] = left
            for j in range(1, nx - 1):
                if exercise[j]:
                    cp[j] = 0.0
                    dp[j] = payoff[j]
                else:
                    m = idi - il * cp[j - 1]
                    cp[j] = iu / m
                    dp[j] = (rhs[j] - il * dp[j - 1]) / m
            v[nx - 1] = 0.0
            for j in range(nx - 2, 0, -1):
                v[j] = dp[j] - cp[j] * v[j + 1]
            v[0] = left
            # Howard's update: exercise where it beats continuing, keep it where
            # continuing would need a negative source.
            changed = False
            for j in range(1, nx - 1):
                residual = il * v[j - 1] + idi * v[j] + iu * v[j + 1] - rhs[j]
                new = residual > v[j] - payoff[j] if exercise[j] else v[j] < payoff[j]
                if new != exercise[j]:
                    exercise[j] = new
                    changed = True
            if not changed:
                break
    return v


@njit(cache=True)
def _fd_richardson(
    r: float, q: float, vol: float, t: float, y_lo: float, h: float, nx: int
) -> FloatArray:
    """Time-extrapolated grid: 2 V(2N steps) - V(N steps)."""
    coarse = _fd_put_grid(r, q, vol, t, y_lo, h, nx, _FD_TIME_STEPS)
    fine = _fd_put_grid(r, q, vol, t, y_lo, h, nx, 2 * _FD_TIME_STEPS)
    return 2.0 * fine - coarse


@njit(cache=True)
def _fd_half_width(r: float, q: float, vol: float, t: float) -> float:
    return _FD_WIDTH_SIGMAS * vol * math.sqrt(t) + abs(r - q) * t + 0.25


@njit(cache=True, parallel=True)
def _fd_kernel(x: FloatArray, r: FloatArray, q: FloatArray, v: FloatArray, t: FloatArray,
               out: FloatArray) -> None:  # fmt: skip
    for i in prange(x.shape[0]):
        ln_x = math.log(x[i])
        half = _fd_half_width(r[i], q[i], v[i], t[i])
        lo = min(ln_x, 0.0) - half
        h = (max(ln_x, 0.0) + half - lo) / (_FD_SPACE_POINTS - 1)
        # Both the strike (y = 0, the payoff's kink) and the spot on nodes: h divides ln x.
        if abs(ln_x) > 1e-12:
            h = abs(ln_x) / max(1, round(abs(ln_x) / h))
        y_lo = -round(-lo / h) * h
        nx = round((max(ln_x, 0.0) + half - y_lo) / h) + 1
        j = round((ln_x - y_lo) / h)
        out[i] = max(_fd_richardson(r[i], q[i], v[i], t[i], y_lo, h, nx)[j], 1.0 - x[i])


def _fd_prices(batch: OptionBatch) -> FloatArray:
    """Finite-difference American prices (any regime; used for the double boundary)."""
    call = batch.is_call
    x = np.where(call, batch.strike / batch.spot, batch.spot / batch.strike)
    scale = np.where(call, batch.spot, batch.strike)
    r = np.where(call, batch.dividend_yield, batch.rate)
    q = np.where(call, batch.rate, batch.dividend_yield)
    out = np.empty(len(batch))
    _fd_kernel(x, r, q, batch.vol, batch.expiry_years, out)
    return scale * out


# --------------------------------------------------------------------------------------
# One instrument, many spots
# --------------------------------------------------------------------------------------

_SPOT_BLOCK = 256


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_CONTRACT)
def _spots_alo_kernel(
    is_call: bool,
    spots: FloatArray,
    strike: float,
    r: float,
    q: float,
    vol: float,
    t: float,
    c_lnx: FloatArray,
    c_0: FloatArray,
    c_v: FloatArray,
    c_r: FloatArray,
    c_q: FloatArray,
    out: FloatArray,
) -> None:
    """European part plus the premium integral (boundary fixed) at every spot.

    Blocks of spots run in parallel; within a block the loop over spots is innermost, so
    it runs in SIMD registers.
    """
    size = spots.shape[0]
    n_blocks = (size + _SPOT_BLOCK - 1) // _SPOT_BLOCK
    sd = vol * math.sqrt(t)
    df_r = math.exp(-r * t)
    df_q = math.exp(-q * t)
    shift = (r - q) * t / sd + 0.5 * sd
    n_p = c_0.shape[0]
    for b in prange(n_blocks):
        lo = b * _SPOT_BLOCK
        m = min(size, lo + _SPOT_BLOCK) - lo
        x = np.empty(m)
        lx = np.empty(m)
        eu = np.empty(m)
        pr = np.zeros(m)
        for s in range(m):
            x[s] = strike / spots[lo + s] if is_call else spots[lo + s] / strike
        for s in range(m):
            lx[s] = math.log(x[s])
        for s in range(m):
            dp = lx[s] / sd + shift
            eu[s] = df_r * _fast_ncdf(sd - dp) - x[s] * df_q * _fast_ncdf(-dp)
        for p in range(n_p):
            a_l = c_lnx[p]
            a_0 = c_0[p]
            a_v = c_v[p]
            a_r = c_r[p]
            a_q = c_q[p]
            for s in range(m):
                dp = lx[s] * a_l + a_0
                pr[s] += a_r * _fast_ncdf(a_v - dp) - x[s] * a_q * _fast_ncdf(-dp)
        for s in range(m):
            scale = spots[lo + s] if is_call else strike
            floor = _deterministic_floor(x[s], r, q, t)
            value = scale * _fmax(eu[s] + _fmax(pr[s], 0.0), floor)
            intrinsic = _intrinsic(is_call, spots[lo + s], strike)
            out[lo + s] = _fmax(value, intrinsic) if pr[s] == pr[s] else np.nan


@njit(cache=True, parallel=True)
def _spots_closed_form_kernel(
    regime: int,
    is_call: bool,
    spots: FloatArray,
    strike: float,
    r: float,
    q: float,
    vol: float,
    t: float,
    out: FloatArray,
) -> None:
    for i in prange(spots.shape[0]):
        s = spots[i]
        intrinsic = _intrinsic(is_call, s, strike)
        if regime == _EXPIRED:
            out[i] = intrinsic
        else:
            # r and q are put-space rates: swap them back for a call.
            european = bsm_scalar(is_call, s, strike, t, q if is_call else r,
                                  r if is_call else q, vol)  # fmt: skip
            if regime == _DETERMINISTIC:
                x, scale = (strike / s, s) if is_call else (s / strike, strike)
                det = scale * _deterministic_put(x, r, q, t)
                out[i] = max(det, european, intrinsic)
            else:
                out[i] = max(european, intrinsic)


def _scalar(name: str, value: float, *, positive: bool = False, nonnegative: bool = False) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValidationError(name, f"must be finite, got {value!r}")
    if positive and not v > 0.0:
        raise ValidationError(name, f"must be > 0, got {value!r}")
    if nonnegative and not v >= 0.0:
        raise ValidationError(name, f"must be >= 0, got {value!r}")
    return v


def american_price_spots(
    *,
    is_call: bool,
    spots: ArrayLike,
    strike: float,
    expiry_years: float,
    rate: float,
    dividend_yield: float,
    vol: float,
    scheme: AloScheme = DEFAULT_SCHEME,
) -> FloatArray:
    """American price of one option at every spot in ``spots`` (float64[M]).

    The exercise boundary does not depend on the spot: it is solved once, and each spot
    costs only the European price and the premium integral. With the boundary fixed the
    price is a smooth function of the spot, so bumping spots (for delta and gamma by
    finite differences) gives consistent values. Units and conventions as
    :func:`american_price`; the result equals ``american_price`` on a batch of the same
    option at each spot.
    """
    k = _scalar("strike", strike, positive=True)
    t = _scalar("expiry_years", expiry_years, nonnegative=True)
    v = _scalar("vol", vol, nonnegative=True)
    r_in = _scalar("rate", rate)
    q_in = _scalar("dividend_yield", dividend_yield)
    s = np.ascontiguousarray(np.asarray(spots, dtype=np.float64).ravel())
    bad = ~(np.isfinite(s) & (s > 0.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError("spots", f"must be finite and > 0; index {i} is {s[i]!r}")
    check_moneyness(s, k)
    call = bool(is_call)
    r, q = (q_in, r_in) if call else (r_in, q_in)  # put-space rates
    out = np.empty(s.size)
    if s.size == 0:
        return out
    regime = _regime(r, q, v, t)
    if regime in (_EXPIRED, _DETERMINISTIC, _EUROPEAN):
        _spots_closed_form_kernel(regime, call, s, k, r, q, v, t, out)
    elif regime == _DOUBLE_BOUNDARY:
        out[:] = _fd_spots(call, s, k, r, q, v, t)
    else:
        sc, _ = _single_boundary(r, q, v, t, scheme)
        m = scheme.premium_points  # the group's first (only) option
        pc = sc.pr
        _spots_alo_kernel(
            call, s, k, r, q, v, t, pc[0][:m], pc[1][:m], pc[2][:m], pc[3][:m], pc[4][:m], out
        )
        if np.isnan(out).any():  # the boundary failed to converge: finite differences
            out[:] = _fd_spots(call, s, k, r, q, v, t)
    return out


def _fd_spots(
    call: bool, s: FloatArray, k: float, r: float, q: float, v: float, t: float
) -> FloatArray:
    """Double-boundary regime: one finite-difference grid, a C² cubic spline across it."""
    from scipy.interpolate import CubicSpline

    x = k / s if call else s / k
    ln_x = np.log(x)
    half = _fd_half_width(r, q, v, t)
    lo = min(float(ln_x.min()), 0.0) - half
    hi = max(float(ln_x.max()), 0.0) + half
    nx = max(_FD_SPACE_POINTS, int((hi - lo) / (2.0 * half) * _FD_SPACE_POINTS))
    h = (hi - lo) / (nx - 1)
    y_lo = -round(-lo / h) * h  # the strike on a node
    grid = _fd_richardson(r, q, v, t, y_lo, h, nx + 1)
    values = CubicSpline(y_lo + h * np.arange(nx + 1), grid)(ln_x)
    scale = s if call else np.full_like(s, k)
    return np.asarray(scale * np.maximum(values, np.maximum(1.0 - x, 0.0)), dtype=np.float64)


# --------------------------------------------------------------------------------------
# The boundary itself
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExerciseBoundary:
    """Early-exercise boundary of one American option.

    ``spot[i]`` is the critical spot at ``time_to_expiry[i]`` (years, ascending from 0):
    a put is exercised when the spot is at or below it, a call when at or above it. Both
    arrays are empty when early exercise is never optimal (``regime == "european"``) and
    in the regimes where the single boundary does not apply (``"double_boundary"``, with
    an exercise region between two boundaries; ``"expired"``; ``"deterministic"``).
    """

    is_call: bool
    strike: float
    expiry_years: float
    regime: str
    time_to_expiry: FloatArray
    spot: FloatArray
    _h: FloatArray
    _ln_xmax: float

    def at(self, time_to_expiry: ArrayLike) -> FloatArray:
        """Critical spot at any times to expiry in [0, expiry_years] (Chebyshev
        interpolation of the collocation nodes, as the pricer uses it)."""
        if self.regime != "single_boundary":
            raise ValidationError("regime", f"no single exercise boundary ({self.regime})")
        tau = np.clip(np.asarray(time_to_expiry, dtype=np.float64), 0.0, self.expiry_years)
        n = self._h.size - 1
        nodes = -np.cos(np.pi * np.arange(n + 1) / n)
        z = 2.0 * np.sqrt(tau.ravel() / self.expiry_years) - 1.0
        h = _cardinal_matrix(nodes, z) @ self._h
        unit = np.exp(self._ln_xmax - np.sqrt(np.maximum(h, 0.0)))
        spot = self.strike / unit if self.is_call else self.strike * unit
        return np.asarray(spot.reshape(tau.shape), dtype=np.float64)


_REGIME_NAMES = {
    _EXPIRED: "expired",
    _DETERMINISTIC: "deterministic",
    _EUROPEAN: "european",
    _DOUBLE_BOUNDARY: "double_boundary",
    _SINGLE_BOUNDARY: "single_boundary",
}


def exercise_boundary(
    *,
    is_call: bool,
    strike: float,
    expiry_years: float,
    rate: float,
    dividend_yield: float,
    vol: float,
    scheme: AloScheme = DEFAULT_SCHEME,
) -> ExerciseBoundary:
    """The early-exercise boundary the pricer uses for this option (at its nodes)."""
    k = _scalar("strike", strike, positive=True)
    t = _scalar("expiry_years", expiry_years, nonnegative=True)
    v = _scalar("vol", vol, nonnegative=True)
    r_in = _scalar("rate", rate)
    q_in = _scalar("dividend_yield", dividend_yield)
    call = bool(is_call)
    r, q = (q_in, r_in) if call else (r_in, q_in)
    regime = _regime(r, q, v, t)
    empty = np.empty(0)
    if regime != _SINGLE_BOUNDARY:
        return ExerciseBoundary(call, k, t, _REGIME_NAMES[regime], empty, empty, empty, 0.0)
    sc, tb = _single_boundary(r, q, v, t, scheme)
    n = scheme.chebyshev_nodes
    w = np.concatenate(([0.0], sc.nd[_N_W][:n]))
    ln_xmax = float(sc.opt[_O_LNX][0])
    unit = np.exp(ln_xmax - w)
    spot = k / unit if call else k * unit
    return ExerciseBoundary(call, k, t, "single_boundary", t * tb.node_s, spot, w**2, ln_xmax)


def exercise_log_moneyness(
    *,
    is_call: ArrayLike,
    expiry_years: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike,
    vol: ArrayLike,
    scheme: AloScheme = DEFAULT_SCHEME,
) -> FloatArray:
    """``ln(S*/K)`` of today's early-exercise boundary (time to expiry ``expiry_years``)
    for many options at once: a put is exercised at or below ``S*``, a call at or above.

    The boundary is the one the pricer solves (:func:`exercise_boundary`'s last node), so it
    depends on (rates, vol, expiry) and not on the spot or strike. NaN where there is no
    single boundary (regimes ``european``, ``expired``, ``deterministic``,
    ``double_boundary``). Each option's value depends on its own inputs alone."""
    call, t, r, q, v = np.broadcast_arrays(
        np.asarray(is_call, dtype=np.bool_),
        *(np.asarray(a, dtype=np.float64) for a in (expiry_years, rate, dividend_yield, vol)),
    )
    out = np.full(call.shape, np.nan)
    if call.size == 0:
        return out
    tb = _tables(scheme)
    flat = out.reshape(-1)
    _boundary_kernel(
        np.ascontiguousarray(call.ravel()), np.ascontiguousarray(t.ravel()),
        np.ascontiguousarray(r.ravel()), np.ascontiguousarray(q.ravel()),
        np.ascontiguousarray(v.ravel()),
        tb.node_s, tb.fp_s, tb.fp_mu, tb.fp_wt, tb.fp_wa, tb.fp_interp,
        scheme.fixed_point_iterations, scheme.tolerance, 16 * get_num_threads(), flat,
    )  # fmt: skip
    return out


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_CONTRACT)
def _boundary_kernel(
    is_call: BoolArray,
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    tb_node_s: FloatArray,
    tb_fp_s: FloatArray,
    tb_fp_mu: FloatArray,
    tb_fp_wt: FloatArray,
    tb_fp_wa: FloatArray,
    tb_fp_interp: FloatArray,
    max_iter: int,
    tol: float,
    n_chunks: int,
    out: FloatArray,
) -> None:
    """Boundaries in groups of _GROUP of one kind (FP-A, then FP-B), as the pricer's
    :func:`_american_kernel` solves them; NaN left where there is no single boundary."""
    size = t.shape[0]
    kind = np.zeros(size, dtype=np.int64)
    for j in prange(size):
        r_put, q_put = (q[j], r[j]) if is_call[j] else (r[j], q[j])
        if _regime(r_put, q_put, v[j], t[j]) == _SINGLE_BOUNDARY:
            kind[j] = 1 if _uses_fp_a(r_put, q_put, v[j]) else 2
    fp_a = np.flatnonzero(kind == 1)
    todo = np.concatenate((fp_a, np.flatnonzero(kind == 2)))
    n_a = fp_a.shape[0]
    n_groups_a = (n_a + _GROUP - 1) // _GROUP
    n_groups = n_groups_a + (todo.shape[0] - n_a + _GROUP - 1) // _GROUP
    n_tasks = max(1, min(n_chunks, n_groups))
    for c in prange(n_tasks):
        _boundary_groups(
            todo, n_a, c * n_groups // n_tasks, (c + 1) * n_groups // n_tasks,
            is_call, t, r, q, v,
            tb_node_s, tb_fp_s, tb_fp_mu, tb_fp_wt, tb_fp_wa, tb_fp_interp,
            max_iter, tol, out,
        )  # fmt: skip


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _boundary_groups(
    todo: IntArray,
    n_a: int,
    grp_lo: int,
    grp_hi: int,
    is_call: BoolArray,
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    tb_node_s: FloatArray,
    tb_fp_s: FloatArray,
    tb_fp_mu: FloatArray,
    tb_fp_wt: FloatArray,
    tb_fp_wa: FloatArray,
    tb_fp_interp: FloatArray,
    max_iter: int,
    tol: float,
    out: FloatArray,
) -> None:
    """Boundaries of groups ``grp_lo .. grp_hi - 1`` of ``todo`` (FP-A options first)."""
    n = tb_node_s.shape[0] - 1
    sc = _make_scratch(n, tb_fp_mu.shape[0] // n, 1)
    n_groups_a = (n_a + _GROUP - 1) // _GROUP
    for grp in range(grp_lo, grp_hi):
        if grp < n_groups_a:
            lo = grp * _GROUP
            hi = min(lo + _GROUP, n_a)
        else:
            lo = n_a + (grp - n_groups_a) * _GROUP
            hi = min(lo + _GROUP, todo.shape[0])
        size = hi - lo
        for g in range(size):
            i = todo[lo + g]
            rr, qq = (q[i], r[i]) if is_call[i] else (r[i], q[i])
            sc.opt[_O_X][g] = 1.0
            sc.opt[_O_R][g] = rr
            sc.opt[_O_Q][g] = qq
            sc.opt[_O_VOL][g] = v[i]
            sc.opt[_O_T][g] = t[i]
        _group_boundary(
            size, grp < n_groups_a,
            tb_node_s, tb_fp_s, tb_fp_mu, tb_fp_wt, tb_fp_wa, tb_fp_interp,
            max_iter, tol, sc,
        )  # fmt: skip
        for g in range(size):
            i = todo[lo + g]
            # Unit-strike put boundary ln b = ln B(0+) - w at the last node (τ = T); a call
            # is the put at x = K/S, so its boundary is at ln(S/K) = -ln b.
            ln_b = sc.opt[_O_LNX][g] - sc.nd[_N_W][g * n + n - 1]
            out[i] = -ln_b if is_call[i] else ln_b


# --------------------------------------------------------------------------------------
# Many options sharing a boundary: one solve per row, the premium anywhere along it
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PremiumRows:
    """R "rows" of American options, each a (call/put, expiry, rate, dividend yield, vol)
    whose exercise boundary is solved once, so that its early-exercise premium at any
    moneyness costs only the premium integral (:func:`early_exercise_premium`).

    ``boundary`` is each row's ``ln(S*/K)`` (NaN without a single boundary). A row in the
    ALO regime keeps the put-space premium constants of :func:`_group_premium_terms`
    (``consts``: 5 × its rows × premium points of its scheme, the row's at ``slot``); a
    long-dated row (see :func:`_long_dated`) is solved, as :func:`american_price` solves
    it, with the high-precision scheme at the trusted length (``long_consts``, ``solve_t``)
    and its values are clipped to the perpetual bounds. Other rows (closed-form regimes,
    double boundary, not converged) are priced by :func:`american_price` point by point.
    Each scheme's constants are kept for its own rows only (``plain_rows``,
    ``long_rows``): a back-test's day solves ~10^5 rows, and a table of both schemes for
    every row was ~0.5 GB of fresh memory a day."""

    is_call: BoolArray
    expiry_years: FloatArray
    rate: FloatArray
    dividend_yield: FloatArray
    vol: FloatArray
    boundary: FloatArray
    kind: NDArray[np.int8]  # 0: point by point, 1: default scheme, 2: long-dated
    solve_t: FloatArray
    plain_rows: IntArray
    long_rows: IntArray
    slot: IntArray  # the row's index in plain_rows or long_rows (by its scheme)
    consts: FloatArray
    long_consts: FloatArray


def premium_rows(
    *,
    is_call: ArrayLike,
    expiry_years: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike,
    vol: ArrayLike,
) -> PremiumRows:
    """Solve the exercise boundary of every row (1-D arrays of equal length; units as
    :func:`american_price`, the default scheme). Each row's boundary and constants depend
    on its own inputs alone (rows are solved in groups, every lane converging on its own),
    so a row solved in any batch gives the same bits."""
    call, t, r, q, v = (
        np.ascontiguousarray(np.asarray(a, dtype=d).ravel())
        for a, d in (
            (is_call, np.bool_), (expiry_years, np.float64), (rate, np.float64),
            (dividend_yield, np.float64), (vol, np.float64),
        )
    )  # fmt: skip
    r_put, q_put = np.where(call, q, r), np.where(call, r, q)
    speed = np.maximum(v * v, np.maximum(np.abs(r_put), np.abs(q_put)))
    long = (speed * t > _LONG) & (r_put * t > 1e-12) & (v * np.sqrt(t) > _TINY_TOTAL_VOL)
    solve_t = np.where(long, np.minimum(t, _TRUSTED / np.where(long, speed, 1.0)), t)
    boundary = np.full(t.size, np.nan)
    plain, lng = np.flatnonzero(~long), np.flatnonzero(long)
    consts = _solve_rows(call, t, r, q, v, plain, DEFAULT_SCHEME, boundary)
    long_consts = _solve_rows(call, solve_t, r, q, v, lng, HIGH_PRECISION_SCHEME, boundary)
    kind = np.zeros(t.size, dtype=np.int8)
    kind[plain[np.isfinite(consts).all(axis=(0, 2))]] = 1
    kind[lng[np.isfinite(long_consts).all(axis=(0, 2))]] = 2
    slot = np.empty(t.size, dtype=np.int64)
    slot[plain], slot[lng] = np.arange(plain.size), np.arange(lng.size)
    return PremiumRows(
        call, t, r, q, v, boundary, kind, solve_t, plain, lng, slot, consts, long_consts
    )


def _solve_rows(
    call: BoolArray, t: FloatArray, r: FloatArray, q: FloatArray, v: FloatArray,
    idx: IntArray, scheme: AloScheme, boundary: FloatArray,
) -> FloatArray:  # fmt: skip
    """Constants (5 × ``idx.size`` × points, NaN where not single-boundary) of rows ``idx``
    under ``scheme``; their boundaries written into ``boundary``."""
    tb = _tables(scheme)
    consts = np.full((5, idx.size, tb.pr_theta.size), np.nan)
    if idx.size == 0:
        return consts
    sub_b = np.full(idx.size, np.nan)
    _rows_kernel(
        call[idx], t[idx], r[idx], q[idx], v[idx],
        tb.node_s, tb.fp_s, tb.fp_mu, tb.fp_wt, tb.fp_wa, tb.fp_interp,
        tb.pr_theta, tb.pr_wt, tb.pr_interp,
        scheme.fixed_point_iterations, scheme.tolerance, 16 * get_num_threads(),
        sub_b, consts,
    )  # fmt: skip
    boundary[idx] = sub_b
    return consts


def early_exercise_premium(
    rows: PremiumRows, row: ArrayLike, ln_moneyness: ArrayLike, *, single: bool = False
) -> FloatArray:
    """American minus European price per unit strike of row ``row[i]``'s option at
    ``S/K = exp(ln_moneyness[i])`` (non-negative; the American price as
    :func:`american_price` gives it). Each value depends on its row's inputs and its
    moneyness alone. ``single``: the premium integral's normal CDFs in float32, as the
    revaluation engine's grids take them (:func:`premium_block`: within
    NCDF32_ERROR · (r + x q) T per unit strike, x the put-space moneyness)."""
    from marginflow.pricing.black_scholes import european_price

    idx = np.ascontiguousarray(np.asarray(row, dtype=np.int64).ravel())
    m = np.ascontiguousarray(np.asarray(ln_moneyness, dtype=np.float64).ravel())
    out = np.empty(m.size)
    if m.size == 0:
        return out
    check_moneyness(np.exp(m), 1.0)
    if idx.min() < 0 or idx.max() >= rows.kind.size:
        raise ValidationError("row", f"must be in 0..{rows.kind.size - 1}")
    # Points by scheme, then by row, a row's in their given order: each scheme's points are
    # one slice, each row's a run whose loops the kernel takes in SIMD blocks (one counting
    # pass; a sort and per-scheme gathers cost ~1 s a back-test day, 6 M points).
    order, ends = _group_points(
        idx, rows.kind, rows.slot, rows.plain_rows.size, rows.long_rows.size
    )
    idx, m = idx[order], m[order]
    lo = 0
    for k, own, consts, hi in (
        (1, rows.plain_rows, rows.consts, ends[0]),
        (2, rows.long_rows, rows.long_consts, ends[1]),
    ):
        if hi > lo:
            part, eu = slice(lo, hi), np.empty(hi - lo)
            _premium_at_kernel(
                rows.slot[idx[part]], m[part], rows.is_call[own], rows.expiry_years[own],
                rows.solve_t[own], rows.rate[own], rows.dividend_yield[own], rows.vol[own],
                consts[0], consts[1], consts[2], consts[3], consts[4], k == 2, out[part], eu,
                single,
            )  # fmt: skip
            if k == 2:
                out[part] = _clip_long(rows, idx[part], m[part], out[part], eu)
        lo = hi
    if lo < m.size:
        i = idx[lo:]
        batch = OptionBatch.of(
            is_call=rows.is_call[i], is_american=True, spot=np.exp(m[lo:]), strike=1.0,
            expiry_years=rows.expiry_years[i], rate=rows.rate[i],
            dividend_yield=rows.dividend_yield[i], vol=rows.vol[i],
        )  # fmt: skip
        out[lo:] = np.maximum(american_price(batch) - european_price(batch), 0.0)
    result = np.empty_like(out)
    result[order] = out
    return result


@njit(cache=True)
def _group_points(
    idx: IntArray, kind: NDArray[np.int8], slot: IntArray, n_plain: int, n_long: int
) -> tuple[IntArray, IntArray]:
    """The stable order of points ``idx`` (rows) by (scheme, row): the default scheme's
    rows first by ``slot``, then the long-dated ones, then those priced point by point; and
    where the first two groups end."""
    n, n_rows = idx.shape[0], kind.shape[0]
    key = np.empty(n, dtype=np.int64)
    start = np.zeros(n_plain + n_long + n_rows + 1, dtype=np.int64)
    for p in range(n):
        j = idx[p]
        if kind[j] == 1:
            key[p] = slot[j]
        elif kind[j] == 2:
            key[p] = n_plain + slot[j]
        else:
            key[p] = n_plain + n_long + j
        start[key[p] + 1] += 1
    for c in range(1, start.shape[0]):
        start[c] += start[c - 1]
    ends = np.array([start[n_plain], start[n_plain + n_long]], dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    for p in range(n):
        order[start[key[p]]] = p
        start[key[p]] += 1
    return order, ends


def _clip_long(
    rows: PremiumRows, idx: IntArray, m: FloatArray, unit_put: FloatArray, european: FloatArray
) -> FloatArray:
    """Long-dated points: the unit put's value clipped to the perpetual bounds, as
    :func:`_long_dated` clips it, then the premium over the European price."""
    call = rows.is_call[idx]
    x = np.exp(np.where(call, -m, m))
    r = np.where(call, rows.dividend_yield[idx], rows.rate[idx])
    q = np.where(call, rows.rate[idx], rows.dividend_yield[idx])
    v, t = rows.vol[idx], rows.expiry_years[idx]
    upper = perpetual_put(x, r, q, v)
    lower = upper - _unexercised_bound(x, r, q, v, t)
    p = np.minimum(np.maximum(unit_put, lower), upper)
    scale = np.where(call, np.exp(m), 1.0)
    american = np.maximum(scale * p, scale * np.maximum(1.0 - x, 0.0))
    return np.asarray(np.maximum(american - european, 0.0), dtype=np.float64)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_CONTRACT)
def _rows_kernel(
    is_call: BoolArray,
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    tb_node_s: FloatArray,
    tb_fp_s: FloatArray,
    tb_fp_mu: FloatArray,
    tb_fp_wt: FloatArray,
    tb_fp_wa: FloatArray,
    tb_fp_interp: FloatArray,
    tb_pr_theta: FloatArray,
    tb_pr_wt: FloatArray,
    tb_pr_interp: FloatArray,
    max_iter: int,
    tol: float,
    n_chunks: int,
    boundary: FloatArray,
    consts: FloatArray,
) -> None:
    """Boundaries and premium constants in groups of _GROUP rows of one kind (FP-A, then
    FP-B), as :func:`_american_kernel` solves them; rows without a single boundary are
    left NaN."""
    size = t.shape[0]
    kind = np.zeros(size, dtype=np.int64)
    for j in prange(size):
        r_put, q_put = (q[j], r[j]) if is_call[j] else (r[j], q[j])
        if _regime(r_put, q_put, v[j], t[j]) == _SINGLE_BOUNDARY:
            kind[j] = 1 if _uses_fp_a(r_put, q_put, v[j]) else 2
    fp_a = np.flatnonzero(kind == 1)
    todo = np.concatenate((fp_a, np.flatnonzero(kind == 2)))
    n_a = fp_a.shape[0]
    n_groups_a = (n_a + _GROUP - 1) // _GROUP
    n_groups = n_groups_a + (todo.shape[0] - n_a + _GROUP - 1) // _GROUP
    n_tasks = max(1, min(n_chunks, n_groups))
    for c in prange(n_tasks):
        _rows_groups(
            todo, n_a, c * n_groups // n_tasks, (c + 1) * n_groups // n_tasks,
            is_call, t, r, q, v,
            tb_node_s, tb_fp_s, tb_fp_mu, tb_fp_wt, tb_fp_wa, tb_fp_interp,
            tb_pr_theta, tb_pr_wt, tb_pr_interp, max_iter, tol, boundary, consts,
        )  # fmt: skip


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _rows_groups(
    todo: IntArray,
    n_a: int,
    grp_lo: int,
    grp_hi: int,
    is_call: BoolArray,
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    tb_node_s: FloatArray,
    tb_fp_s: FloatArray,
    tb_fp_mu: FloatArray,
    tb_fp_wt: FloatArray,
    tb_fp_wa: FloatArray,
    tb_fp_interp: FloatArray,
    tb_pr_theta: FloatArray,
    tb_pr_wt: FloatArray,
    tb_pr_interp: FloatArray,
    max_iter: int,
    tol: float,
    boundary: FloatArray,
    consts: FloatArray,
) -> None:
    """Rows of groups ``grp_lo .. grp_hi - 1`` of ``todo`` (FP-A rows first)."""
    n = tb_node_s.shape[0] - 1
    n_p = tb_pr_theta.shape[0]
    sc = _make_scratch(n, tb_fp_mu.shape[0] // n, n_p)
    n_groups_a = (n_a + _GROUP - 1) // _GROUP
    for grp in range(grp_lo, grp_hi):
        if grp < n_groups_a:
            lo = grp * _GROUP
            hi = min(lo + _GROUP, n_a)
        else:
            lo = n_a + (grp - n_groups_a) * _GROUP
            hi = min(lo + _GROUP, todo.shape[0])
        size = hi - lo
        for g in range(size):
            i = todo[lo + g]
            rr, qq = (q[i], r[i]) if is_call[i] else (r[i], q[i])
            sc.opt[_O_X][g] = 1.0
            sc.opt[_O_R][g] = rr
            sc.opt[_O_Q][g] = qq
            sc.opt[_O_VOL][g] = v[i]
            sc.opt[_O_T][g] = t[i]
        _group_boundary(
            size, grp < n_groups_a,
            tb_node_s, tb_fp_s, tb_fp_mu, tb_fp_wt, tb_fp_wa, tb_fp_interp,
            max_iter, tol, sc,
        )  # fmt: skip
        _group_premium_terms(size, n, tb_pr_theta, tb_pr_wt, tb_pr_interp, sc)
        for g in range(size):
            i = todo[lo + g]
            # as _boundary_groups: the unit put's ln b at the last node; a call's is -ln b
            ln_b = sc.opt[_O_LNX][g] - sc.nd[_N_W][g * n + n - 1]
            boundary[i] = -ln_b if is_call[i] else ln_b
            for k in range(5):
                for p in range(n_p):
                    consts[k, i, p] = sc.pr[k][g * n_p + p]


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_CONTRACT)
def _premium_at_kernel(
    row: IntArray,
    m: FloatArray,
    is_call: BoolArray,
    t: FloatArray,
    solve_t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    c_lnx: FloatArray,
    c_0: FloatArray,
    c_v: FloatArray,
    c_r: FloatArray,
    c_q: FloatArray,
    unit_put: bool,
    out: FloatArray,
    european: FloatArray,
    single: bool,
) -> None:
    """At every point of a solved row: :func:`premium_block`'s values (the premium, or the
    unit put's value when ``unit_put``) and the European price (``single``: its integral's
    CDFs in float32).

    Points come sorted by row; each run of one row is cut into blocks whose loops over
    points are innermost, so they run in SIMD registers (as :func:`_spots_alo_kernel`)."""
    size = m.shape[0]
    starts = np.flatnonzero(np.diff(row)) + 1
    bounds = np.empty(starts.shape[0] + 2, dtype=np.int64)
    bounds[0] = 0
    bounds[1:-1] = starts
    bounds[-1] = size
    n_runs = bounds.shape[0] - 1
    n_tasks = min(n_runs, 64)
    for task in prange(n_tasks):
        buf = np.empty((5, PREMIUM_BLOCK))
        buf32 = np.empty((2, PREMIUM_BLOCK), dtype=np.float32)
        for run in range(task * n_runs // n_tasks, (task + 1) * n_runs // n_tasks):
            j = row[bounds[run]]
            for lo in range(bounds[run], bounds[run + 1], PREMIUM_BLOCK):
                n = min(bounds[run + 1], lo + PREMIUM_BLOCK) - lo
                buf[0, :n] = m[lo : lo + n]
                premium_block(
                    n, j, is_call, t, solve_t, r, q, v, c_lnx, c_0, c_v, c_r, c_q, unit_put,
                    buf, single, buf32,
                )  # fmt: skip
                out[lo : lo + n] = buf[3, :n]
                european[lo : lo + n] = buf[4, :n]


PREMIUM_BLOCK = _SPOT_BLOCK
"""Points :func:`premium_block` takes at a time (its buffer's width)."""


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def premium_block(
    n: int,
    j: int,
    is_call: BoolArray,
    t: FloatArray,
    solve_t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    c_lnx: FloatArray,
    c_0: FloatArray,
    c_v: FloatArray,
    c_r: FloatArray,
    c_q: FloatArray,
    unit_put: bool,
    buf: FloatArray,
    single: bool,
    buf32: NDArray[np.float32],
) -> None:
    """The premium integral of solved row ``j`` (arrays as :class:`PremiumRows` keeps its
    scheme's rows) at the ``n`` <= :data:`PREMIUM_BLOCK` log-moneyness points ``buf[0, :n]``
    (ln S/K), a Numba building block for kernels that walk their own points. Row 0 is
    consumed (negated for a call) and rows 1-2 are scratch; row 3 gets the unit put's value
    in put space (the European put plus the premium integral, floored, as
    :func:`_group_prices` prices it, at the row's solve length) when ``unit_put``
    (long-dated rows, clipped by the caller), else the premium (American less European, per
    unit strike; NaN where the row's constants are); row 4 the European price in the
    option's own terms. A point's values depend on its row and its moneyness alone, not on
    the block it is in.

    With ``single`` the integral's normal CDFs are taken in float32
    (:func:`marginflow.pricing.single.ncdf32`, in ``buf32``: 2 × :data:`PREMIUM_BLOCK`
    scratch), its arguments and sums in float64. The integrand's two weights sum to at
    most r T and q T per unit strike, the second times the put-space moneyness x (S/K for
    a put, K/S for a call), so the premium moves by at most NCDF32_ERROR · (r + x q) T:
    6e-8 at the money for r + q = 10% and T = 2 years, a hundredth of the margin's
    tolerance. The European terms stay in float64."""
    lx, x, pr = buf[0], buf[1], buf[2]
    n_p = c_0.shape[1]
    call = is_call[j]
    rr, qq = (q[j], r[j]) if call else (r[j], q[j])
    ts, tt, vol = solve_t[j], t[j], v[j]
    sd_s, sd_t = vol * math.sqrt(ts), vol * math.sqrt(tt)
    shift_s = (rr - qq) * ts / sd_s + 0.5 * sd_s
    shift_t = (rr - qq) * tt / sd_t + 0.5 * sd_t
    dr_s, dq_s = math.exp(-rr * ts), math.exp(-qq * ts)
    dr_t, dq_t = math.exp(-rr * tt), math.exp(-qq * tt)
    for s in range(n):
        lx[s] = -lx[s] if call else lx[s]
        x[s] = _fast_exp(lx[s])
        pr[s] = 0.0
    g1, g2 = buf32[0], buf32[1]
    for p in range(n_p):
        a_l, a_0, a_v = c_lnx[j, p], c_0[j, p], c_v[j, p]
        a_r, a_q = c_r[j, p], c_q[j, p]
        if single:
            for s in range(n):
                dp = lx[s] * a_l + a_0
                g1[s] = np.float32(a_v - dp)
                g2[s] = np.float32(-dp)
            for s in range(n):  # float32 alone: twice the lanes a register
                g1[s] = ncdf32(g1[s])
                g2[s] = ncdf32(g2[s])
            for s in range(n):
                pr[s] += a_r * g1[s] - x[s] * a_q * g2[s]
        else:
            for s in range(n):
                dp = lx[s] * a_l + a_0
                pr[s] += a_r * _fast_ncdf(a_v - dp) - x[s] * a_q * _fast_ncdf(-dp)
    out, european = buf[3], buf[4]
    for s in range(n):
        # the European put in put space at the solve length and at expiry
        dp = lx[s] / sd_s + shift_s
        eu_s = dr_s * _fast_ncdf(sd_s - dp) - x[s] * dq_s * _fast_ncdf(-dp)
        dp = lx[s] / sd_t + shift_t
        eu_t = dr_t * _fast_ncdf(sd_t - dp) - x[s] * dq_t * _fast_ncdf(-dp)
        value = _fmax(eu_s + _fmax(pr[s], 0.0), _deterministic_floor(x[s], rr, qq, ts))
        value = _fmax(value, 1.0 - x[s])
        # put space: a call is S/K unit puts at x = K/S with the rates swapped
        scale = 1.0 / x[s] if call else 1.0
        european[s] = scale * eu_t
        if unit_put:
            out[s] = value
        else:
            premium = _fmax(scale * (value - eu_t), 0.0)
            out[s] = premium if pr[s] == pr[s] else np.nan
