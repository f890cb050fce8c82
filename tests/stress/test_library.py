"""The built-in stress sets: stored one file per version, still what the builders make, and
materialised over a synthetic book as the engine will take them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from marginflow.core.errors import ConfigurationError
from marginflow.sim.universe import generate_universe
from marginflow.stress.historical import historical_set, published_set
from marginflow.stress.library import SETS_DIR, builtin_set, builtin_versions
from marginflow.stress.scenarios import StressSet, market_betas

REMAKE = (
    "the builder no longer gives the stored {name} {version}: if the change is meant, store "
    "it as a new version (save_stress_set(builder(version=...), SETS_DIR / name / "
    "f'{{version}}.toml'), see marginflow/stress/sets/README.md), never over the old one"
)


def test_the_library_lists_each_set_and_version() -> None:
    assert builtin_versions() == {"historical": ("1",), "published": ("1",)}


@pytest.mark.parametrize(("name", "builder"), [("historical", historical_set),
                                               ("published", published_set)])  # fmt: skip
def test_stored_sets_are_what_the_builders_make(
    name: str, builder: Callable[..., StressSet]
) -> None:
    """The stored set is what its builder makes, shock for shock to 1e-12 relative: a code
    change that moves a shock fails here, while the last bit of a shock derived through the
    platform's exp and log (which differs between NumPy builds: the proxy's clip at the
    VIX's largest move came out 1.1558821712510847 on one machine, 1.155882171251085 on
    another) does not. Everything else, labels, dates and sources, is equal exactly."""
    stored = builtin_set(name)
    assert (stored.name, stored.version) == (name, "1")
    made = builder(version="1")
    message = REMAKE.format(name=name, version="1")
    assert len(made.scenarios) == len(stored.scenarios), message
    for a, b in zip(made.scenarios, stored.scenarios, strict=True):
        other = [f.name for f in dataclasses.fields(a) if f.name not in ("market", "named")]
        assert [getattr(a, f) for f in other] == [getattr(b, f) for f in other], message
        assert (a.market is None) == (b.market is None), message
        shocks = [(a.market, b.market)] if a.market is not None else []
        assert a.named.keys() == b.named.keys(), message
        shocks += [(a.named[k], b.named[k]) for k in a.named]
        for x, y in shocks:
            assert x is not None
            assert y is not None
            assert x.spot == pytest.approx(y.spot, rel=1e-12, abs=1e-15), message
            assert x.vol == pytest.approx(y.vol, rel=1e-12, abs=1e-15), message


def test_unknown_sets_and_versions_are_named() -> None:
    with pytest.raises(ConfigurationError, match="no built-in stress set 'nope'; there are: "):
        builtin_set("nope")
    with pytest.raises(ConfigurationError, match="'historical' has no version '9'; there are: 1"):
        builtin_set("historical", "9")
    assert builtin_set("published", "1").identity["version"] == "1"


def test_sets_dir_holds_only_the_library() -> None:
    files = sorted(p.relative_to(SETS_DIR).as_posix() for p in SETS_DIR.rglob("*.toml"))
    assert files == ["historical/1.toml", "published/1.toml"]


def test_the_historical_set_over_a_synthetic_book() -> None:
    universe = generate_universe(12, seed=5)
    ids = universe.underlyings
    stress = builtin_set("historical")
    # the whole history: the universe's market loadings are its documented betas
    betas = market_betas(universe.history, market="SPX", indices=("SPX", "NDX"),
                         lookback_days=len(universe.history))  # fmt: skip
    loadings = universe.factors.loadings[:, 0]
    assert [betas[u] for u in ids[2:]] == pytest.approx(loadings[2:].tolist(), abs=0.15)
    scen = stress.scenario_set(ids, betas=betas)
    n = len(stress.scenarios)
    assert scen.spot_shock.shape == scen.vol_shock.shape == (12, n)
    assert scen.labels == stress.labels
    assert scen.horizon_days == 10
    assert scen.params["fingerprint"] == stress.fingerprint
    market = np.array([x.market.spot for x in stress.scenarios if x.market is not None])
    vol = np.array([x.market.vol for x in stress.scenarios if x.market is not None])
    ndx = np.array([x.named["NDX"].spot for x in stress.scenarios])
    np.testing.assert_allclose(scen.spot_shock[0], market, rtol=1e-6)  # SPX: the index move
    np.testing.assert_allclose(scen.spot_shock[1], ndx, rtol=1e-6)  # NDX: its own
    for i, u in enumerate(ids[2:], start=2):
        np.testing.assert_allclose(scen.spot_shock[i], (1 + market) ** betas[u] - 1, rtol=1e-5)
    np.testing.assert_allclose(scen.vol_shock, np.broadcast_to(vol, (12, n)), rtol=1e-6)
