"""Closed-form approximations of American prices: Barone-Adesi-Whaley and
Bjerksund-Stensland (1993).

They are fast and smooth, but their errors are tenths of a unit per 100 of strike on
average and reach about 1 at high volatility and long expiry (measured against the ALO
pricer, vol 10-80%, T up to 3 years), far above the 0.001 the pricing core holds to: use
:func:`marginflow.pricing.american.american_price` for prices, these for quick estimates
or cross-checks. Both price every option of a batch as American (``is_american`` is
ignored), per unit of the underlying; conventions as in :mod:`marginflow.core.batch`
(cost of carry ``b = rate - dividend_yield``; options on futures: ``dividend_yield = rate``).
Results are floored at the European and the intrinsic values; where a formula breaks down
(very low volatility with a rate near zero, where its critical price has no solution) the
floor is the answer.

References: G. Barone-Adesi and R. Whaley, "Efficient Analytic Approximation of American
Option Values", J. Finance 42 (1987); P. Bjerksund and G. Stensland, "Closed-Form
Approximation of American Options", Scand. J. Management 9 (1993); E. G. Haug, "The
Complete Guide to Option Pricing Formulas" (1998), whose tables the tests reproduce.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from marginflow.core.batch import FloatArray, OptionBatch
from marginflow.pricing.black_scholes import TINY_TOTAL_VOL, bsm_scalar
from marginflow.pricing.normal import ncdf, npdf

__all__ = ["barone_adesi_whaley_price", "bjerksund_stensland_price"]

# Newton on the critical price: relative tolerance and a cap on the steps.
_NEWTON_TOL = 1e-10
_NEWTON_MAX = 100


@njit(cache=True, inline="always")
def _intrinsic(is_call: bool, s: float, k: float) -> float:
    return max(s - k, 0.0) if is_call else max(k - s, 0.0)


@njit(cache=True, inline="always")
def _m_over_k(r: float, var: float, t: float) -> float:
    """2r / (σ² (1 - e^{-rT})), with its limit 2 / (σ² T) as r → 0."""
    rt = r * t
    if abs(rt) > 1e-8:
        return 2.0 * r / (var * -math.expm1(-rt))
    return 2.0 / (var * t) * (1.0 + 0.5 * rt)


@njit(cache=True)
def _baw_scalar(is_call: bool, s: float, k: float, t: float, r: float, q: float, v: float) -> float:
    """Barone-Adesi-Whaley price of one option (Haug 1998, section 1.6)."""
    if t <= 0.0:
        return _intrinsic(is_call, s, k)
    european = bsm_scalar(is_call, s, k, t, r, q, v)
    sd = v * math.sqrt(t)
    b = r - q
    # No early exercise (calls with b >= r), or outside the approximation (puts with
    # r <= 0, where the put is European or has two boundaries): the European value.
    if sd < TINY_TOTAL_VOL or (is_call and b >= r) or (not is_call and r <= 0.0):
        return max(european, _intrinsic(is_call, s, k))
    var = v * v
    n_ = 2.0 * b / var
    carry = math.exp((b - r) * t)
    sign = 1.0 if is_call else -1.0
    # Exponent of the quadratic approximation, and its perpetual limit for the seed.
    qq = 0.5 * (-(n_ - 1.0) + sign * math.sqrt((n_ - 1.0) ** 2 + 4.0 * _m_over_k(r, var, t)))
    q_inf = 0.5 * (-(n_ - 1.0) + sign * math.sqrt(max((n_ - 1.0) ** 2 + 8.0 * r / var, 0.0)))
    s_inf = k / (1.0 - 1.0 / q_inf)
    if is_call:
        crit = k + (s_inf - k) * (1.0 - math.exp(-(b * t + 2.0 * sd) * k / (s_inf - k)))
    else:
        crit = s_inf + (k - s_inf) * math.exp((b * t - 2.0 * sd) * k / (k - s_inf))
    # Newton on the critical price S*:
    #   sign (S* - K) = V_E(S*) + sign (1 - carry N(sign d1)) S* / qq.
    for _ in range(_NEWTON_MAX):
        d1 = (math.log(crit / k) + (b + 0.5 * var) * t) / sd
        n_d1 = ncdf(sign * d1)
        rhs = bsm_scalar(is_call, crit, k, t, r, q, v) + sign * (1.0 - carry * n_d1) * crit / qq
        slope = sign * carry * n_d1 * (1.0 - 1.0 / qq) + (sign - carry * npdf(d1) / sd) / qq
        if is_call:
            new = (k + rhs - slope * crit) / (1.0 - slope)
        else:
            new = (k - rhs + slope * crit) / (1.0 + slope)
        new = max(new, 1e-12 * k)
        done = abs(new - crit) < _NEWTON_TOL * crit
        crit = new
        if done:
            break
    if (is_call and s >= crit) or (not is_call and s <= crit):
        return _intrinsic(is_call, s, k)
    d1 = (math.log(crit / k) + (b + 0.5 * var) * t) / sd
    a: float = sign * (crit / qq) * (1.0 - carry * ncdf(sign * d1))
    value: float = european + a * (s / crit) ** qq
    return value


@njit(cache=True, inline="always")
def _bs93_phi(s: float, t: float, gamma: float, h: float, i: float, r: float, b: float,
              var: float) -> float:  # fmt: skip
    sd = math.sqrt(var * t)
    lam = (-r + gamma * b + 0.5 * gamma * (gamma - 1.0) * var) * t
    d = -(math.log(s / h) + (b + (gamma - 0.5) * var) * t) / sd
    kappa = 2.0 * b / var + (2.0 * gamma - 1.0)
    value: float = (
        math.exp(lam)
        * s**gamma
        * (ncdf(d) - (i / s) ** kappa * ncdf(d - 2.0 * math.log(i / s) / sd))
    )
    return value


@njit(cache=True)
def _bs93_call(s: float, k: float, t: float, r: float, b: float, v: float) -> float:
    """Bjerksund-Stensland (1993) call with cost of carry b."""
    q = r - b
    european = bsm_scalar(True, s, k, t, r, q, v)
    if t <= 0.0 or v * math.sqrt(t) < TINY_TOTAL_VOL or b >= r:
        return max(european, max(s - k, 0.0))
    var = v * v
    beta = (0.5 - b / var) + math.sqrt((b / var - 0.5) ** 2 + 2.0 * r / var)
    b_inf = beta / (beta - 1.0) * k
    b_0 = max(k, r / (r - b) * k)
    h = -(b * t + 2.0 * v * math.sqrt(t)) * b_0 / (b_inf - b_0)
    trigger = b_0 + (b_inf - b_0) * (1.0 - math.exp(h))
    if s >= trigger:
        return s - k
    alpha = (trigger - k) * trigger ** (-beta)
    value: float = (
        alpha * s**beta
        - alpha * _bs93_phi(s, t, beta, trigger, trigger, r, b, var)
        + _bs93_phi(s, t, 1.0, trigger, trigger, r, b, var)
        - _bs93_phi(s, t, 1.0, k, trigger, r, b, var)
        - k * _bs93_phi(s, t, 0.0, trigger, trigger, r, b, var)
        + k * _bs93_phi(s, t, 0.0, k, trigger, r, b, var)
    )
    return max(value, european)


@njit(cache=True)
def _bs93_scalar(
    is_call: bool, s: float, k: float, t: float, r: float, q: float, v: float
) -> float:
    if t <= 0.0:
        return _intrinsic(is_call, s, k)
    b = r - q
    if is_call:
        return _bs93_call(s, k, t, r, b, v)
    # Put-call transformation: P(S, K, T, r, b) = C(K, S, T, r - b, -b).
    return _bs93_call(k, s, t, r - b, -b, v)


@njit(cache=True, inline="always")
def _guarded(value: float, is_call: bool, s: float, k: float, t: float, r: float, q: float,
             v: float) -> float:  # fmt: skip
    """No less than the European value and the intrinsic value; where the approximation
    breaks down (NaN: very low volatility with a rate near zero) those are all we have."""
    floor = max(bsm_scalar(is_call, s, k, t, r, q, v), _intrinsic(is_call, s, k))
    return max(value, floor) if math.isfinite(value) else floor


@njit(cache=True, parallel=True)
def _kernel(method: int, is_call: np.ndarray, s: FloatArray, k: FloatArray, t: FloatArray,
            r: FloatArray, q: FloatArray, v: FloatArray, out: FloatArray) -> None:  # fmt: skip
    for i in prange(s.shape[0]):
        if method == 0:
            value = _baw_scalar(is_call[i], s[i], k[i], t[i], r[i], q[i], v[i])
        else:
            value = _bs93_scalar(is_call[i], s[i], k[i], t[i], r[i], q[i], v[i])
        out[i] = _guarded(value, is_call[i], s[i], k[i], t[i], r[i], q[i], v[i])


def _price(method: int, batch: OptionBatch) -> FloatArray:
    out = np.empty(len(batch))
    _kernel(
        method, batch.is_call, batch.spot, batch.strike, batch.expiry_years,
        batch.rate, batch.dividend_yield, batch.vol, out,
    )  # fmt: skip
    return out


def barone_adesi_whaley_price(batch: OptionBatch) -> FloatArray:
    """Barone-Adesi-Whaley (1987) quadratic approximation, per unit of the underlying."""
    return _price(0, batch)


def bjerksund_stensland_price(batch: OptionBatch) -> FloatArray:
    """Bjerksund-Stensland (1993) flat-boundary approximation, per unit of the underlying."""
    return _price(1, batch)
