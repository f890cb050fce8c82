"""Monte Carlo scenarios: a Student-t copula over factor returns, filtered-historical
marginals, independent Student-t residuals.

For each of N draws (n = margin period of risk in days, ν the copula's degrees of freedom):

1. factors: de-volatise the factor history with EWMA (``z = r / σ_{t-1}``); over the
   look-back estimate the correlation R of the daily ``z`` (de-volatised returns, as STANS
   does) and the empirical distribution of the standardised n-day sums ``Σ z / √n``;
2. copula: ``g ~ N(0, R)``, ``w ~ χ²_ν / ν``, ``u = t_ν(g / √w)`` — tail dependence, so
   factors crash together more often than a Gaussian copula allows;
3. marginals: ``x_f = σ_f,now · √n · Q_f(u_f)`` with ``Q_f`` the empirical quantile
   (linear between plotting positions (i - ½)/m, and beyond the sample a t_ν tail scaled to
   meet it), i.e. the factor's own filtered-historical distribution;
4. underlyings: ``x_u = Σ_f β_uf x_f + σ_e,now · √n · ε_u`` with ε standardised t_ν,
   independent across underlyings, ``σ_e,now`` the EWMA volatility of the residual;
5. spot shock ``exp(x_u) - 1``; vol shock by the :class:`~.ewma.VolResponse` applied to
   ``z_u = x_u / (σ_u,now √n)``, with the EWMA change the n-day move would cause.
"""

from __future__ import annotations

import math

import numpy as np

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import (
    DEFAULT_VOL_RESPONSE,
    VolResponse,
    ewma_filter,
    ewma_log_change_for_return,
)
from marginflow.scenarios.factors import FactorModel
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet


def student_t_copula(
    history: ReturnHistory,
    model: FactorModel,
    *,
    n_scenarios: int = 10_000,
    horizon_days: int = 2,
    lookback_days: int = 1250,
    decay: float = 0.97,
    dof: float = 5.0,
    seed: int = 0,
    vol_response: VolResponse = DEFAULT_VOL_RESPONSE,
) -> ScenarioSet:
    """``n_scenarios`` Monte Carlo scenarios for every underlying of ``history``."""
    from scipy.stats import t as student_t  # here: scipy.stats costs ~0.8 s at CLI start

    if n_scenarios < 1:
        raise ValidationError("n_scenarios", f"must be >= 1, got {n_scenarios}")
    if not dof > 2.0:
        raise ValidationError("dof", f"must be > 2 (finite variance), got {dof!r}")
    if lookback_days < horizon_days + 10 or lookback_days > len(history) - 50:
        raise ValidationError(
            "lookback_days",
            f"must be in {horizon_days + 10}..{len(history) - 50} for this history, "
            f"got {lookback_days}",
        )
    rng = np.random.default_rng(np.random.PCG64(seed))
    n = horizon_days
    sqrt_n = math.sqrt(n)

    ff = ewma_filter(model.factor_returns, decay=decay)
    z = (model.factor_returns / ff.sigma_before)[-lookback_days:]
    corr = np.atleast_2d(np.corrcoef(z, rowvar=False))
    chol = np.linalg.cholesky(corr + 1e-10 * np.eye(corr.shape[0]))
    window = np.lib.stride_tricks.sliding_window_view(z, n, axis=0).sum(axis=-1) / sqrt_n
    marginals = np.sort(window, axis=0)

    g = rng.standard_normal((n_scenarios, corr.shape[0])) @ chol.T
    w = rng.chisquare(dof, (n_scenarios, 1)) / dof
    u = student_t.cdf(g / np.sqrt(w), dof)
    x_f = _empirical_quantile(marginals, u, dof) * (ff.sigma_after[-1] * sqrt_n)

    resid_sigma = ewma_filter(model.residuals(history), decay=decay).sigma_after[-1]
    eps = rng.standard_t(dof, (n_scenarios, len(history.underlyings))) * math.sqrt(
        (dof - 2.0) / dof
    )
    x_u = x_f @ model.loadings.T + eps * (resid_sigma * sqrt_n)

    total_sigma = ewma_filter(history.log_returns, decay=decay).sigma_after[-1]
    z_u = x_u / (total_sigma * sqrt_n)
    dlog = ewma_log_change_for_return(z_u, decay=decay, horizon_days=n)
    vol = vol_response.vol_shock(dlog, z_u)
    return ScenarioSet(
        underlyings=history.underlyings,
        spot_shock=np.ascontiguousarray(np.expm1(x_u).T, dtype=np.float32),
        vol_shock=np.ascontiguousarray(vol.T, dtype=np.float32),
        labels=tuple(f"mc:{i + 1:05d}" for i in range(n_scenarios)),
        group=np.full(n_scenarios, int(ScenarioGroup.CURRENT), dtype=np.int8),
        horizon_days=n,
        source="mc",
        params={
            "as_of": str(history.dates[-1]),
            "n_scenarios": n_scenarios,
            "horizon_days": n,
            "lookback_days": lookback_days,
            "decay": decay,
            "dof": dof,
            "seed": seed,
            "factors": list(model.factor_names),
            "vol_response": [vol_response.ewma_elasticity, vol_response.return_beta],
        },
    )


def _empirical_quantile(sorted_sample: FloatArray, u: FloatArray, dof: float) -> FloatArray:
    """Column-wise quantile of each sample at probabilities ``u`` (N × F), t_ν tails."""
    from scipy.stats import t as student_t  # here: scipy.stats costs ~0.8 s at CLI start

    m = sorted_sample.shape[0]
    p = (np.arange(m) + 0.5) / m
    out = np.empty_like(u)
    t_lo, t_hi = student_t.ppf(p[0], dof), student_t.ppf(p[-1], dof)
    for f in range(u.shape[1]):
        col, uf = sorted_sample[:, f], u[:, f]
        q = np.interp(uf, p, col)
        lo, hi = uf < p[0], uf > p[-1]
        # Beyond the sample: the t_ν quantile, scaled to meet the extreme observation.
        q[lo] = col[0] * student_t.ppf(uf[lo], dof) / t_lo if col[0] < 0 else col[0]
        q[hi] = col[-1] * student_t.ppf(uf[hi], dof) / t_hi if col[-1] > 0 else col[-1]
        out[:, f] = q
    return out
