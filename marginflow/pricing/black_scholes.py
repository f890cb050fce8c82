"""European options: Black-Scholes-Merton with continuous yield, and Black-76.

All functions price per unit of the underlying. Black-76 (options on futures) is BSM with
zero cost of carry: ``dividend_yield == rate`` and ``spot`` the futures price.

Edge cases are exact limits, not special numbers: at expiry (``T == 0``) the price is the
intrinsic value; with zero total volatility (``vol * sqrt(T) == 0``) it is the discounted
intrinsic value of the forward.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from marginflow.core.batch import FloatArray, OptionBatch
from marginflow.pricing.normal import ncdf

# Below this total volatility, d1/d2 lose meaning and the forward-intrinsic limit is exact
# to far below a cent at any realistic size.
TINY_TOTAL_VOL = 1e-12


@njit(cache=True, inline="always")
def bsm_scalar(is_call: bool, s: float, k: float, t: float, r: float, q: float, v: float) -> float:
    """BSM price of one European option (per unit of underlying)."""
    if t <= 0.0:
        return max(s - k, 0.0) if is_call else max(k - s, 0.0)
    df_r = math.exp(-r * t)
    df_q = math.exp(-q * t)
    sd = v * math.sqrt(t)
    if sd < TINY_TOTAL_VOL:
        fwd_intr = s * df_q - k * df_r
        return max(fwd_intr, 0.0) if is_call else max(-fwd_intr, 0.0)
    d1 = (math.log(s / k) + (r - q) * t) / sd + 0.5 * sd
    d2 = d1 - sd
    if is_call:
        return s * df_q * ncdf(d1) - k * df_r * ncdf(d2)
    return k * df_r * ncdf(-d2) - s * df_q * ncdf(-d1)


@njit(cache=True, parallel=True)
def _bsm_kernel(
    is_call: np.ndarray,
    s: np.ndarray,
    k: np.ndarray,
    t: np.ndarray,
    r: np.ndarray,
    q: np.ndarray,
    v: np.ndarray,
    out: np.ndarray,
) -> None:
    for i in prange(s.shape[0]):
        out[i] = bsm_scalar(is_call[i], s[i], k[i], t[i], r[i], q[i], v[i])


def european_price(batch: OptionBatch) -> FloatArray:
    """BSM price of every option in ``batch`` as European (``is_american`` is ignored)."""
    out = np.empty(len(batch), dtype=np.float64)
    _bsm_kernel(
        batch.is_call,
        batch.spot,
        batch.strike,
        batch.expiry_years,
        batch.rate,
        batch.dividend_yield,
        batch.vol,
        out,
    )
    return out


def black76_price(
    *,
    is_call: np.ndarray,
    forward: np.ndarray,
    strike: np.ndarray,
    expiry_years: np.ndarray,
    rate: np.ndarray,
    vol: np.ndarray,
) -> FloatArray:
    """Black-76 price of European options on futures, per unit of the future.

    ``forward`` is the futures price; ``rate`` discounts the payoff (continuous, annual).
    """
    batch = OptionBatch.of(
        is_call=is_call,
        spot=forward,
        strike=strike,
        expiry_years=expiry_years,
        rate=rate,
        dividend_yield=rate,
        vol=vol,
    )
    return european_price(batch)
