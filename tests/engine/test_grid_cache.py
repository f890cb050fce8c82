"""The premium-grid cache: reused, extended and rebuilt grids give the bits a fresh build
gives, the engine shares one cache between its full and incremental revaluations, and the
cache's memory is bounded."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.core.book import Market
from marginflow.engine.revaluation import GridCache, revalue
from marginflow.engine.state import MarginEngine
from marginflow.margin.es_model import ExpectedShortfallModel
from tests.engine.conftest import SmallCase

MODEL = ExpectedShortfallModel()

# (underlying, spot factor, ATM vol factor or None, skew shift or None): spot-only moves up
# to ±35% stretch the moneyness lattice either way (the scenario reach is about ±30%), a
# factor of 1 returns to a price already seen; vol and skew moves add vol rows, and a vol
# move to another octave changes the lattice (a new grid).
move = st.tuples(
    st.integers(0, 7),
    st.sampled_from([0.65, 0.8, 0.97, 1.0, 1.01, 1.2, 1.35]),
    st.one_of(st.none(), st.sampled_from([0.9, 1.0, 1.15, 1.7])),
    st.one_of(st.none(), st.sampled_from([-0.05, 0.0, 0.03])),
)


def _fresh(eng: MarginEngine, market: Market) -> np.ndarray:
    """A revaluation of the engine's book on ``market`` without any cache."""
    out = revalue(
        instruments=eng.book.instruments,
        market=market,
        spot_shock=eng._spot_shock,
        vol_shock=eng._vol_shock,
        settings=eng.revaluation,
    )
    out[eng._expired] = 0.0
    return out


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moves=st.lists(st.lists(move, min_size=1, max_size=3), min_size=1, max_size=8))
def test_cached_moves_equal_fresh_revaluation(small_case: SmallCase, moves: list) -> None:  # type: ignore[type-arg]
    b = small_case.book
    eng = MarginEngine(b, small_case.scenarios, MODEL)
    for batch in moves:
        market = eng.book.market
        change: dict[str, tuple[float | None, ...]] = {}
        for u, s, v, k in batch:
            vol = None if v is None else float(market.atm_vol[u]) * v
            skew = None if k is None else float(market.skew[u]) + k
            change[b.underlyings.ids[u]] = (float(market.spot[u]) * s, vol, skew)
        eng.apply_batch(moves=change)
    assert np.array_equal(eng.matrix, _fresh(eng, eng.book.market))


def test_spot_and_vol_moves_reuse_and_extend_new_octave_rebuilds(small_case: SmallCase) -> None:
    b = small_case.book
    eng = MarginEngine(b, small_case.scenarios, MODEL)
    cache = eng.grids
    built = cache.built
    assert built > 0
    assert cache.hits == 0
    assert cache.extended == 0
    ins = b.instruments
    a = int(ins.underlying[np.flatnonzero(ins.is_american & ins.is_option)[0]])
    u = b.underlyings.ids[a]
    s0, v0 = float(b.market.spot[a]), float(b.market.atm_vol[a])

    eng.apply_market(u, spot=s0 * 1.002)  # inside the lattice built (with its margin)
    assert (cache.built, cache.extended) == (built, 0)
    assert cache.hits > 0
    hits = cache.hits
    eng.apply_market(u, spot=s0 * 1.5)  # beyond it: new nodes on the up side
    assert cache.built == built
    assert cache.extended > 0
    extended = cache.extended
    eng.apply_market(u, spot=s0 * 0.6)  # and on the down side
    assert cache.built == built
    assert cache.extended > extended
    eng.apply_market(u, spot=s0)  # back: all there
    assert cache.built == built
    assert cache.hits > hits
    assert np.array_equal(eng.matrix, _fresh(eng, eng.book.market))

    # The vol axis is the option's own vol, so a vol move keeps the grids (at most new vol
    # rows): only the lattice scale, the ATM vol's octave, is in the key.
    eng.apply_market(u, atm_vol=v0 * 1.1)
    assert cache.built == built
    assert np.array_equal(eng.matrix, _fresh(eng, eng.book.market))
    eng.apply_market(u, atm_vol=v0 * 2.0)  # another octave: another lattice, new grids
    assert cache.built > built
    built = cache.built
    assert np.array_equal(eng.matrix, _fresh(eng, eng.book.market))
    eng.apply_market(u, atm_vol=v0)  # the old grids are still right for the old vol
    assert cache.built == built
    assert np.array_equal(eng.matrix, _fresh(eng, eng.book.market))


def test_vol_rows_extend_both_ways(small_case: SmallCase) -> None:
    """Scenario sets reaching further in vol add rows above and below; the rows already
    priced keep their bits."""
    b = small_case.book
    spot, vol = small_case.scenarios.aligned(b.underlyings.ids)
    args = {"instruments": b.instruments, "market": b.market, "spot_shock": spot}
    cache = GridCache()
    narrow = np.clip(vol, -0.1, 0.1).astype(np.float32)
    revalue(**args, vol_shock=narrow, cache=cache)
    built = cache.built
    wide = np.clip(vol * 3.0, -0.8, 3.0).astype(np.float32)
    cached = revalue(**args, vol_shock=wide, cache=cache)
    assert cache.built == built
    assert cache.extended > 0
    assert np.array_equal(cached, revalue(**args, vol_shock=wide))
    assert np.array_equal(
        revalue(**args, vol_shock=narrow, cache=cache), revalue(**args, vol_shock=narrow)
    )


def test_memory_bounded_least_recently_used_dropped(small_case: SmallCase) -> None:
    b = small_case.book
    spot, vol = small_case.scenarios.aligned(b.underlyings.ids)
    args = {"instruments": b.instruments, "spot_shock": spot, "vol_shock": vol}
    full = GridCache()
    revalue(**args, market=b.market, cache=full)
    small = GridCache(max_nodes=full.nodes // 2)
    revalue(**args, market=b.market, cache=small)
    assert 0 < small.nodes <= small.max_nodes
    assert len(small) < len(full)
    # what was dropped is built again, to the same bits
    assert np.array_equal(
        revalue(**args, market=b.market, cache=small), revalue(**args, market=b.market)
    )


def test_underlyings_with_one_key_share_a_grid_and_reprice_nothing(small_case: SmallCase) -> None:
    """Underlyings with one rate, dividend yield and vol octave read one grid per expiry
    and side, extended to all their needs: moving them back and forth over prices already
    seen prices no node again, the bits are a fresh build's, and the cache keeps no view
    of a call's scratch buffer."""
    b = small_case.book
    n_u = len(b.underlyings)
    market = replace(
        b.market, rate=np.full(n_u, 0.03), dividend_yield=np.full(n_u, 0.02),
        atm_vol=np.full(n_u, 0.25),
    )  # fmt: skip
    book = replace(b, market=market)
    eng = MarginEngine(book, small_case.scenarios, MODEL)
    cache = eng.grids
    americans = b.instruments.is_american & b.instruments.is_option
    kind, expiry = b.instruments.kind[americans], b.instruments.expiry_years[americans]
    per_key = {(int(k), float(t)) for k, t in zip(kind, expiry, strict=True)}
    assert len(cache) <= len(per_key)  # one grid per (side, expiry), not per underlying
    ids = b.underlyings.ids
    up = {u: (float(market.spot[k]) * 1.04,) for k, u in enumerate(ids)}
    down = {u: (float(market.spot[k]),) for k, u in enumerate(ids)}
    eng.apply_batch(moves=up)
    eng.apply_batch(moves=down)
    priced = cache.priced
    for _ in range(2):
        eng.apply_batch(moves=up)
        eng.apply_batch(moves=down)
    assert cache.priced == priced
    assert np.array_equal(eng.matrix, _fresh(eng, eng.book.market))
    scratch = cache._scratch
    for grid in cache._grids.values():
        assert not np.shares_memory(grid.values, scratch)
