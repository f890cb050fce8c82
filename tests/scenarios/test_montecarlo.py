"""Monte Carlo scenarios: reproducible, right scale, correlation and tail dependence from
the history; each step's distribution against the model's own targets.

Statistical checks are deterministic (fixed seeds) but not tuned to them: every tolerance
is a number of standard errors of the estimate at the test's sample size, so a wrong
distribution fails and a correct one passes for almost any seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np
import pytest
from scipy import stats

from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import (
    DEFAULT_VOL_RESPONSE,
    ewma_filter,
    ewma_log_change_for_return,
)
from marginflow.scenarios.factors import FactorModel, fit_pca_factor_model
from marginflow.scenarios.history import load_arch_series
from marginflow.scenarios.montecarlo import (
    GENERATOR,
    empirical_quantile,
    run_blocks,
    sfc64_raw,
    student_t_copula,
    underlying_shocks,
)

Z = 5.0
"""Standard errors allowed: a correct generator fails one check in ~1.7 million."""


def binomial_band(p: np.ndarray | float, n: int) -> np.ndarray:
    """Z standard errors of a frequency with probability ``p`` over ``n`` draws."""
    return np.asarray(Z * np.sqrt(np.multiply(p, 1.0 - np.asarray(p)) / n))


def assert_cdf_matches(sample: np.ndarray, quantiles: np.ndarray, probs: np.ndarray) -> None:
    """The share of ``sample`` below each target quantile is its probability, within Z
    binomial standard errors."""
    seen = (sample[:, np.newaxis] <= quantiles[np.newaxis, :]).mean(axis=0)
    band = binomial_band(probs, sample.size)
    assert np.all(np.abs(seen - probs) <= band), (seen, probs, band)


PROBS = np.array([0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999])


@pytest.fixture(scope="module")
def indices() -> tuple[ReturnHistory, FactorModel]:
    h = load_arch_series().history
    return h, fit_pca_factor_model(h, n_factors=2)


@pytest.fixture(scope="module")
def indices_as_factors() -> tuple[ReturnHistory, FactorModel]:
    """S&P 500 and NASDAQ as their own factors: no residual, so each spot shock is the
    copula's factor move itself."""
    h = load_arch_series().history
    return h, FactorModel(h.underlyings, ("spx", "ndx"), h.log_returns.copy(), np.eye(2))


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
    assert a.params["generator"] == GENERATOR  # a stored margin says which draws it used


def test_same_numbers_whatever_the_thread_count() -> None:
    # Many underlyings and few scenarios: many blocks, shared by the threads in any order.
    rng = np.random.default_rng(3)
    n, u = 400, 37
    f = rng.standard_t(4, (n, 3)) * 0.01
    beta = rng.normal(1.0, 0.3, (u, 3))
    r = f @ beta.T + rng.normal(0, 0.01, (n, u))
    names = tuple(f"U{i}" for i in range(u))
    h = ReturnHistory(np.datetime64("2000-01-03") + np.arange(n), names, r)
    model = FactorModel(names, ("a", "b", "c"), f, beta)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = student_t_copula(h, model, n_scenarios=3000, lookback_days=300, seed=11)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = student_t_copula(h, model, n_scenarios=3000, lookback_days=300, seed=11)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one.spot_shock, many.spot_shock)
    assert np.array_equal(one.vol_shock, many.vol_shock)


def test_run_blocks_visits_every_chunk_once() -> None:
    seen = np.zeros(103, dtype=np.int64)

    def make() -> Callable[[int, int], None]:
        def fn(start: int, stop: int) -> None:
            seen[start:stop] += 1

        return fn

    run_blocks(103, 10, make, threads=3)
    assert np.all(seen == 1)


def test_underlying_shocks_do_not_depend_on_threads() -> None:
    rng = np.random.default_rng(12)
    x_f = rng.normal(0, 0.02, (3, 700))
    kwargs = {
        "loadings": rng.normal(0, 0.5, (150, 3)),
        "residual_scale": rng.uniform(0.005, 0.03, 150),
        "total_scale": rng.uniform(0.02, 0.05, 150),
        "row_seeds": np.random.SeedSequence(5).generate_state(450, np.uint64).reshape(150, 3),
        "dof": 4.5,
        "ewma_decay": 0.94**2,
        "vol_response": DEFAULT_VOL_RESPONSE,
    }
    one = underlying_shocks(x_f, threads=1, **kwargs)  # type: ignore[arg-type]
    five = underlying_shocks(x_f, threads=5, **kwargs)  # type: ignore[arg-type]
    assert np.array_equal(one[0], five[0])
    assert np.array_equal(one[1], five[1])


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


def test_factor_marginals_are_the_filtered_historical_distribution(
    indices_as_factors: tuple[ReturnHistory, FactorModel],
) -> None:
    # Each factor's n-day move over today's EWMA vol is distributed as the look-back's
    # standardised n-day sums of de-volatised returns, read at plotting positions (i - ½)/m
    # (numpy's "hazen" quantile).
    h, m = indices_as_factors
    n_s, n = 200_000, 2
    s = student_t_copula(h, m, n_scenarios=n_s, horizon_days=n, seed=5)
    f = ewma_filter(h.log_returns, decay=0.97)
    z = (h.log_returns / f.sigma_before)[-1250:]
    windows = (z[1:] + z[:-1]) / math.sqrt(n)
    x = np.log1p(s.spot_shock.astype(np.float64)) / (f.sigma_after[-1] * math.sqrt(n))[:, None]
    inner = np.array([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    for k in range(2):
        target = np.quantile(windows[:, k], inner, method="hazen")
        assert_cdf_matches(x[k], target, inner)


def test_copula_dependence_is_the_t_copula_of_the_devolatised_correlation(
    indices_as_factors: tuple[ReturnHistory, FactorModel],
) -> None:
    # Kendall's tau does not depend on the marginals; for an elliptical (t) copula with
    # correlation ρ it is (2/π) arcsin ρ (Lindskog, McNeil & Schmock 2003).
    h, m = indices_as_factors
    s = student_t_copula(h, m, n_scenarios=20_000, seed=6)
    z = (h.log_returns / ewma_filter(h.log_returns, decay=0.97).sigma_before)[-1250:]
    rho = np.corrcoef(z.T)[0, 1]
    tau = stats.kendalltau(s.spot_shock[0], s.spot_shock[1]).statistic
    # Standard error of tau: √(4 / 9n) without dependence, less with it (about 0.68 of it
    # at ρ = 0.85, sampled with scipy's multivariate t).
    assert tau == pytest.approx(2.0 / math.pi * math.asin(rho), abs=Z * math.sqrt(4 / 9 / 20_000))


def test_tail_dependence_is_the_t_copulas(
    indices_as_factors: tuple[ReturnHistory, FactorModel],
) -> None:
    # Joint 1% lower-tail frequency of a t_ν copula against the same copula sampled by
    # scipy's multivariate t (an independent generator), at the same correlation.
    h, m = indices_as_factors
    n_s = 200_000
    s = student_t_copula(h, m, n_scenarios=n_s, dof=4.0, seed=9)
    z = (h.log_returns / ewma_filter(h.log_returns, decay=0.97).sigma_before)[-1250:]
    corr = np.corrcoef(z.T)
    ref = stats.multivariate_t(shape=corr, df=4.0).rvs(size=n_s, random_state=1)

    def joint(a: np.ndarray, b: np.ndarray) -> float:
        qa, qb = np.quantile(a, 0.01), np.quantile(b, 0.01)
        return float(np.mean((a <= qa) & (b <= qb)))

    ours = joint(s.spot_shock[0].astype(np.float64), s.spot_shock[1].astype(np.float64))
    theirs = joint(ref[:, 0], ref[:, 1])
    p = 0.5 * (ours + theirs)
    assert abs(ours - theirs) <= math.sqrt(2.0) * binomial_band(p, n_s)


def test_residuals_are_independent_standardised_t(
    indices: tuple[ReturnHistory, FactorModel],
) -> None:
    # One factor (the S&P 500) and underlyings beta·f + noise; the first underlying is the
    # factor itself, so ln(1 + spot) - beta·(its move) is each residual draw.
    h, _ = indices
    rng = np.random.default_rng(4)
    f = h.log_returns[:, :1]
    beta = np.array([[1.0], [0.8], [1.5], [0.3]])
    noise = rng.normal(0, 0.012, (len(h), 4)) * np.array([0.0, 1.0, 0.5, 2.0])
    r = f @ beta.T + noise
    names = ("F", "A", "B", "C")
    hist = ReturnHistory(h.dates, names, r)
    model = FactorModel(names, ("spx",), f.copy(), beta)
    n_s, n, dof = 400_000, 2, 5.0
    s = student_t_copula(hist, model, n_scenarios=n_s, horizon_days=n, dof=dof, seed=3)
    x = np.log1p(s.spot_shock.astype(np.float64))
    sigma_e = ewma_filter(noise[:, 1:], decay=0.97).sigma_after[-1] * math.sqrt(n)
    eps = (x[1:] - beta[1:] * x[0]) / sigma_e[:, None]
    # Standardised t_ν: unit variance, t_ν quantiles scaled by √((ν-2)/ν).
    scale = math.sqrt((dof - 2.0) / dof)
    for e in eps:
        assert_cdf_matches(e, stats.t.ppf(PROBS, dof) * scale, PROBS)
    # Independent of the factor and of each other: correlations within Z/√n of zero, and
    # joint 1% tails at the product of the margins (a common chi-square scale, as in the
    # copula, would lift them).
    c = np.corrcoef(np.vstack([x[0], eps]))
    assert np.all(np.abs(c[np.triu_indices(4, 1)]) <= Z / math.sqrt(n_s))
    tail = np.abs(eps) > stats.t.ppf(0.995, dof) * scale
    for i, j in ((0, 1), (0, 2), (1, 2)):
        joint = float(np.mean(tail[i] & tail[j]))
        assert joint == pytest.approx(1e-4, abs=float(binomial_band(1e-4, n_s)))


def test_residuals_of_underlyings_sharing_a_block_are_independent() -> None:
    # 200 underlyings × 2,000 scenarios: 16 rows to a block. Every pair's correlation is
    # within 6/√n of zero (19,900 pairs: a correct generator exceeds it with odds ~4e-5).
    n_u, n_s = 200, 2000
    spot, _ = underlying_shocks(
        np.zeros((1, n_s)),
        loadings=np.zeros((n_u, 1)),
        residual_scale=np.full(n_u, 0.01),
        total_scale=np.full(n_u, 0.01),
        row_seeds=np.random.SeedSequence(2).generate_state(3 * n_u, np.uint64).reshape(n_u, 3),
        dof=5.0,
        ewma_decay=0.97**2,
        vol_response=DEFAULT_VOL_RESPONSE,
    )
    c = np.corrcoef(np.log1p(spot.astype(np.float64)))
    assert np.abs(c[np.triu_indices(n_u, 1)]).max() <= 6.0 / math.sqrt(n_s)


def test_vol_shock_is_the_vol_response_of_the_move(
    indices: tuple[ReturnHistory, FactorModel],
) -> None:
    # The generator writes the response out for speed; it must be the model's own.
    h, m = indices
    n = 3
    s = student_t_copula(h, m, n_scenarios=5000, horizon_days=n, lookback_days=1000, seed=2)
    x = np.log1p(s.spot_shock.astype(np.float64))
    sigma = ewma_filter(h.log_returns, decay=0.97).sigma_after[-1] * math.sqrt(n)
    z = x / sigma[:, None]
    want = DEFAULT_VOL_RESPONSE.vol_shock(
        ewma_log_change_for_return(z, decay=0.97, horizon_days=n), z
    )
    # x comes back from a float32 spot shock: a few float32 ulps of the vol shock.
    np.testing.assert_allclose(s.vol_shock, want, rtol=2e-6, atol=1e-7)


def test_underlying_shocks_add_the_factor_moves() -> None:
    # A zero residual leaves exp(β·x_f) - 1, rounded once to float32 (the sum's rounding
    # may differ from BLAS's by a float64 ulp: one float32 ulp at most).
    rng = np.random.default_rng(8)
    x_f = rng.normal(0, 0.02, (5, 999))
    loadings = rng.normal(0, 0.5, (7, 5))
    spot, vol = underlying_shocks(
        x_f,
        loadings=loadings,
        residual_scale=np.zeros(7),
        total_scale=np.full(7, 0.03),
        row_seeds=np.arange(21, dtype=np.uint64).reshape(7, 3),
        dof=5.0,
        ewma_decay=0.97**2,
        vol_response=DEFAULT_VOL_RESPONSE,
        threads=2,
    )
    x = loadings @ x_f
    np.testing.assert_array_max_ulp(spot, np.expm1(x).astype(np.float32), maxulp=1)
    z = x / 0.03
    want = DEFAULT_VOL_RESPONSE.vol_shock(
        ewma_log_change_for_return(z, decay=0.97, horizon_days=2), z
    )
    np.testing.assert_allclose(vol, want, rtol=1e-6)


def test_empirical_quantile_is_linear_between_plotting_positions_with_t_tails() -> None:
    # Against the definition, with scipy's t cdf and ppf: np.interp at u inside the
    # sample's plotting positions, x_1 · t⁻¹(u) / t⁻¹(p_1) below them (and the same above).
    rng = np.random.default_rng(1)
    m, dof = 40, 4.0
    sample = np.sort(rng.normal(0, 1, (m, 2)), axis=0)
    sample[:, 1] = np.sort(np.abs(sample[:, 1]))  # lowest observation above zero: held flat
    t = stats.t.rvs(dof, size=(2, 20_000), random_state=2) * 1.5
    got = empirical_quantile(sample, t, dof, threads=2)
    p = (np.arange(m) + 0.5) / m
    for k in range(2):
        u = stats.t.cdf(t[k], dof)
        want = np.interp(u, p, sample[:, k])
        lo, hi = u < p[0], u > p[-1]
        assert lo.any()
        assert hi.any()
        if sample[0, k] < 0:
            want[lo] = sample[0, k] * stats.t.ppf(u[lo], dof) / stats.t.ppf(p[0], dof)
        else:
            want[lo] = sample[0, k]
        want[hi] = sample[-1, k] * stats.t.ppf(u[hi], dof) / stats.t.ppf(p[-1], dof)
        np.testing.assert_allclose(got[k], want, rtol=1e-9, atol=1e-12)


def test_residual_stream_is_numpys_sfc64() -> None:
    # The per-underlying generator is SFC64 exactly as NumPy implements it: same seeding
    # (three words, counter 1, 12 outputs discarded) and the same outputs.
    for entropy in (0, 1, 2**63 + 12345):
        seq = np.random.SeedSequence(entropy)
        words = seq.generate_state(3, np.uint64)
        want = np.random.SFC64(np.random.SeedSequence(entropy)).random_raw(1000)
        assert np.array_equal(sfc64_raw(words, 1000), want)


def test_bad_settings(indices: tuple[ReturnHistory, FactorModel]) -> None:
    h, m = indices
    with pytest.raises(ValidationError, match="dof"):
        student_t_copula(h, m, n_scenarios=10, dof=2.0)
    with pytest.raises(ValidationError, match="n_scenarios"):
        student_t_copula(h, m, n_scenarios=0)
    with pytest.raises(ValidationError, match="sorted_sample"):
        empirical_quantile(np.zeros((10, 3)), np.zeros((2, 5)), 5.0)
    with pytest.raises(ValidationError, match="loadings"):
        underlying_shocks(
            np.zeros((2, 10)),
            loadings=np.zeros((4, 1)),
            residual_scale=np.ones(4),
            total_scale=np.ones(4),
            row_seeds=np.zeros((4, 3), dtype=np.uint64),
            dof=5.0,
            ewma_decay=0.9,
            vol_response=DEFAULT_VOL_RESPONSE,
        )
    with pytest.raises(ValidationError, match="row_seeds"):
        underlying_shocks(
            np.zeros((1, 10)),
            loadings=np.zeros((4, 1)),
            residual_scale=np.ones(4),
            total_scale=np.ones(4),
            row_seeds=np.zeros((3, 3), dtype=np.uint64),
            dof=5.0,
            ewma_decay=0.9,
            vol_response=DEFAULT_VOL_RESPONSE,
        )
