"""Monte Carlo scenarios: reproducible, right scale, correlation and tail dependence from
the history."""

from __future__ import annotations

import numpy as np
import pytest

from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import ewma_filter
from marginflow.scenarios.factors import FactorModel, fit_pca_factor_model
from marginflow.scenarios.history import load_arch_series
from marginflow.scenarios.montecarlo import student_t_copula


@pytest.fixture(scope="module")
def indices() -> tuple[ReturnHistory, FactorModel]:
    h = load_arch_series().history
    return h, fit_pca_factor_model(h, n_factors=2)


def test_reproducible_and_shaped(indices: tuple[ReturnHistory, FactorModel]) -> None:
    h, m = indices
    a = student_t_copula(h, m, n_scenarios=500, seed=7)
    b = student_t_copula(h, m, n_scenarios=500, seed=7)
    c = student_t_copula(h, m, n_scenarios=500, seed=8)
    assert a.spot_shock.shape == (2, 500)
    assert a.source == "mc"
    assert np.array_equal(a.spot_shock, b.spot_shock)
    assert np.array_equal(a.vol_shock, b.vol_shock)
    assert not np.array_equal(a.spot_shock, c.spot_shock)
    assert a.labels[0] == "mc:00001"


def test_scale_and_dependence_follow_history(indices: tuple[ReturnHistory, FactorModel]) -> None:
    h, m = indices
    s = student_t_copula(h, m, n_scenarios=20_000, horizon_days=2, seed=1)
    x = np.log1p(s.spot_shock.astype(np.float64))
    now = ewma_filter(h.log_returns, decay=0.97).sigma_after[-1] * np.sqrt(2)
    # Standard deviation ≈ today's 2-day EWMA vol. Not exact: each factor is re-volatised
    # by its own EWMA (the PCs' vols, not the indices'), and n-day sums of de-volatised
    # returns have a variance of n only without autocorrelation. Seen: 3% and 10% off.
    assert x.std(axis=1) == pytest.approx(now, rel=0.15)
    # S&P 500 and NASDAQ: de-volatised correlation over the look-back.
    z = (h.log_returns / ewma_filter(h.log_returns, decay=0.97).sigma_before)[-1250:]
    target = np.corrcoef(z.T)[0, 1]
    assert np.corrcoef(x)[0, 1] == pytest.approx(target, abs=0.05)
    # Vol rises when prices fall.
    assert np.corrcoef(x[0], s.vol_shock[0])[0, 1] < -0.5


def test_t_copula_has_joint_crashes() -> None:
    # Two independent-looking factors with zero correlation still crash together under a
    # t copula (common chi-square scale): joint 1% tail hits well above 0.01² = 1e-4.
    rng = np.random.default_rng(0)
    n = 3000
    r = rng.normal(0, 0.01, (n, 2))
    h = ReturnHistory(np.datetime64("2000-01-01") + np.arange(n), ("A", "B"), r)
    model = FactorModel(("A", "B"), ("f1", "f2"), r.copy(), np.eye(2))
    s = student_t_copula(h, model, n_scenarios=50_000, dof=3.0, horizon_days=1, seed=2)
    x = s.spot_shock.astype(np.float64)
    q = np.quantile(x, 0.01, axis=1)
    joint = np.mean((x[0] < q[0]) & (x[1] < q[1]))
    assert joint > 5e-4


def test_bad_settings(indices: tuple[ReturnHistory, FactorModel]) -> None:
    h, m = indices
    with pytest.raises(ValidationError, match="dof"):
        student_t_copula(h, m, n_scenarios=10, dof=2.0)
    with pytest.raises(ValidationError, match="n_scenarios"):
        student_t_copula(h, m, n_scenarios=0)
