"""The APC floor never lowers a margin (EMIR RTS 153/2013 Art. 28: a floor, not a blend)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.engine.state import MarginEngine
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.scenarios.fhs import filtered_historical
from marginflow.sim.synthetic_book import generate_book


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    confidence=st.sampled_from([0.975, 0.99, 0.995]),
    lookback=st.sampled_from([250, 500]),
)
def test_floor_never_lowers_margin(seed: int, confidence: float, lookback: int) -> None:
    # Exactly, not within a tolerance: the floor's scenarios are a superset, every shared
    # scenario's P&L is the same to the bit, the main ES is the same statistic of the same
    # numbers, and the floor takes max(main, long) of it.
    sb = generate_book(members=2, accounts=12, underlyings=4, series=60, positions=200, seed=seed)
    h = sb.universe.history
    plain = filtered_historical(h, lookback_days=lookback)
    floored = filtered_historical(h, lookback_days=lookback, floor_lookback_days=2 * lookback)
    none = MarginEngine(sb.book, plain, ExpectedShortfallModel(confidence=confidence))
    floor = MarginEngine(
        sb.book, floored, ExpectedShortfallModel(confidence=confidence, apc="floor-10y")
    )
    assert np.all(floor.margin >= none.margin), np.flatnonzero(floor.margin < none.margin)
