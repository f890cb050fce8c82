"""American options by the Andersen-Lake-Offengenden (ALO) fixed-point method.

Every option is priced as a put with unit strike: a call is a put by put-call symmetry,
``C(S, K, r, q) = P(K, S, q, r)``, and prices are homogeneous of degree one in (S, K), so
``P(S, K, r, q) = K · p(S/K; r, q)``. The unit-strike put ``p`` is

    p(x) = p_European(x) + ∫_0^T [r e^{-rt} N(-d-) - q x e^{-qt} N(-d+)] dt,
    d± = d±(t, x / B(T-t)) = (ln(x / B(T-t)) + (r - q) t) / (vol sqrt(t)) ± vol sqrt(t) / 2,

where ``B(τ)`` is the exercise boundary at time to expiry ``τ`` (Kim's integral equation).
The boundary depends on (r, q, vol, T) but not on the spot, so one instrument revalued under
many spots solves for it once (:func:`american_price_spots`).

The boundary is solved as in Andersen, Lake and Offengenden, "High Performance American
Option Pricing" (J. Comp. Finance 2016), and QuantLib's ``QdFpAmericanEngine``:

* collocation on Chebyshev-Lobatto nodes in ``sqrt(τ)``, interpolating
  ``H = ln(B / B(0+))²``, with ``B(0+) = K min(1, r/q)``;
* initial guess from the QD+ approximation (Li 2010) at every node, Halley's method;
* fixed-point iterations on ``B = K e^{-(r-q)τ} N(B) / D(B)``, the first a partial
  Jacobi-Newton step. Two forms of N/D exist (ALO's FP-A and FP-B).

What we do differently, each measured on thousands of random options against QuantLib's
high-precision scheme (``tests/pricing/test_american_quantlib.py``):

* Quadrature in the angle φ with ``t = T sin²φ`` (and ``u = τ cos²φ`` inside the
  iterations) instead of QuantLib's ``t = z²``. It removes the square-root singularities at
  *both* ends (the ``1/sqrt(t)`` of d± at one, the ``sqrt(τ)`` of the boundary at the
  other), so Gauss-Legendre converges geometrically: 32 points reach what 2,000 reach with
  ``t = z²``.
* FP-A when ``2(r-q)/vol² < 8`` and FP-B above. FP-A converges in 2-4 steps where FP-B
  needs 6-10, but it oscillates and diverges when the drift dominates the volatility
  (low vol, long expiry, high rate); FP-B converges there. (QuantLib uses FP-B unless
  ``|r - q| < 0.001``.)
* Anderson (depth one) acceleration of the iterations after the Jacobi-Newton step, and a
  stopping rule (largest change of ``ln B`` below ``AloScheme.tolerance``) with a cap.
* Vectorisable normal distribution and exponential (``_fast_ncdf``, ``_fast_exp``: 2e-13
  relative error), so the inner loops run in SIMD registers.

Cases where the single-boundary method does not apply (put-space rates ``r``, ``q``):

* ``T == 0``: intrinsic value.
* ``vol · sqrt(T) <= 1e-12`` (no randomness left): the deterministic value
  ``max_t (K e^{-rt} - S e^{-qt})⁺`` over ``t ∈ [0, T]``, exact.
* ``r <= 0`` and ``q >= r``: early exercise is never optimal; the European price is exact
  (Andersen and Lake 2021, table 2).
* ``q < r < 0``: the exercise region is bounded by two boundaries (Andersen and Lake 2021)
  and ALO's single boundary does not apply. These options go to a Crank-Nicolson finite
  difference solver (:func:`_fd_put_values`), accurate to about 1e-4 per unit strike and
  ~1000 times slower; for a call this is ``r < q < 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import get_num_threads, njit, prange, types
from numba.extending import intrinsic
from numpy.typing import ArrayLike, NDArray

from marginflow.core.batch import FloatArray, OptionBatch
from marginflow.core.errors import ValidationError
from marginflow.pricing.black_scholes import bsm_scalar

IntArray = NDArray[np.int64]

__all__ = [
    "DEFAULT_SCHEME",
    "HIGH_PRECISION_SCHEME",
    "AloScheme",
    "ExerciseBoundary",
    "american_price",
    "american_price_spots",
    "exercise_boundary",
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
    fixed_point_iterations : int
        Most fixed-point iterations (the first is a partial Jacobi-Newton step).
    tolerance : float
        Iterations stop once no node's ``ln B`` moves by more than this.
    iteration_points : int
        Gauss-Legendre points of each boundary integral inside the iterations.
    premium_points : int
        Gauss-Legendre points of the early-exercise premium integral.
    """

    chebyshev_nodes: int = 8
    fixed_point_iterations: int = 8
    tolerance: float = 1e-5
    iteration_points: int = 7
    premium_points: int = 32

    def __post_init__(self) -> None:
        for name in (
            "chebyshev_nodes",
            "fixed_point_iterations",
            "iteration_points",
            "premium_points",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValidationError(name, f"must be an integer >= 1, got {value!r}")
        if not (isinstance(self.tolerance, float) and self.tolerance >= 0.0):
            raise ValidationError("tolerance", f"must be a float >= 0, got {self.tolerance!r}")


#: Meets 0.001 in price (per 100 of spot) against QuantLib's high-precision scheme on
#: random options with T <= 5y at the best speed measured.
DEFAULT_SCHEME = AloScheme()

#: About 1e-8 per unit strike: for references and for checking the default.
HIGH_PRECISION_SCHEME = AloScheme(
    chebyshev_nodes=32,
    fixed_point_iterations=30,
    tolerance=1e-12,
    iteration_points=32,
    premium_points=64,
)


class _Tables(NamedTuple):
    """Scheme constants, independent of the option (all in units of T or τ)."""

    node_s: FloatArray  # τ_i / T at the Chebyshev-Lobatto nodes, i = 0..n (node 0: τ = 0)
    # Per iteration point k of node i, stored at k·n + i-1 (flat loops vectorise):
    fp_node: IntArray  # i
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
    fp_node = np.tile(np.arange(1, n + 1), n_pts)
    fp_s = node_s[fp_node]
    # u_ik / T = s_i cos²φ_k  ->  z = 2 sqrt(s_i) cos φ_k - 1; point k, node i at k·n + i-1
    z_fp = (2.0 * np.cos(phi)[:, None] * np.sqrt(node_s[None, 1:]) - 1.0).ravel()
    fp_interp = _cardinal_matrix(z, z_fp).T.copy()

    x, wx = np.polynomial.legendre.leggauss(p)
    phi_p = 0.25 * np.pi * (1.0 + x)  # t = T sin²φ, τ = T - t = T cos²φ
    pr_theta = np.sin(phi_p) ** 2
    pr_wt = 0.25 * np.pi * wx * np.sin(2.0 * phi_p)
    pr_interp = _cardinal_matrix(z, 2.0 * np.cos(phi_p) - 1.0).T.copy()
    return _Tables(
        node_s, fp_node, fp_s, fp_mu, fp_wt, fp_wa, fp_interp, pr_theta, pr_wt, pr_interp
    )


# --------------------------------------------------------------------------------------
# Vectorisable elementary functions
# --------------------------------------------------------------------------------------


def _bits_as_float_impl(typingctx, bits):  # type: ignore[no-untyped-def]
    """Reinterpret int64 bits as a float64 (LLVM bitcast; vectorises)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


_bits_as_float: Any = intrinsic(_bits_as_float_impl)

# Floating-point contraction (FMA) only: no reassociation, which would break the
# Cody-Waite reduction in _fast_exp and change results between runs of different sizes.
_CONTRACT = {"contract"}
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_exp(x: float) -> float:
    """exp(x) to 1 ulp for x in [-708, 709] (clamped outside), in plain arithmetic.

    ``math.exp`` is a libm call that LLVM cannot vectorise; this one it can. Polynomials
    are evaluated in Estrin's scheme: short dependency chains matter more than operation
    counts when only one or two SIMD vectors are in flight.
    """
    x = min(max(x, -708.0), 709.0)
    k = math.floor(x * _LOG2E + 0.5)
    r = x - k * _LN2_HI - k * _LN2_LO  # |r| <= ln(2)/2
    # Taylor series of degree 12: remainder < 2e-17 on |r| <= 0.347
    r2 = r * r
    r4 = r2 * r2
    q0 = (1.0 + r) + (1.0 / 2.0 + r / 6.0) * r2
    q1 = (1.0 / 24.0 + r / 120.0) + (1.0 / 720.0 + r / 5040.0) * r2
    q2 = (1.0 / 40320.0 + r / 362880.0) + (1.0 / 3628800.0 + r / 39916800.0) * r2
    q3 = 1.0 / 479001600.0
    p = (q0 + q1 * r4) + (q2 + q3 * r4) * (r4 * r4)
    scale: float = _bits_as_float((np.int64(k) + 1023) << 52)
    return p * scale


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
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
    q0 = (_E0 + _E1 * y) + (_E2 + _E3 * y) * y2
    q1 = (_E4 + _E5 * y) + (_E6 + _E7 * y) * y2
    q2 = (_E8 + _E9 * y) + (_E10 + _E11 * y) * y2
    q3 = (_E12 + _E13 * y) + (_E14 + _E15 * y) * y2
    q4 = (_E16 + _E17 * y) + _E18 * y2
    return ((q0 + q1 * y4) + (q2 + q3 * y4) * y8) + q4 * (y8 * y8)


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_ncdf(x: float) -> float:
    """Standard normal N(x), relative error < 3e-13 (tails included), vectorisable."""
    z = abs(x) * _INV_SQRT2
    t = _ERFC_A / (_ERFC_A + z)
    tail = 0.5 * _fast_exp(-0.5 * x * x) * t * _erfcx_poly(2.0 * t - 1.0)
    return tail if x < 0.0 else 1.0 - tail


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_npdf(x: float) -> float:
    return _INV_SQRT_2PI * _fast_exp(-0.5 * x * x)


def _float_bits_impl(typingctx, value):  # type: ignore[no-untyped-def]
    """Reinterpret float64 as int64 bits (LLVM bitcast; vectorises)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


_float_bits: Any = intrinsic(_float_bits_impl)

_SQRT2 = math.sqrt(2.0)
_LN2 = math.log(2.0)


@njit(cache=True, inline="always", error_model="numpy", fastmath=_CONTRACT)
def _fast_log(x: float) -> float:
    """ln(x) for positive normal x to 2 ulp, in plain arithmetic (vectorises)."""
    bits: int = _float_bits(x)
    e = (bits >> 52) - 1023
    m = _bits_as_float((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)  # [1, 2)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    k = float(e + 1) if big else float(e)
    s = (m - 1.0) / (m + 1.0)  # |s| <= 0.1716
    z = s * s
    z2 = z * z
    z4 = z2 * z2
    # 2 atanh(s) = 2 s (1 + z/3 + z²/5 + ...), z = s²: terms to s^21, remainder < 1e-18
    q0 = (1.0 + z / 3.0) + (1.0 / 5.0 + z / 7.0) * z2
    q1 = (1.0 / 9.0 + z / 11.0) + (1.0 / 13.0 + z / 15.0) * z2
    q2 = (1.0 / 17.0 + z / 19.0) + z2 / 21.0
    out: float = k * _LN2 + 2.0 * s * ((q0 + q1 * z4) + q2 * (z4 * z4))
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
_TINY_TOTAL_VOL = 1e-12
# FP-A below this value of 2(r-q)/vol², FP-B above (see the module docstring).
_FP_A_MAX_OMEGA = 8.0
_QD_MAX_HALLEY = 16
_JN_ALWAYS = False
_ANDERSON = True


@njit(cache=True, inline="always")
def _regime(r: float, q: float, v: float, t: float) -> int:
    if t <= 0.0:
        return _EXPIRED
    if v * math.sqrt(t) <= _TINY_TOTAL_VOL:
        return _DETERMINISTIC
    if r <= 0.0 and q >= r:
        return _EUROPEAN
    if q < r < 0.0:
        return _DOUBLE_BOUNDARY
    return _SINGLE_BOUNDARY


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


@njit(cache=True, inline="always")
def _boundary_at_zero(r: float, q: float) -> float:
    """B(0+) / K for a put in the single-boundary regime."""
    return r / q if (q > 0.0 and r < q) else 1.0


# --------------------------------------------------------------------------------------
# The ALO kernel (unit-strike put, single boundary)
# --------------------------------------------------------------------------------------


class _Scratch(NamedTuple):
    """Per-thread work arrays. Arrays over iteration points are point-major (index
    ``k·n + i-1`` for point k of node i), so loops over nodes are innermost and vectorise."""

    tau: FloatArray  # (n+1) time to expiry at the nodes
    w: FloatArray  # (n+1) ln(B(0+)/B_i) at the nodes
    w_prev: FloatArray  # (n+1) Anderson history
    r_prev: FloatArray  # (n+1)
    w_new: FloatArray  # (n+1) fixed-point map of w
    step: FloatArray  # (n+1)
    node: FloatArray  # (8, n+1) per-node constants and sums
    qd: FloatArray  # (8, n+1) QD+ per-node constants and state
    pt: FloatArray  # (10, l·n) per-point constants and values
    prem: FloatArray  # (6, p) premium constants and terms


@njit(cache=True)
def _make_scratch(n: int, n_pts: int, n_p: int) -> _Scratch:
    return _Scratch(
        np.zeros(n + 1),
        np.zeros(n + 1),
        np.zeros(n + 1),
        np.zeros(n + 1),
        np.zeros(n + 1),
        np.zeros(n + 1),
        np.zeros((8, n + 1)),
        np.zeros((8, n + 1)),
        np.zeros((10, n_pts * n)),
        np.zeros((6, n_p)),
    )


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _qdplus_boundary(
    r: float, q: float, vol: float, tau: FloatArray, ln_xmax: float, qd: FloatArray
) -> None:
    """QD+ exercise boundary ln(B_i) at every node (Li 2010), into ``qd[0, 1:]``.

    The boundary S* solves ``(1 - dq N(-d+)) S - β (K - S - p(S)) + α Θ(S) / dr = 0``
    (p and Θ the European put and its theta). Halley's method on ln S, all nodes at once:
    the loops over nodes carry no reduction, so they run in SIMD registers.
    """
    n = tau.shape[0] - 1
    s2 = vol * vol
    rq = r - q
    omega = 2.0 * rq / s2
    x, v_, dr_, dq_, alpha_, beta_, step_ = qd[0], qd[1], qd[2], qd[3], qd[4], qd[5], qd[6]
    for i in range(1, n + 1):
        t = tau[i]
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
        v_[i] = vol * math.sqrt(t)
        dr_[i] = dr
        dq_[i] = _fast_exp(-q * t)
        alpha_[i] = alpha
        beta_[i] = alpha * (ddr + lam_p / den) - lam
        x[i] = ln_xmax
    for _ in range(_QD_MAX_HALLEY):
        for i in range(1, n + 1):
            t = tau[i]
            v = v_[i]
            dr = dr_[i]
            dq = dq_[i]
            alpha = alpha_[i]
            beta = beta_[i]
            s = _fast_exp(x[i])
            dp = (x[i] + rq * t) / v + 0.5 * v
            dm = dp - v
            n_dp = _fast_ncdf(-dp)
            n_dm = _fast_ncdf(-dm)
            pdf = _fast_npdf(dp)
            npv = dr * n_dm - s * dq * n_dp
            theta = r * dr * n_dm - q * s * dq * n_dp - 0.5 * s2 * s * dq * pdf / v
            charm = -dq * (pdf * (rq / v - dm / (2.0 * t)) + q * n_dp)
            g = (1.0 - dq * n_dp) * s - beta * (1.0 - s - npv) + alpha * theta / dr
            g1 = 1.0 - dq * n_dp + dq * pdf / v + beta * (1.0 - dq * n_dp) + alpha * charm / dr
            gamma = pdf * dq / (v * s)
            colour = gamma * (q + rq * dp / v + (1.0 - dp * dm) / (2.0 * t))
            g2 = dq * (pdf / (s * v) - pdf * dp / (s * v * v)) + beta * gamma + alpha * colour / dr
            # Halley in x = ln S: G' = S g', G'' = S g' + S² g''
            gx1 = s * g1
            gx2 = gx1 + s * s * g2
            step = g / gx1 / (1.0 - 0.5 * g * gx2 / (gx1 * gx1))
            step = min(max(step, -1.0), 1.0)
            x[i] = min(x[i] - step, ln_xmax)
            step_[i] = abs(step)
        worst = 0.0
        for i in range(1, n + 1):
            worst = max(worst, step_[i])
        if worst < 1e-7:
            break


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _solve_boundary(
    r: float,
    q: float,
    vol: float,
    t_exp: float,
    tb_node_s: FloatArray,
    tb_fp_node: IntArray,
    tb_fp_s: FloatArray,
    tb_fp_mu: FloatArray,
    tb_fp_wt: FloatArray,
    tb_fp_wa: FloatArray,
    tb_fp_interp: FloatArray,
    max_iter: int,
    tol: float,
    sc: _Scratch,
) -> float:
    """Exercise boundary of the unit-strike put; ``sc.w[i] = ln(B(0+) / B(τ_i))``.

    Returns ln B(0+).
    """
    n = tb_node_s.shape[0] - 1
    nl = tb_fp_mu.shape[0]
    xmax = _boundary_at_zero(r, q)
    ln_xmax = math.log(xmax)
    rq = r - q
    tau, w, w_new = sc.tau, sc.w, sc.w_new
    for i in range(n + 1):
        tau[i] = t_exp * tb_node_s[i]

    # Initial guess: QD+.
    _qdplus_boundary(r, q, vol, tau, ln_xmax, sc.qd)
    w[0] = 0.0
    for i in range(1, n + 1):
        w[i] = ln_xmax - sc.qd[0, i]
        sc.w_prev[i] = 0.0
        sc.r_prev[i] = 0.0

    use_a = 2.0 * rq < _FP_A_MAX_OMEGA * vol * vol
    # Per-node constants.
    nd_v, nd_carry, nd_sqrt = sc.node[0], sc.node[1], sc.node[2]
    sum_n, sum_d = sc.node[3], sc.node[4]
    for i in range(1, n + 1):
        nd_sqrt[i] = math.sqrt(tau[i])
        nd_v[i] = vol * nd_sqrt[i]
        nd_carry[i] = _fast_exp(-rq * tau[i])
    # Per-point constants: d-(m, B(τ)/B(u)) = (ln B(τ) - ln B(u)) / (vol sqrt m) + c_m.
    h, w_rep, inv_sm, sm_, c_m = sc.pt[0], sc.pt[1], sc.pt[2], sc.pt[3], sc.pt[4]
    c1, c2, c3, t_n, t_d = sc.pt[5], sc.pt[6], sc.pt[7], sc.pt[8], sc.pt[9]
    for ik in range(nl):
        m = t_exp * tb_fp_s[ik] * tb_fp_mu[ik]
        sm = vol * math.sqrt(m)
        sm_[ik] = sm
        inv_sm[ik] = 1.0 / sm
        c_m[ik] = rq * m / sm - 0.5 * sm
    if use_a:
        for ik in range(nl):
            t = t_exp * tb_fp_s[ik]
            u = t - t * tb_fp_mu[ik]
            st = math.sqrt(t) / vol
            e_q = q * _fast_exp(q * u)
            c1[ik] = r * tb_fp_wa[ik] * st * _fast_exp(r * u)
            c2[ik] = e_q * tb_fp_wt[ik] * t
            c3[ik] = e_q * tb_fp_wa[ik] * st
    else:
        for ik in range(nl):
            t = t_exp * tb_fp_s[ik]
            u = t - t * tb_fp_mu[ik]
            c1[ik] = r * t * tb_fp_wt[ik] * _fast_exp(r * u)
            c2[ik] = q * t * tb_fp_wt[ik] * _fast_exp(q * u)

    for it in range(max_iter):
        # H at the iteration points (node 0 has H = 0 and drops out).
        for ik in range(nl):
            h[ik] = 0.0
        for j in range(1, n + 1):
            hj = w[j] * w[j]
            for ik in range(nl):
                h[ik] += tb_fp_interp[j, ik] * hj
        for ik in range(nl):
            w_rep[ik] = w[tb_fp_node[ik]]
        # Integrands at every point: ln(B(τ)/B(u)) = sqrt(H(u)) - w_i.
        if use_a:
            for ik in range(nl):
                dm = (math.sqrt(max(h[ik], 0.0)) - w_rep[ik]) * inv_sm[ik] + c_m[ik]
                dp = dm + sm_[ik]
                t_n[ik] = c1[ik] * _fast_npdf(dm)
                t_d[ik] = c2[ik] * _fast_ncdf(dp) + c3[ik] * _fast_npdf(dp)
        else:
            for ik in range(nl):
                dm = (math.sqrt(max(h[ik], 0.0)) - w_rep[ik]) * inv_sm[ik] + c_m[ik]
                t_n[ik] = c1[ik] * _fast_ncdf(dm)
                t_d[ik] = c2[ik] * _fast_ncdf(dm + sm_[ik])
        for i in range(1, n + 1):
            sum_n[i] = 0.0
            sum_d[i] = 0.0
        for k in range(nl // n):
            for i in range(1, n + 1):
                sum_n[i] += t_n[k * n + i - 1]
                sum_d[i] += t_d[k * n + i - 1]
        # Fixed-point map at every node (vectorised over nodes).
        first = it == 0
        for i in range(1, n + 1):
            v = nd_v[i]
            ln_b = ln_xmax - w[i]
            dp = (ln_b + rq * tau[i]) / v + 0.5 * v
            dm = dp - v
            pdf_p = _fast_npdf(dp)
            pdf_m = _fast_npdf(dm)
            cdf_p = _fast_ncdf(dp)
            if use_a:
                num = pdf_m / v + sum_n[i]
                den = pdf_p / v + cdf_p + sum_d[i]
            else:
                num = _fast_ncdf(dm) + sum_n[i]
                den = cdf_p + sum_d[i]
            carry = nd_carry[i]
            f = carry * num / den
            # First step: partial Jacobi-Newton (derivative of the non-integral terms).
            b = _fast_exp(ln_b)
            if use_a:
                d_den = pdf_p * (1.0 - dp / v) / (b * v)
                d_num = -pdf_m * dm / (b * v * v)
            else:
                d_num = pdf_m / (b * v)
                d_den = pdf_p / (b * v)
            fd = carry * (d_num / den - d_den * num / (den * den))
            newton = b - (f - b) / (fd - 1.0)
            f = newton if ((first or _JN_ALWAYS) and newton > 0.0) else f
            w_new[i] = abs(_fast_log(f) - ln_xmax)
        # Anderson (depth one) after the Jacobi-Newton and one plain step.
        gamma = 0.0
        if it >= 2 and _ANDERSON:
            num_g = 0.0
            den_g = 0.0
            for i in range(1, n + 1):
                res = w_new[i] - w[i]
                d_res = res - sc.r_prev[i]
                num_g += d_res * res
                den_g += d_res * d_res
            if den_g > 0.0:
                gamma = num_g / den_g
        for i in range(1, n + 1):
            res = w_new[i] - w[i]
            step = res - gamma * (w[i] - sc.w_prev[i] + res - sc.r_prev[i])
            sc.r_prev[i] = res
            sc.w_prev[i] = w[i]
            w[i] = abs(w[i] + step)
            sc.step[i] = abs(step)
        worst = 0.0
        for i in range(1, n + 1):
            worst = max(worst, sc.step[i])
        if worst < tol:
            break
    return ln_xmax


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _premium_terms(
    r: float,
    q: float,
    vol: float,
    t_exp: float,
    ln_xmax: float,
    w: FloatArray,
    tb_pr_theta: FloatArray,
    tb_pr_wt: FloatArray,
    tb_pr_interp: FloatArray,
    pc: FloatArray,
) -> None:
    """Constants of the premium integrand at each point p, for any spot x, into ``pc``:

    d+_p = ln(x) pc[0] + pc[1],  d-_p = d+_p - pc[2],
    premium(x) = Σ_p pc[3] N(-d-_p) - x pc[4] N(-d+_p).
    """
    n = w.shape[0] - 1
    n_p = tb_pr_theta.shape[0]
    c_lnx, c_0, c_v, c_r, c_q = pc[0], pc[1], pc[2], pc[3], pc[4]
    for p in range(n_p):
        c_0[p] = 0.0
    for j in range(1, n + 1):
        hj = w[j] * w[j]
        for p in range(n_p):
            c_0[p] += tb_pr_interp[j, p] * hj
    for p in range(n_p):
        ln_b = ln_xmax - math.sqrt(max(c_0[p], 0.0))
        t = t_exp * tb_pr_theta[p]
        vt = vol * math.sqrt(t)
        c_lnx[p] = 1.0 / vt
        c_0[p] = (-ln_b + (r - q) * t) / vt + 0.5 * vt
        c_v[p] = vt
        c_r[p] = t_exp * tb_pr_wt[p] * r * _fast_exp(-r * t)
        c_q[p] = t_exp * tb_pr_wt[p] * q * _fast_exp(-q * t)


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _premium_at(x: float, pc: FloatArray) -> float:
    """Early-exercise premium of the unit-strike put at spot ``x`` (after _premium_terms)."""
    lx = math.log(x)
    terms = pc[5]
    for p in range(pc.shape[1]):
        dp = lx * pc[0, p] + pc[1, p]
        terms[p] = pc[3, p] * _fast_ncdf(pc[2, p] - dp) - x * pc[4, p] * _fast_ncdf(-dp)
    acc = 0.0
    for p in range(pc.shape[1]):
        acc += terms[p]
    return acc


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _put_unit(
    x: float,
    r: float,
    q: float,
    vol: float,
    t: float,
    tb_node_s: FloatArray,
    tb_fp_node: IntArray,
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
    sc: _Scratch,
) -> float:
    """Unit-strike American put at spot ``x``; NaN for the double-boundary regime."""
    regime = _regime(r, q, vol, t)
    if regime == _EXPIRED:
        return max(1.0 - x, 0.0)
    if regime == _DETERMINISTIC:
        return _deterministic_put(x, r, q, t)
    if regime == _EUROPEAN:
        return bsm_scalar(False, x, 1.0, t, r, q, vol)
    if regime == _DOUBLE_BOUNDARY:
        return np.nan
    ln_xmax = _solve_boundary(
        r,
        q,
        vol,
        t,
        tb_node_s,
        tb_fp_node,
        tb_fp_s,
        tb_fp_mu,
        tb_fp_wt,
        tb_fp_wa,
        tb_fp_interp,
        max_iter,
        tol,
        sc,
    )
    _premium_terms(r, q, vol, t, ln_xmax, sc.w, tb_pr_theta, tb_pr_wt, tb_pr_interp, sc.prem)
    premium = _premium_at(x, sc.prem)
    european = bsm_scalar(False, x, 1.0, t, r, q, vol)
    return max(european + max(premium, 0.0), 1.0 - x)


@njit(cache=True, parallel=True, error_model="numpy", fastmath=_CONTRACT)
def _american_kernel(
    is_call: np.ndarray,
    s: FloatArray,
    k: FloatArray,
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    v: FloatArray,
    tb_node_s: FloatArray,
    tb_fp_node: IntArray,
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
    size = s.shape[0]
    n = tb_node_s.shape[0] - 1
    n_pts = tb_fp_mu.shape[0] // n
    n_p = tb_pr_theta.shape[0]
    # Chunks of options share one set of scratch arrays (no allocation per option).
    for c in prange(n_chunks):
        sc = _make_scratch(n, n_pts, n_p)
        for i in range(c * size // n_chunks, (c + 1) * size // n_chunks):
            if is_call[i]:
                x, scale, rr, qq = k[i] / s[i], s[i], q[i], r[i]
            else:
                x, scale, rr, qq = s[i] / k[i], k[i], r[i], q[i]
            out[i] = scale * _put_unit(
                x, rr, qq, v[i], t[i],
                tb_node_s, tb_fp_node, tb_fp_s, tb_fp_mu, tb_fp_wt, tb_fp_wa, tb_fp_interp,
                tb_pr_theta, tb_pr_wt, tb_pr_interp, max_iter, tol, sc,
            )  # fmt: skip


def american_price(batch: OptionBatch, *, scheme: AloScheme = DEFAULT_SCHEME) -> FloatArray:
    """American price of every option in ``batch`` (``is_american`` is ignored).

    Per unit of the underlying; rates and yield continuously compounded, vol annualised,
    ``expiry_years`` in years (ACT/365 by convention). See the module docstring for the
    method and for how each regime of (rate, dividend yield) is handled.
    """
    out = np.empty(len(batch), dtype=np.float64)
    if len(batch) == 0:
        return out
    tb = _tables(scheme)
    _american_kernel(
        batch.is_call, batch.spot, batch.strike, batch.expiry_years,
        batch.rate, batch.dividend_yield, batch.vol,
        *tb, scheme.fixed_point_iterations, scheme.tolerance,
        min(len(batch), 16 * get_num_threads()), out,
    )  # fmt: skip
    todo = np.flatnonzero(np.isnan(out))
    if todo.size:
        out[todo] = _fd_prices(batch.take(todo))
    return out


# --------------------------------------------------------------------------------------
# Finite differences for the double-boundary regime (q < r < 0 for the put)
# --------------------------------------------------------------------------------------

# Grid of the fallback: 1,201 points in ln(S/K) over ±(6 vol sqrt(T) + |r-q| T + 0.25)
# around the spot and strike, 600 time steps (4 of them Rannacher half-steps). Measured
# against the ALO high-precision scheme on single-boundary puts: about 1e-4 per unit strike.
_FD_SPACE_POINTS = 1201
_FD_TIME_STEPS = 600
_FD_WIDTH_SIGMAS = 6.0


@njit(cache=True)
def _fd_put_grid(
    r: float, q: float, vol: float, t: float, y_lo: float, h: float, nx: int, nt: int
) -> FloatArray:
    """Unit-strike American put on the grid ``y_j = y_lo + j h`` (y = ln(S/K)).

    Theta scheme in time to expiry: four implicit Euler half-steps (Rannacher), then
    Crank-Nicolson; early exercise by projection on the payoff after each step. Dirichlet
    conditions: the zero-volatility value far in the money, zero far out of the money.
    """
    a = 0.5 * vol * vol
    b = r - q - a
    lo = a / (h * h) - b / (2.0 * h)
    di = -2.0 * a / (h * h) - r
    up = a / (h * h) + b / (2.0 * h)
    payoff = np.empty(nx)
    for j in range(nx):
        payoff[j] = max(1.0 - math.exp(y_lo + j * h), 0.0)
    v = payoff.copy()
    rhs = np.empty(nx)
    cp = np.empty(nx)
    dp = np.empty(nx)
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
        right = 0.0
        # Thomas algorithm on (I - theta dt L) v = rhs, Dirichlet ends.
        il = -theta * dt * lo
        idi = 1.0 - theta * dt * di
        iu = -theta * dt * up
        cp[0] = 0.0
        dp[0] = left
        for j in range(1, nx - 1):
            m = idi - il * cp[j - 1]
            cp[j] = iu / m
            dp[j] = (rhs[j] - il * dp[j - 1]) / m
        v[nx - 1] = right
        for j in range(nx - 2, 0, -1):
            v[j] = dp[j] - cp[j] * v[j + 1]
        v[0] = left
        for j in range(nx):
            v[j] = max(v[j], payoff[j])
    return v


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
        hi = max(ln_x, 0.0) + half
        h = (hi - lo) / (_FD_SPACE_POINTS - 1)
        j = round((ln_x - lo) / h)  # put the spot on a node: no interpolation
        grid = _fd_put_grid(r[i], q[i], v[i], t[i], ln_x - j * h, h, _FD_SPACE_POINTS,
                            _FD_TIME_STEPS)  # fmt: skip
        out[i] = grid[j]


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
            out[lo + s] = scale * max(eu[s] + max(pr[s], 0.0), 1.0 - x[s])


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
        x = strike / spots[i] if is_call else spots[i] / strike
        scale = spots[i] if is_call else strike
        if regime == _EXPIRED:
            value = max(1.0 - x, 0.0)
        elif regime == _DETERMINISTIC:
            value = _deterministic_put(x, r, q, t)
        else:
            value = bsm_scalar(False, x, 1.0, t, r, q, vol)
        out[i] = scale * value


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
        tb = _tables(scheme)
        sc = _make_scratch(scheme.chebyshev_nodes, scheme.iteration_points, tb.pr_theta.size)
        ln_xmax = _solve_boundary(
            r, q, v, t, tb.node_s, tb.fp_node, tb.fp_s, tb.fp_mu, tb.fp_wt, tb.fp_wa, tb.fp_interp,
            scheme.fixed_point_iterations, scheme.tolerance, sc,
        )  # fmt: skip
        _premium_terms(r, q, v, t, ln_xmax, sc.w, tb.pr_theta, tb.pr_wt, tb.pr_interp, sc.prem)
        pc = sc.prem
        _spots_alo_kernel(call, s, k, r, q, v, t, pc[0], pc[1], pc[2], pc[3], pc[4], out)
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
    grid = _fd_put_grid(r, q, v, t, lo, h, nx, _FD_TIME_STEPS)
    values = CubicSpline(lo + h * np.arange(nx), grid)(ln_x)
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
    tb = _tables(scheme)
    sc = _make_scratch(scheme.chebyshev_nodes, scheme.iteration_points, tb.pr_theta.size)
    ln_xmax = _solve_boundary(
        r, q, v, t, tb.node_s, tb.fp_node, tb.fp_s, tb.fp_mu, tb.fp_wt, tb.fp_wa, tb.fp_interp,
        scheme.fixed_point_iterations, scheme.tolerance, sc,
    )  # fmt: skip
    unit = np.exp(ln_xmax - sc.w)
    spot = k / unit if call else k * unit
    return ExerciseBoundary(
        call, k, t, "single_boundary", t * tb.node_s, spot, sc.w**2, float(ln_xmax)
    )
