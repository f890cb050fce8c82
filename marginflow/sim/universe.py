"""A synthetic universe of thousands of correlated underlyings, built on real index history.

Factor model (daily log returns, T ≈ 5,000 business days 1999-2018 of the ``arch`` data):

* ``market`` = the S&P 500's real returns; ``growth`` = the NASDAQ's real returns net of
  their S&P 500 beta (a tech/growth factor);
* 11 ``sector`` factors: ``c_k · σ^m_{t-1} · ε`` with ``σ^m`` the S&P 500's EWMA volatility
  (λ = 0.94), ``c_k`` in [0.45, 0.8] and ε standardised Student-t(5): sector moves cluster
  with the market's volatility regime, as in 2008;
* idiosyncratic: ``s_u · (σ^m_{t-1} / median σ^m)^0.5 · ε``, ε standardised Student-t(4).

Each stock loads on the market (β ~ N(1, 0.25) clipped to [0.3, 2]), on growth (N(0, 0.3),
+0.7 in the technology sector), and on its own sector (U[0.6, 1.2]); its idiosyncratic scale
is set so its unconditional volatility matches a target drawn log-normally around 30% a year
(clipped to [15%, 100%]), typical of listed US stocks. The result: median pairwise
correlation ≈ 0.2-0.3 in calm years, markedly higher in 2008, fat tails and volatility
clustering from the real index history. ``SPX`` and ``NDX`` are the real series themselves.

Everything is reproducible from the seed.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginflow.core.batch import BoolArray, FloatArray
from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import ewma_filter
from marginflow.scenarios.factors import FactorModel
from marginflow.scenarios.history import load_arch_series

N_SECTORS = 11
TECH_SECTOR = 0
INDEX_IDS = ("SPX", "NDX")


@dataclass(frozen=True, slots=True)
class Universe:
    """Underlyings with history, factor model and reference data for a synthetic book."""

    history: ReturnHistory
    factors: FactorModel
    kind: tuple[str, ...]
    """``index``, ``etf`` or ``equity`` per underlying."""
    sector: NDArray[np.int16]
    """Sector 0..10, or -1 for the indices."""
    high_cap_broad_index: BoolArray
    last_close: FloatArray
    adv: FloatArray
    """Average daily volume in units of the underlying (shares, index units)."""
    dividend_yield: FloatArray

    @property
    def underlyings(self) -> tuple[str, ...]:
        return self.history.underlyings


def generate_universe(n_underlyings: int, *, seed: int = 0) -> Universe:
    """``n_underlyings`` (>= 2) underlyings: SPX, NDX, then ETFs (~3%) and stocks."""
    if n_underlyings < 2:
        raise ValidationError("n_underlyings", f"must be >= 2 (SPX and NDX), got {n_underlyings}")
    rng = np.random.default_rng(np.random.PCG64(seed))
    arch = load_arch_series()
    spx, ndx = arch.history.column("SPX"), arch.history.column("NDX")
    T, n = len(arch.history), n_underlyings
    beta_ndx = float(np.dot(spx, ndx) / np.dot(spx, spx))
    growth = ndx - beta_ndx * spx
    regime = ewma_filter(spx, decay=0.94).sigma_before
    scale_k = rng.uniform(0.45, 0.8, N_SECTORS)
    sectors = scale_k[None, :] * regime[:, None] * _std_t(rng, 5.0, (T, N_SECTORS))
    factor_returns = np.column_stack([spx, growth, sectors])
    names = ("market", "growth", *(f"sector{k}" for k in range(N_SECTORS)))

    n_other = n - 2
    is_etf = np.zeros(n_other, dtype=bool)
    is_etf[: max(n_other * 3 // 100, 1 if n_other >= 10 else 0)] = True
    rng.shuffle(is_etf)
    sector = rng.integers(0, N_SECTORS, n_other).astype(np.int16)
    loadings = np.zeros((n, len(names)))
    loadings[0, 0] = 1.0
    loadings[1, :2] = (beta_ndx, 1.0)
    beta_m = np.clip(rng.normal(1.0, 0.25, n_other), 0.3, 2.0)
    beta_g = rng.normal(0.0, 0.3, n_other) + np.where(sector == TECH_SECTOR, 0.7, 0.0)
    beta_s = rng.uniform(0.6, 1.2, n_other)
    loadings[2:, 0] = np.where(is_etf, 1.0, beta_m)
    loadings[2:, 1] = np.where(is_etf, 0.0, beta_g)
    loadings[2 + np.arange(n_other), 2 + sector] = beta_s
    systematic = factor_returns @ loadings.T

    target = np.clip(np.exp(rng.normal(np.log(0.30), 0.35, n_other)), 0.15, 1.0) / np.sqrt(252)
    target = np.where(is_etf, 0.0, target)  # ETFs: systematic plus a small tracking error
    sys_var = systematic[:, 2:].var(axis=0)
    idio_sd = np.where(is_etf, 0.002, np.sqrt(np.maximum(target**2 - sys_var, (0.3 * target) ** 2)))
    clustering = np.sqrt(regime / np.median(regime))
    clustering /= np.sqrt(np.mean(clustering**2))  # unit mean square keeps s_u unconditional
    idio = _std_t(rng, 4.0, (T, n_other)) * clustering[:, None] * idio_sd[None, :]
    returns = systematic
    returns[:, 2:] += idio

    ids = (*INDEX_IDS, *_tickers(rng, n_other))
    history = ReturnHistory(arch.history.dates, ids, returns)
    kind = ("index", "index", *("etf" if e else "equity" for e in is_etf))
    last = np.concatenate(
        [arch.last_close, np.clip(np.exp(rng.normal(np.log(60.0), 0.9, n_other)), 3.0, 1500.0)]
    )
    adv = np.concatenate(
        [[5e6, 2e6], np.exp(rng.normal(np.log(1.5e6), 1.0, n_other)) * np.where(is_etf, 8, 1)]
    )
    div = np.concatenate(
        [[0.02, 0.01], np.where(rng.random(n_other) < 0.3, 0.0, rng.uniform(0.0, 0.04, n_other))]
    )
    return Universe(
        history=history,
        factors=FactorModel(ids, names, factor_returns, loadings),
        kind=kind,
        sector=np.concatenate([[-1, -1], sector]).astype(np.int16),
        high_cap_broad_index=np.array([True] + [False] * (n - 1)),
        last_close=last,
        adv=adv,
        dividend_yield=div,
    )


def _std_t(rng: np.random.Generator, dof: float, shape: tuple[int, int]) -> FloatArray:
    """Student-t draws scaled to unit variance."""
    return np.asarray(rng.standard_t(dof, shape) * np.sqrt((dof - 2.0) / dof))


def _tickers(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list(string.ascii_uppercase))
    seen: set[str] = set(INDEX_IDS)
    out: list[str] = []
    while len(out) < n:
        lengths = rng.integers(3, 5, 2 * (n - len(out)) + 8)
        for length in lengths:
            t = "".join(rng.choice(letters, int(length)))
            if t not in seen:
                seen.add(t)
                out.append(t)
                if len(out) == n:
                    break
    return out
