"""EWMA volatility filter and the implied-volatility response to a scenario.

EWMA (RiskMetrics) variance, zero mean, decay ``λ``::

    σ²_t = λ σ²_{t-1} + (1 - λ) r_t²          (σ²_t includes the return of day t)

started from ``σ²_{-1}`` = mean of the first ``warmup`` squared returns. ``σ_{t-1}`` is the
forecast for day ``t``; the de-volatised residual of day ``t`` is ``z_t = r_t / σ_{t-1}``.

Implied-vol response: a scenario moves the whole implied-vol smile of an underlying by
``ln(1 + vol_shock) = a · Δln σ_EWMA + b · z_n``, where ``Δln σ_EWMA`` is the change of the
underlying's EWMA volatility over the scenario window (the realised-vol shock) and
``z_n = r_n / (σ · √n)`` its standardised n-day return (the leverage effect: implied vols rise
when prices fall). ``a`` and ``b`` are fitted by least squares of VIX log changes on the S&P
500's own terms (:func:`calibrate_vol_response`); ``b = 0, a = 1`` is the pure rule
"implied vol moves in proportion to realised vol".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError

DEFAULT_WARMUP = 50


@dataclass(frozen=True, slots=True)
class EwmaFilter:
    """Output of :func:`ewma_filter` over T days × U series (daily, not annualised)."""

    sigma_before: FloatArray
    """σ_{t-1}: the forecast of day t's volatility made the evening before."""
    sigma_after: FloatArray
    """σ_t: the forecast for day t+1, including day t's return."""


def ewma_filter(
    log_returns: FloatArray, *, decay: float, warmup: int = DEFAULT_WARMUP
) -> EwmaFilter:
    """EWMA volatilities of each column of ``log_returns`` (T × U, or T)."""
    if not 0.0 < decay < 1.0:
        raise ValidationError("decay", f"must be in (0, 1), got {decay!r}")
    r = np.asarray(log_returns, dtype=np.float64)
    if r.shape[0] < warmup:
        raise ValidationError("history", f"needs at least {warmup} returns, got {r.shape[0]}")
    r2 = r * r
    v0 = r2[:warmup].mean(axis=0)
    v0 = np.where(v0 > 0, v0, 1e-8)  # a flat warm-up would divide by zero
    zi = (decay * v0)[np.newaxis, ...]
    from scipy.signal import lfilter  # here: importing scipy.signal costs ~0.9 s at CLI start

    var_after, _ = lfilter([1.0 - decay], [1.0, -decay], r2, axis=0, zi=zi)
    var_before = np.concatenate([v0[np.newaxis, ...], var_after[:-1]], axis=0)
    return EwmaFilter(np.sqrt(var_before), np.sqrt(var_after))


def ewma_sigma_now(
    log_returns: FloatArray,
    *,
    decay: float,
    warmup: int = DEFAULT_WARMUP,
    less: tuple[FloatArray, FloatArray] | None = None,
) -> FloatArray:
    """Today's EWMA volatility of each column: ``ewma_filter(...).sigma_after[-1]``.

    With ``less = (f, loadings)`` (T × F and U × F), of the columns of
    ``log_returns - f @ loadingsᵀ``: a linear factor model's residuals, without making
    them.

    The recursion unrolled, ``σ²_T-1 = λ^T σ²_-1 + (1 - λ) Σ_t λ^(T-1-t) r_t²``, is one
    weighted sum per column: a single read of the history instead of the filter's passes
    over T × U temporaries (the Monte Carlo generator needs only today's value). Equal to
    the filter's last row up to rounding (the tests hold it to 1e-12 relative).
    """
    if not 0.0 < decay < 1.0:
        raise ValidationError("decay", f"must be in (0, 1), got {decay!r}")
    r = np.asarray(log_returns, dtype=np.float64)
    t = r.shape[0]
    if t < warmup:
        raise ValidationError("history", f"needs at least {warmup} returns, got {t}")
    r2 = r.reshape(t, -1)
    if less is None:
        f = np.zeros((t, 0))
        loadings_t = np.zeros((0, r2.shape[1]))
    else:
        f = np.ascontiguousarray(less[0], dtype=np.float64)
        loadings_t = np.ascontiguousarray(np.asarray(less[1], dtype=np.float64).T)
        # The kernel does not check its bounds: a mismatch would read past the arrays.
        if f.ndim != 2 or f.shape[0] != t or loadings_t.shape != (f.shape[1], r2.shape[1]):
            raise ValidationError(
                "less",
                f"needs factors T × F and loadings U × F for {t} × {r2.shape[1]} returns, "
                f"got {f.shape} and {loadings_t.T.shape}",
            )
    weights = (1.0 - decay) * decay ** np.arange(t - 1, -1, -1, dtype=np.float64)
    warm, total = np.zeros(r2.shape[1]), np.zeros(r2.shape[1])
    _weighted_square_sums(np.ascontiguousarray(r2), f, loadings_t, weights, warmup, warm, total)
    v0 = warm / warmup
    v0 = np.where(v0 > 0, v0, 1e-8)  # as ewma_filter: a flat warm-up would divide by zero
    sigma: FloatArray = np.sqrt(decay**t * v0 + total)
    return sigma.reshape(r.shape[1:])


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _weighted_square_sums(
    r: np.ndarray,
    f: np.ndarray,
    loadings_t: np.ndarray,
    weights: np.ndarray,
    warmup: int,
    warm: np.ndarray,
    total: np.ndarray,
) -> None:
    """``e = r - f @ loadings_t`` row by row: ``warm += e²`` over the first ``warmup`` rows,
    ``total += weights[t] · e²`` over all, without storing ``e``."""
    n_t, n_u = r.shape
    e = np.empty(n_u)
    for t in range(n_t):
        for c in range(n_u):
            e[c] = r[t, c]
        for k in range(f.shape[1]):
            ftk = f[t, k]
            lk = loadings_t[k]
            for c in range(n_u):
                e[c] -= ftk * lk[c]
        wt = weights[t]
        for c in range(n_u):
            total[c] += wt * (e[c] * e[c])
        if t < warmup:
            for c in range(n_u):
                warm[c] += e[c] * e[c]


@dataclass(frozen=True, slots=True)
class VolResponse:
    """``ln(1 + vol_shock) = ewma_elasticity · Δln σ_EWMA + return_beta · z_n``."""

    ewma_elasticity: float
    return_beta: float

    def vol_shock(self, dlog_sigma: FloatArray, z: FloatArray) -> FloatArray:
        """Relative implied-vol shock (> -1 by construction)."""
        return np.expm1(self.ewma_elasticity * dlog_sigma + self.return_beta * z)


# Fitted by calibrate_vol_response on VIX vs S&P 500, 2014-01-03..2018-12-31, decay 0.97,
# 2-day windows (tests/scenarios/test_ewma.py re-fits and pins these): R² = 0.71. The
# return term carries most of the fit; for another horizon or decay, re-fit.
DEFAULT_VOL_RESPONSE = VolResponse(ewma_elasticity=0.109, return_beta=-0.0864)


def ewma_log_change_for_return(z: FloatArray, *, decay: float, horizon_days: int) -> FloatArray:
    """``Δln σ_EWMA`` after an n-day move of ``z`` standard deviations (used by Monte Carlo).

    Spreading the move evenly over the n days: σ²_after / σ²_before ≈ λⁿ + (1 - λⁿ) z².
    """
    ln = decay**horizon_days
    return 0.5 * np.log(ln + (1.0 - ln) * np.asarray(z, dtype=np.float64) ** 2)


def calibrate_vol_response(
    *,
    index_returns: FloatArray,
    index_dates: NDArray[np.datetime64],
    vix_dates: NDArray[np.datetime64],
    vix: FloatArray,
    decay: float,
    horizon_days: int,
) -> tuple[VolResponse, float]:
    """Least-squares fit of n-day VIX log changes on the index's EWMA and return terms.

    Returns the response and the regression's R². Windows overlap (every day ends one).
    """
    f = ewma_filter(index_returns, decay=decay)
    common, i_idx, v_idx = np.intersect1d(
        index_dates.astype("datetime64[D]"), vix_dates.astype("datetime64[D]"), return_indices=True
    )
    n = horizon_days
    if common.size <= n + 2:
        raise ValidationError("vix", "too few common dates with the index to calibrate")
    end, start = i_idx[n:], i_idx[:-n]
    # Only windows that are n consecutive index days (VIX gaps would stretch them).
    ok = end - start == n
    end, start = end[ok], start[ok]
    dvix = np.log(vix[v_idx[n:]][ok]) - np.log(vix[v_idx[:-n]][ok])
    csum = np.concatenate([[0.0], np.cumsum(index_returns)])
    r_n = csum[end + 1] - csum[start + 1]
    sig0 = f.sigma_after[start]
    dlog = np.log(f.sigma_after[end]) - np.log(sig0)
    z = r_n / (sig0 * math.sqrt(n))
    x = np.column_stack([dlog, z, np.ones_like(z)])
    coef, *_ = np.linalg.lstsq(x, dvix, rcond=None)
    resid = dvix - x @ coef
    r2 = 1.0 - float(resid @ resid) / float(((dvix - dvix.mean()) ** 2).sum())
    return VolResponse(float(coef[0]), float(coef[1])), r2
