"""Implied volatility that is bracketed, so it always converges or says why it cannot.

No-arbitrage bounds decide first whether an answer exists:

* European: ``max(S e^{-qT} - K e^{-rT}, 0) <= P < S e^{-qT}`` for a call and
  ``max(K e^{-rT} - S e^{-qT}, 0) <= P < K e^{-rT}`` for a put. The lower bound is the
  zero-volatility price; the upper is the price as volatility goes to infinity.
* American: the lower bound is the zero-volatility American price (at least the intrinsic
  value ``max(±(S - K), 0)``); the upper bound is ``S`` for a call and ``K`` for a put.

Inside the bounds the price is strictly increasing in volatility, so a bracket
``[0, hi]`` with ``price(hi) >= P`` holds the unique root. European options use a
safeguarded Newton step (bisection whenever Newton leaves the bracket) per option in
Numba; American options run a vectorised Illinois (regula falsi) iteration in lockstep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from collections.abc import Callable

from marginflow.core.batch import FloatArray, OptionBatch
from marginflow.core.errors import ValidationError
from marginflow.pricing.black_scholes import bsm_scalar
from marginflow.pricing.normal import npdf

_MAX_VOL = 100.0  # 10,000% a year: beyond this the price is indistinguishable from the bound
# Stop when the repriced value is within this fraction of the price, or within a few ulps of
# the forward legs (below that, BSM's own rounding decides, not the solver).
_PRICE_RTOL = 1e-12
_ROUNDING = 4e-16
_MAX_ITER = 200


class IVStatus(IntEnum):
    OK = 0
    EXPIRED = 1
    BELOW_LOWER_BOUND = 2
    ABOVE_UPPER_BOUND = 3
    INVALID_PRICE = 4
    NO_CONVERGENCE = 5


_REASONS = {
    IVStatus.OK: "solved",
    IVStatus.EXPIRED: "the option has expired (expiry_years = 0): its price does not depend on vol",
    IVStatus.BELOW_LOWER_BOUND: (
        "price {price:.10g} is below the no-arbitrage lower bound {lower:.10g} "
        "(the zero-volatility price): no volatility reproduces it"
    ),
    IVStatus.ABOVE_UPPER_BOUND: (
        "price {price:.10g} is at or above the no-arbitrage upper bound {upper:.10g} "
        "(the infinite-volatility price): no volatility reproduces it"
    ),
    IVStatus.INVALID_PRICE: "price {price!r} is not a finite number",
    IVStatus.NO_CONVERGENCE: "the solver did not converge (please report this input)",
}


@dataclass(frozen=True, slots=True)
class ImpliedVolResult:
    """Implied vols (annualised; NaN where there is none) with a status per option."""

    vol: FloatArray
    status: NDArray[np.int8]
    lower_bound: FloatArray
    upper_bound: FloatArray
    price: FloatArray

    @property
    def ok(self) -> NDArray[np.bool_]:
        return np.asarray(self.status == IVStatus.OK)

    def reason(self, i: int) -> str:
        """Why option ``i`` has (or has no) implied volatility, in words."""
        return _REASONS[IVStatus(int(self.status[i]))].format(
            price=float(self.price[i]),
            lower=float(self.lower_bound[i]),
            upper=float(self.upper_bound[i]),
        )


def implied_vol(batch: OptionBatch, prices: ArrayLike) -> ImpliedVolResult:
    """Implied vol of each option in ``batch`` from its price (``batch.vol`` is ignored).

    European or American per ``batch.is_american``. Prices are per unit of underlying.
    """
    n = len(batch)
    given = np.asarray(prices, dtype=np.float64)
    if given.ndim > 1 or given.size not in (1, n):
        raise ValidationError("prices", f"needs one price per option ({n}), got {given.size}")
    p = np.ascontiguousarray(np.broadcast_to(given.ravel(), (n,)))
    vol = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int8)
    lower = np.empty(n)
    upper = np.empty(n)
    for american, solve in ((False, _european_iv), (True, _american_iv)):
        idx = np.flatnonzero(batch.is_american == american)
        if idx.size:
            vol[idx], status[idx], lower[idx], upper[idx] = solve(batch.take(idx), p[idx])
    return ImpliedVolResult(vol, status, lower, upper, p)


_Solved = tuple[FloatArray, NDArray[np.int8], FloatArray, FloatArray]


def _european_iv(batch: OptionBatch, prices: FloatArray) -> _Solved:
    n = len(batch)
    out_vol, out_status = np.empty(n), np.empty(n, dtype=np.int8)
    out_lo, out_hi = np.empty(n), np.empty(n)
    _european_iv_kernel(
        batch.is_call,
        batch.spot,
        batch.strike,
        batch.expiry_years,
        batch.rate,
        batch.dividend_yield,
        prices,
        out_vol,
        out_status,
        out_lo,
        out_hi,
    )
    return out_vol, out_status, out_lo, out_hi


@njit(cache=True)
def _european_iv_scalar(
    is_call: bool, s: float, k: float, t: float, r: float, q: float, price: float
) -> tuple[float, int, float, float]:
    fwd_s = s * math.exp(-q * t)
    fwd_k = k * math.exp(-r * t)
    lower = max(fwd_s - fwd_k, 0.0) if is_call else max(fwd_k - fwd_s, 0.0)
    upper = fwd_s if is_call else fwd_k
    if not math.isfinite(price):
        return math.nan, 4, lower, upper
    if t <= 0.0:
        return math.nan, 1, lower, upper
    tol = _PRICE_RTOL * price + _ROUNDING * (fwd_s + fwd_k)
    if price < lower - tol:
        return math.nan, 2, lower, upper
    if price >= upper:
        return math.nan, 3, lower, upper
    if price <= lower + tol:
        return 0.0, 0, lower, upper
    lo, hi = 0.0, 1.0
    while bsm_scalar(is_call, s, k, t, r, q, hi) < price:
        lo = hi
        hi *= 2.0
        if hi > _MAX_VOL:
            return math.nan, 3, lower, upper
    # Start where the price curve is steepest in log-moneyness terms, clipped to the bracket.
    x = math.sqrt(2.0 * abs(math.log(fwd_s / fwd_k)) / t) if fwd_s != fwd_k else 0.2
    x = min(max(x, lo + 0.5 * (hi - lo) * 1e-3), hi)
    sqrt_t = math.sqrt(t)
    for _ in range(_MAX_ITER):
        f = bsm_scalar(is_call, s, k, t, r, q, x) - price
        if abs(f) <= tol:
            return x, 0, lower, upper
        if f > 0.0:
            hi = x
        else:
            lo = x
        sd = x * sqrt_t
        vega = 0.0
        if sd > 0.0:
            d1 = math.log(fwd_s / fwd_k) / sd + 0.5 * sd
            vega = fwd_s * npdf(d1) * sqrt_t
        step_ok = vega > 0.0
        nxt = x - f / vega if step_ok else 0.5 * (lo + hi)
        if not (lo < nxt < hi):
            nxt = 0.5 * (lo + hi)
        if hi - lo < 1e-15 * max(hi, 1.0):
            return nxt, 0, lower, upper
        x = nxt
    return math.nan, 5, lower, upper


@njit(cache=True, parallel=True)
def _european_iv_kernel(
    is_call: np.ndarray,
    s: np.ndarray,
    k: np.ndarray,
    t: np.ndarray,
    r: np.ndarray,
    q: np.ndarray,
    price: np.ndarray,
    out_vol: np.ndarray,
    out_status: np.ndarray,
    out_lo: np.ndarray,
    out_hi: np.ndarray,
) -> None:
    for i in prange(s.shape[0]):
        v, st, lo, hi = _european_iv_scalar(is_call[i], s[i], k[i], t[i], r[i], q[i], price[i])
        out_vol[i] = v
        out_status[i] = st
        out_lo[i] = lo
        out_hi[i] = hi


def _american_iv(batch: OptionBatch, prices: FloatArray) -> _Solved:
    from marginflow.pricing.american import american_price

    n = len(batch)
    intrinsic = np.where(
        batch.is_call,
        np.maximum(batch.spot - batch.strike, 0.0),
        np.maximum(batch.strike - batch.spot, 0.0),
    )
    lower = np.maximum(american_price(batch.replace(vol=0.0)), intrinsic)
    upper = np.where(batch.is_call, batch.spot, batch.strike)
    status = np.zeros(n, dtype=np.int8)
    vol = np.full(n, np.nan)
    tol = _PRICE_RTOL * np.abs(prices) + _ROUNDING * (batch.spot + batch.strike)
    status[prices < lower - tol] = IVStatus.BELOW_LOWER_BOUND
    status[prices >= upper] = IVStatus.ABOVE_UPPER_BOUND
    status[batch.expiry_years <= 0] = IVStatus.EXPIRED
    status[~np.isfinite(prices)] = IVStatus.INVALID_PRICE
    at_lower = (status == IVStatus.OK) & (prices <= lower + tol)
    vol[at_lower] = 0.0
    todo = np.flatnonzero((status == IVStatus.OK) & ~at_lower)
    if todo.size:
        sub = batch.take(todo)
        solved, ok = _illinois(
            lambda v: american_price(sub.replace(vol=v)) - prices[todo], tol[todo], todo.size
        )
        vol[todo] = np.where(ok, solved, np.nan)
        status[todo[~ok]] = IVStatus.NO_CONVERGENCE
    return vol, status, lower, upper


def _illinois(
    f: Callable[[FloatArray], FloatArray], tol: FloatArray, n: int
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Vectorised Illinois regula falsi for increasing ``f`` with ``f(0) < 0``."""
    lo, hi = np.zeros(n), np.ones(n)
    f_lo, f_hi = f(lo), f(hi)
    while (grow := f_hi < 0).any() and (hi[grow] <= _MAX_VOL).all():
        lo[grow], f_lo[grow] = hi[grow], f_hi[grow]
        hi[grow] *= 2.0
        f_hi = np.where(grow, f(hi), f_hi)
    side = np.zeros(n, dtype=np.int8)
    x = hi.copy()
    done = np.zeros(n, dtype=np.bool_)
    for _ in range(_MAX_ITER):
        x = np.where(done, x, (lo * f_hi - hi * f_lo) / (f_hi - f_lo))
        fx = f(x)
        done |= (np.abs(fx) <= tol) | (hi - lo <= 1e-14 * np.maximum(hi, 1.0))
        if done.all():
            break
        left = fx < 0  # root is to the right of x
        # Illinois: halve the stale end's value when the same end is kept twice running.
        f_hi = np.where(left & (side == -1), 0.5 * f_hi, f_hi)
        f_lo = np.where(~left & (side == 1), 0.5 * f_lo, f_lo)
        lo, f_lo = np.where(left, x, lo), np.where(left, fx, f_lo)
        hi, f_hi = np.where(left, hi, x), np.where(left, f_hi, fx)
        side = np.where(left, -1, 1).astype(np.int8)
    return x, done
