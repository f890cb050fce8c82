"""EWMA filter (and today's value alone) against a plain loop, and the implied-vol response
calibration against the real VIX / S&P 500 series shipped with ``arch``."""

from __future__ import annotations

import numpy as np
import pytest

from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import (
    DEFAULT_VOL_RESPONSE,
    calibrate_vol_response,
    ewma_filter,
    ewma_log_change_for_return,
    ewma_sigma_now,
)
from marginflow.scenarios.factors import fit_pca_factor_model
from marginflow.scenarios.history import load_arch_series


def test_filter_matches_the_recursion() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.01, (300, 3))
    f = ewma_filter(r, decay=0.94, warmup=20)
    var = (r[:20] ** 2).mean(axis=0)
    for t in range(300):
        assert f.sigma_before[t] == pytest.approx(np.sqrt(var), rel=1e-12)
        var = 0.94 * var + 0.06 * r[t] ** 2
        assert f.sigma_after[t] == pytest.approx(np.sqrt(var), rel=1e-12)


def test_sigma_now_is_the_recursions_last_value() -> None:
    rng = np.random.default_rng(1)
    # More rows than one block, a flat column (the warm-up's floor) and a 1-D series.
    r = rng.normal(0, 0.01, (700, 4)) * np.array([1.0, 3.0, 0.2, 0.0])
    var = (r[:50] ** 2).mean(axis=0)
    var[3] = 1e-8
    for t in range(700):
        var = 0.97 * var + 0.03 * r[t] ** 2
    np.testing.assert_allclose(ewma_sigma_now(r, decay=0.97), np.sqrt(var), rtol=1e-12)
    assert ewma_sigma_now(r[:, 1], decay=0.97) == pytest.approx(np.sqrt(var[1]), rel=1e-12)
    # Less a factor model's fit: the residuals' filter, without making them.
    f, loadings = rng.normal(0, 0.01, (700, 3)), rng.normal(0, 1, (4, 3))
    resid = ewma_filter(r - f @ loadings.T, decay=0.97).sigma_after[-1]
    got = ewma_sigma_now(r, decay=0.97, less=(f, loadings))
    np.testing.assert_allclose(got, resid, rtol=1e-12)
    with pytest.raises(ValidationError, match="less"):
        ewma_sigma_now(r, decay=0.97, less=(f[1:], loadings))
    with pytest.raises(ValidationError, match="less"):
        ewma_sigma_now(r, decay=0.97, less=(f, loadings[:, :2]))
    with pytest.raises(ValidationError, match="decay"):
        ewma_sigma_now(r, decay=0.0)
    with pytest.raises(ValidationError, match="at least 50"):
        ewma_sigma_now(r[:49], decay=0.9)


def test_filter_rejects_bad_decay_and_short_history() -> None:
    with pytest.raises(ValidationError, match="decay"):
        ewma_filter(np.zeros(100), decay=1.0)
    with pytest.raises(ValidationError, match="at least 50"):
        ewma_filter(np.zeros(10), decay=0.9)


def test_default_response_is_the_vix_fit() -> None:
    arch = load_arch_series()
    fit, r2 = calibrate_vol_response(
        index_returns=arch.history.column("SPX"),
        index_dates=arch.history.dates,
        vix_dates=arch.vix_dates,
        vix=arch.vix,
        decay=0.97,
        horizon_days=2,
    )
    # The defaults are this fit rounded to 3 significant digits.
    assert fit.ewma_elasticity == pytest.approx(DEFAULT_VOL_RESPONSE.ewma_elasticity, abs=5e-4)
    assert fit.return_beta == pytest.approx(DEFAULT_VOL_RESPONSE.return_beta, abs=5e-5)
    assert r2 > 0.65  # implied vol is mostly explained: the leverage effect is real
    # A 5-sigma 2-day fall lifts implied vol by about half (VIX did +50% around such days).
    z = np.array([-5.0])
    shock = DEFAULT_VOL_RESPONSE.vol_shock(
        ewma_log_change_for_return(z, decay=0.97, horizon_days=2), z
    )
    assert 0.3 < shock[0] < 0.8


def test_ewma_change_for_a_quiet_move_is_a_small_decay() -> None:
    out = ewma_log_change_for_return(np.array([0.0, 1.0]), decay=0.97, horizon_days=2)
    assert out[0] == pytest.approx(0.5 * np.log(0.97**2))
    assert out[1] == pytest.approx(0.0)


def test_factor_models_residual_sigma_now_is_its_residuals_filter() -> None:
    h = load_arch_series().history
    model = fit_pca_factor_model(h, n_factors=1)
    want = ewma_filter(model.residuals(h), decay=0.97).sigma_after[-1]
    np.testing.assert_allclose(model.residual_sigma_now(h, decay=0.97), want, rtol=1e-12)
    short = ReturnHistory(h.dates[-1000:], h.underlyings, h.log_returns[-1000:])
    with pytest.raises(ValidationError, match="dates differ"):
        model.residual_sigma_now(short, decay=0.97)
