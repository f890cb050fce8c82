"""User-supplied scenario sets: a table of shocks per (scenario, underlying).

Each row gives one scenario's relative spot move and relative implied-vol move for one
underlying (see :mod:`.scenario_set` for the conventions). The underlying ``*`` is a
wildcard: it applies to every underlying the scenario does not name. Every underlying a book
needs must be covered by every scenario, by name or by wildcard; a gap is an error, never a
silent zero move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marginflow.core.errors import ValidationError
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class ShockRow:
    scenario: str
    underlying: str
    spot_shock: float
    vol_shock: float
    group: ScenarioGroup = ScenarioGroup.CURRENT


def scenario_set_from_rows(
    rows: Sequence[ShockRow], *, underlyings: Sequence[str], horizon_days: int
) -> ScenarioSet:
    """Scenarios in first-appearance order over ``underlyings`` (a book's risk factors)."""
    if not rows:
        raise ValidationError("scenarios", "the scenario file has no valid rows")
    order: dict[str, int] = {}
    for r in rows:
        order.setdefault(r.scenario, len(order))
    u_index = {u: i for i, u in enumerate(underlyings)}
    n_u, n_s = len(underlyings), len(order)
    spot = np.full((n_u, n_s), np.nan)
    vol = np.full((n_u, n_s), np.nan)
    wild_spot = np.full(n_s, np.nan)
    wild_vol = np.full(n_s, np.nan)
    group = np.full(n_s, int(ScenarioGroup.CURRENT), dtype=np.int8)
    for r in rows:
        s = order[r.scenario]
        group[s] = max(group[s], int(r.group))
        if r.underlying == WILDCARD:
            wild_spot[s], wild_vol[s] = r.spot_shock, r.vol_shock
        elif r.underlying in u_index:
            spot[u_index[r.underlying], s] = r.spot_shock
            vol[u_index[r.underlying], s] = r.vol_shock
    spot = np.where(np.isnan(spot), wild_spot[None, :], spot)
    vol = np.where(np.isnan(vol), wild_vol[None, :], vol)
    gaps = np.argwhere(np.isnan(spot))
    if gaps.size:
        u, s = gaps[0]
        names = list(order)
        raise ValidationError(
            "scenarios",
            f"scenario {names[s]!r} has no shock for underlying {underlyings[u]!r} "
            f"and no '{WILDCARD}' row ({len(gaps)} gaps in all)",
        )
    return ScenarioSet(
        underlyings=tuple(underlyings),
        spot_shock=spot.astype(np.float32),
        vol_shock=vol.astype(np.float32),
        labels=tuple(order),
        group=group,
        horizon_days=horizon_days,
        source="file",
        params={"horizon_days": horizon_days, "n_scenarios": n_s},
    )
