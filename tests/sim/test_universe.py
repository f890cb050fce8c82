"""The synthetic universe: real indices, reproducible, realistic cross-section."""

from __future__ import annotations

import numpy as np
import pytest

from marginflow.core.errors import ValidationError
from marginflow.scenarios.history import load_arch_series
from marginflow.sim.universe import generate_universe


@pytest.fixture(scope="module")
def universe_300():  # type: ignore[no-untyped-def]
    return generate_universe(300, seed=5)


def test_indices_are_the_real_series(universe_300) -> None:  # type: ignore[no-untyped-def]
    arch = load_arch_series().history
    h = universe_300.history
    assert h.underlyings[:2] == ("SPX", "NDX")
    assert np.allclose(h.column("SPX"), arch.column("SPX"), rtol=0, atol=1e-15)
    assert np.allclose(h.column("NDX"), arch.column("NDX"), rtol=0, atol=1e-15)
    assert universe_300.high_cap_broad_index.tolist()[:2] == [True, False]


def test_reproducible_by_seed(universe_300) -> None:  # type: ignore[no-untyped-def]
    again = generate_universe(300, seed=5)
    assert again.underlyings == universe_300.underlyings
    assert np.array_equal(again.history.log_returns, universe_300.history.log_returns)
    other = generate_universe(300, seed=6)
    assert not np.array_equal(other.history.log_returns, universe_300.history.log_returns)


def test_cross_section_looks_like_us_stocks(universe_300) -> None:  # type: ignore[no-untyped-def]
    h = universe_300.history
    stocks = np.array([k == "equity" for k in universe_300.kind])
    r = h.log_returns[:, stocks]
    vol = r.std(axis=0) * np.sqrt(252)
    assert 0.22 < np.median(vol) < 0.40  # target median 30% a year

    def median_corr(start: str, end: str) -> float:
        mask = (h.dates >= np.datetime64(start)) & (h.dates <= np.datetime64(end))
        c = np.corrcoef(r[mask][:, :100].T)
        return float(np.median(c[np.triu_indices(100, 1)]))

    calm, crisis = median_corr("2017-01-01", "2017-12-31"), median_corr("2008-09-01", "2008-12-31")
    assert 0.1 < calm < 0.35
    assert crisis > calm + 0.2  # correlations rise in a crisis, as in 2008
    kurt = ((r - r.mean(0)) ** 4).mean(0) / r.var(0) ** 2
    assert np.median(kurt) > 5  # fat tails (normal: 3)


def test_at_least_two() -> None:
    with pytest.raises(ValidationError, match="n_underlyings"):
        generate_universe(1)
