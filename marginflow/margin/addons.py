"""Add-ons on top of a scenario tail statistic: anti-procyclicality and concentration.

Anti-procyclicality (EMIR RTS 153/2013 Art. 28), one of:

* ``buffer``: margin × (1 + b), b >= 25%, a buffer the CCP may release when margins rise;
* ``stressed-weight``: the stressed scenarios together get weight ω >= 25% in the tail
  statistic (each the same share of ω; the others share 1 - ω). If they already hold more
  than ω of the equally weighted set, they keep their natural share;
* ``floor-10y``: margin not below the same statistic over a 10-year look-back.

Concentration (liquidity) add-on, per account and underlying: a delta-equivalent exposure
``E`` (units of the underlying) takes ``days = |E| / (participation × ADV)`` to liquidate at
the given share of average daily volume. Beyond the margin period of risk ``n`` the risk
grows like √time, so the add-on is the underlying's share of the account's ES times
``√(days / n) - 1`` (zero when ``days <= n``, and when the underlying's share of ES is not
positive: a hedge leg needs no liquidity add-on of its own).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ConfigurationError
from marginflow.scenarios.scenario_set import ScenarioGroup

ApcMode = Literal["none", "buffer", "stressed-weight", "floor-10y"]
APC_MODES: tuple[str, ...] = ("none", "buffer", "stressed-weight", "floor-10y")
EMIR_MIN_BUFFER = 0.25
EMIR_MIN_STRESSED_WEIGHT = 0.25


def base_scenarios(group: np.ndarray) -> np.ndarray:
    """Indices of the scenarios a margin counts: the look-back and the stressed period."""
    return np.flatnonzero((group == ScenarioGroup.CURRENT) | (group == ScenarioGroup.STRESSED))


def floor_scenarios(group: np.ndarray) -> np.ndarray:
    """Indices of the long look-back of the 10-year floor (filtered history, no stress)."""
    return np.flatnonzero((group == ScenarioGroup.CURRENT) | (group == ScenarioGroup.FLOOR))


def stressed_weights(group: np.ndarray, include: np.ndarray, stressed_weight: float) -> FloatArray:
    """Weights over ``include`` giving the stressed scenarios together ``stressed_weight``
    (or their natural share if larger)."""
    stressed = group[include] == ScenarioGroup.STRESSED
    n_s, n = int(stressed.sum()), include.size
    if n_s == 0:
        raise ConfigurationError("apc stressed-weight needs stressed scenarios in the set")
    if n_s == n:
        return np.full(n, 1.0 / n)
    omega = max(stressed_weight, n_s / n)
    return np.where(stressed, omega / n_s, (1.0 - omega) / (n - n_s))


def liquidation_days(exposure: FloatArray, adv: FloatArray, participation: float) -> FloatArray:
    """Days to unwind ``|exposure|`` units trading ``participation`` of ``adv`` a day."""
    return np.abs(exposure) / (participation * np.maximum(adv, 1e-300))


def concentration_addon(
    *,
    es_share: FloatArray,
    exposure: FloatArray,
    adv: FloatArray,
    participation: float,
    horizon_days: int,
) -> FloatArray:
    """Add-on per (account, underlying) pair; arrays are per pair (see module docstring)."""
    days = liquidation_days(exposure, adv, participation)
    scale = np.sqrt(np.maximum(days, horizon_days) / horizon_days) - 1.0
    return np.maximum(es_share, 0.0) * scale


def validate_apc(mode: str, buffer: float, stressed_weight: float) -> None:
    if mode not in APC_MODES:
        raise ConfigurationError(f"apc must be one of {', '.join(APC_MODES)}, got {mode!r}")
    if mode == "buffer" and buffer < EMIR_MIN_BUFFER:
        raise ConfigurationError(
            f"apc_buffer must be >= {EMIR_MIN_BUFFER} (EMIR RTS 153/2013 Art. 28), got {buffer}"
        )
    if mode == "stressed-weight" and not EMIR_MIN_STRESSED_WEIGHT <= stressed_weight < 1:
        raise ConfigurationError(
            f"stressed_weight must be in [{EMIR_MIN_STRESSED_WEIGHT}, 1) "
            f"(EMIR RTS 153/2013 Art. 28), got {stressed_weight}"
        )
