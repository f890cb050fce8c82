"""Shared fixtures of the engine tests: one small synthetic book and its scenarios."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from marginflow.core.book import Book
from marginflow.scenarios.fhs import filtered_historical
from marginflow.scenarios.scenario_set import ScenarioSet
from marginflow.sim.synthetic_book import generate_book


@dataclass(frozen=True)
class SmallCase:
    book: Book
    scenarios: ScenarioSet


@pytest.fixture(scope="session")
def small_case() -> SmallCase:
    sb = generate_book(members=3, accounts=30, underlyings=8, series=150, positions=600, seed=11)
    scen = filtered_historical(sb.universe.history, lookback_days=500, floor_lookback_days=1000)
    return SmallCase(sb.book, scen)
