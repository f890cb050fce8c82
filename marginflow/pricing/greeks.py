"""Option Greeks over a batch.

Conventions (per unit of the underlying, like prices):

* ``delta`` = dV/dS, ``gamma`` = d²V/dS²;
* ``vega`` = dV/dvol per 1.00 of annualised vol (divide by 100 for one vol point);
* ``theta`` = dV/dt in calendar time = -dV/dT, per year (divide by 365 for one day);
  negative for a long option that loses time value;
* ``rho`` = dV/dr per 1.00 of rate, with the dividend yield held fixed (for a Black-76
  batch, where yield equals rate, this is not the futures-option rho ``-T V``).

European Greeks are analytic. American Greeks are central differences of the American
price (the ALO price is smooth in each input away from expiry), with bumps chosen so that
quadrature noise (~1e-13) stays far below the truncation error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from marginflow.core.batch import FloatArray, OptionBatch
from marginflow.pricing.black_scholes import TINY_TOTAL_VOL, bsm_scalar
from marginflow.pricing.normal import ncdf, npdf

# Relative spot bump and absolute vol/rate bumps for American finite differences.
_SPOT_BUMP = 1e-3
_VOL_BUMP = 1e-4
_RATE_BUMP = 1e-4
_TIME_BUMP = 1.0 / 3650.0


@dataclass(frozen=True, slots=True)
class Greeks:
    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    rho: FloatArray


@njit(cache=True, parallel=True)
def _bsm_greeks_kernel(
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
        out[0, i] = bsm_scalar(is_call[i], s[i], k[i], t[i], r[i], q[i], v[i])
        sign = 1.0 if is_call[i] else -1.0
        if t[i] <= 0.0:
            itm = sign * (s[i] - k[i]) > 0.0
            out[1, i] = sign if itm else 0.0
            out[2:, i] = 0.0
            continue
        df_r = math.exp(-r[i] * t[i])
        df_q = math.exp(-q[i] * t[i])
        sqrt_t = math.sqrt(t[i])
        sd = v[i] * sqrt_t
        if sd < TINY_TOTAL_VOL:
            itm = sign * (s[i] * df_q - k[i] * df_r) > 0.0
            out[1, i] = sign * df_q if itm else 0.0
            out[2, i] = 0.0
            out[3, i] = 0.0
            out[4, i] = sign * (q[i] * s[i] * df_q - r[i] * k[i] * df_r) if itm else 0.0
            out[5, i] = sign * k[i] * t[i] * df_r if itm else 0.0
            continue
        d1 = (math.log(s[i] / k[i]) + (r[i] - q[i]) * t[i]) / sd + 0.5 * sd
        d2 = d1 - sd
        nd1 = ncdf(sign * d1)
        nd2 = ncdf(sign * d2)
        pdf = npdf(d1)
        out[1, i] = sign * df_q * nd1
        out[2, i] = df_q * pdf / (s[i] * sd)
        out[3, i] = s[i] * df_q * pdf * sqrt_t
        out[4, i] = (
            -s[i] * df_q * pdf * v[i] / (2.0 * sqrt_t)
            - sign * r[i] * k[i] * df_r * nd2
            + sign * q[i] * s[i] * df_q * nd1
        )
        out[5, i] = sign * k[i] * t[i] * df_r * nd2


def european_greeks(batch: OptionBatch) -> Greeks:
    """Analytic BSM price and Greeks of every option, treated as European."""
    out = np.empty((6, len(batch)), dtype=np.float64)
    _bsm_greeks_kernel(
        batch.is_call,
        batch.spot,
        batch.strike,
        batch.expiry_years,
        batch.rate,
        batch.dividend_yield,
        batch.vol,
        out,
    )
    return Greeks(*out)


def american_greeks(batch: OptionBatch) -> Greeks:
    """Price and Greeks of every option as American, by central differences."""
    from marginflow.pricing.american import american_price

    def slope(field: str, hi: FloatArray, lo: FloatArray) -> FloatArray:
        p_hi = american_price(batch.replace(**{field: hi}))
        p_lo = american_price(batch.replace(**{field: lo}))
        return np.asarray((p_hi - p_lo) / (hi - lo), dtype=np.float64)

    base = american_price(batch)
    h = _SPOT_BUMP * batch.spot
    up = american_price(batch.replace(spot=batch.spot + h))
    down = american_price(batch.replace(spot=batch.spot - h))
    t = batch.expiry_years
    # At expiry theta is undefined; a one-sided bump keeps T >= 0 just before it.
    theta = -slope("expiry_years", t + _TIME_BUMP, np.maximum(t - _TIME_BUMP, 0.0))
    return Greeks(
        price=base,
        delta=(up - down) / (2.0 * h),
        gamma=(up - 2.0 * base + down) / (h * h),
        vega=slope("vol", batch.vol + _VOL_BUMP, np.maximum(batch.vol - _VOL_BUMP, 0.0)),
        theta=np.where(t > 0, theta, 0.0),
        rho=slope("rate", batch.rate + _RATE_BUMP, batch.rate - _RATE_BUMP),
    )


def greeks(batch: OptionBatch) -> Greeks:
    """Price and Greeks, European or American per ``batch.is_american``."""
    result = european_greeks(batch)
    if not batch.is_american.any():
        return result
    idx = np.flatnonzero(batch.is_american)
    am = american_greeks(batch.take(idx))
    for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
        getattr(result, name)[idx] = getattr(am, name)
    return result
