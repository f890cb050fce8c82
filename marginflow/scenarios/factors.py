"""Linear factor models of daily returns: ``r_t[u] = Σ_f loadings[u, f] · f_t[f] + e_t[u]``.

Used by the Monte Carlo generator (a copula over the factors, independent residuals) and
by the synthetic universe. A model for any history can be fitted by principal components
(:func:`fit_pca_factor_model`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import ewma_filter, ewma_sigma_now


@dataclass(frozen=True, slots=True)
class FactorModel:
    """F factors with daily log-return history (T × F, on the history's dates) and the
    loadings (U × F) of each underlying, rows in ``underlyings`` order."""

    underlyings: tuple[str, ...]
    factor_names: tuple[str, ...]
    factor_returns: FloatArray
    loadings: FloatArray

    def __post_init__(self) -> None:
        u, f = len(self.underlyings), len(self.factor_names)
        if self.loadings.shape != (u, f):
            raise ValidationError("loadings", f"shape {self.loadings.shape} != ({u}, {f})")
        if self.factor_returns.ndim != 2 or self.factor_returns.shape[1] != f:
            raise ValidationError("factor_returns", f"must have {f} columns")

    def residuals(self, history: ReturnHistory) -> FloatArray:
        """Idiosyncratic returns ``e_t = r_t - f_t · loadingsᵀ`` (T × U)."""
        self._check(history)
        return np.asarray(history.log_returns - self.factor_returns @ self.loadings.T)

    def residual_sigma_now(self, history: ReturnHistory, *, decay: float) -> FloatArray:
        """Today's EWMA volatility of each underlying's residual (U): the last row of
        ``ewma_filter(self.residuals(history)).sigma_after``, in one pass (no T × U
        residual matrix)."""
        self._check(history)
        return ewma_sigma_now(
            history.log_returns, decay=decay, less=(self.factor_returns, self.loadings)
        )

    def _check(self, history: ReturnHistory) -> None:
        if history.underlyings != self.underlyings:
            raise ValidationError("history", "underlyings differ from the factor model's")
        if self.factor_returns.shape[0] != len(history):
            raise ValidationError("history", "dates differ from the factor model's")


def fit_pca_factor_model(
    history: ReturnHistory, *, n_factors: int = 5, decay: float = 0.97, lookback_days: int = 1250
) -> FactorModel:
    """Principal components of the de-volatised correlation over the look-back.

    Loadings are the top ``n_factors`` eigenvectors (orthonormal); the factor returns are the
    projections ``r_t · V`` of the raw returns, so ``f_t Vᵀ`` is the least-squares
    reconstruction of ``r_t`` in the factors' span.
    """
    u = len(history.underlyings)
    if not 1 <= n_factors <= u:
        raise ValidationError("n_factors", f"must be in 1..{u}, got {n_factors}")
    f = ewma_filter(history.log_returns, decay=decay)
    z = (history.log_returns / f.sigma_before)[-lookback_days:]
    corr = np.corrcoef(z, rowvar=False).reshape(u, u)
    _, vecs = np.linalg.eigh(corr)
    v = vecs[:, ::-1][:, :n_factors]
    v = v * np.sign(v.sum(axis=0, keepdims=True) + 1e-300)  # first factor loads positively
    return FactorModel(
        underlyings=history.underlyings,
        factor_names=tuple(f"pc{i + 1}" for i in range(n_factors)),
        factor_returns=history.log_returns @ v,
        loadings=v,
    )
