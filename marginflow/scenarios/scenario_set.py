"""The scenario set every margin model consumes: shocks per underlying and scenario.

Conventions
-----------
* ``spot_shock[u, s]`` is a *relative* move of underlying ``u`` in scenario ``s`` over the
  margin period of risk: the shocked spot is ``S * (1 + spot_shock)`` (so -0.2 is a 20% fall).
* ``vol_shock[u, s]`` is a *relative* move of the whole implied-volatility smile of ``u``:
  every implied vol becomes ``vol * (1 + vol_shock)`` at unchanged moneyness ``ln(K / S')``
  (sticky moneyness, see :mod:`marginflow.engine.revaluation`). Always > -1.
* Both are float32: the shocks carry 7 significant digits, far finer than any history.
* Scenarios are equally likely inside their group; weights between groups are a margin-model
  choice (the anti-procyclicality stressed weight), not a property of the set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginflow.core.errors import ValidationError

Float32Array = NDArray[np.float32]
Int8Array = NDArray[np.int8]


class ScenarioGroup(IntEnum):
    """Which part of the look-back a scenario comes from."""

    CURRENT = 0
    """The margin look-back (or a Monte Carlo draw, or a user scenario)."""
    STRESSED = 1
    """The stressed period, always included whatever the look-back."""
    FLOOR = 2
    """Only in the long (10-year) look-back of the anti-procyclicality floor."""


@dataclass(frozen=True, slots=True)
class ScenarioSet:
    """S scenarios over U underlyings (the risk factors), rows in ``underlyings`` order.

    Attributes
    ----------
    underlyings : tuple[str, ...]
        Underlying ids, one per row of the shock arrays.
    spot_shock, vol_shock : float32[U, S]
        Relative spot and implied-vol moves over ``horizon_days`` (see module docstring).
    labels : tuple[str, ...]
        One readable name per scenario, e.g. ``"fhs:2018-12-24"`` (window end date).
    group : int8[S]
        :class:`ScenarioGroup` code of each scenario.
    horizon_days : int
        Margin period of risk the shocks cover, in business days.
    source : str
        ``"fhs"``, ``"mc"`` or ``"file"``.
    params : Mapping[str, Any]
        The generator's parameters, carried into margin results.
    """

    underlyings: tuple[str, ...]
    spot_shock: Float32Array
    vol_shock: Float32Array
    labels: tuple[str, ...]
    group: Int8Array
    horizon_days: int
    source: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        u, s = len(self.underlyings), len(self.labels)
        for name in ("spot_shock", "vol_shock"):
            arr = getattr(self, name)
            if arr.shape != (u, s) or arr.dtype != np.float32:
                raise ValidationError(
                    name, f"must be float32[{u}, {s}], got {arr.dtype}{arr.shape}"
                )
        if self.group.shape != (s,):
            raise ValidationError("group", f"must have {s} entries, got {self.group.shape}")
        if s == 0:
            raise ValidationError("scenarios", "the set is empty")
        if len(set(self.underlyings)) != u:
            raise ValidationError("underlyings", "an underlying appears twice")
        if not (np.isfinite(self.spot_shock).all() and np.isfinite(self.vol_shock).all()):
            raise ValidationError("shocks", "must be finite")
        if (self.spot_shock <= -1).any():
            raise ValidationError("spot_shock", "must be > -1 (a price cannot fall to zero)")
        if (self.vol_shock <= -1).any():
            raise ValidationError("vol_shock", "must be > -1 (a vol cannot fall to zero)")

    @property
    def n_scenarios(self) -> int:
        return len(self.labels)

    def count(self, group: ScenarioGroup) -> int:
        return int(np.count_nonzero(self.group == group))

    def aligned(self, underlyings: Sequence[str]) -> tuple[Float32Array, Float32Array]:
        """Shock arrays with rows in the order of ``underlyings`` (a book's order).

        Raises :class:`ValidationError` naming the first underlying the set has no shocks for.
        """
        index = {u: i for i, u in enumerate(self.underlyings)}
        missing = [u for u in underlyings if u not in index]
        if missing:
            raise ValidationError(
                "scenarios",
                f"no shocks for underlying {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            )
        rows = np.fromiter((index[u] for u in underlyings), dtype=np.intp, count=len(underlyings))
        if np.array_equal(rows, np.arange(len(self.underlyings))):
            return self.spot_shock, self.vol_shock
        return self.spot_shock[rows], self.vol_shock[rows]

    def select(self, mask: NDArray[np.bool_]) -> ScenarioSet:
        """The scenarios where ``mask`` is true (same underlyings)."""
        idx = np.flatnonzero(mask)
        return ScenarioSet(
            underlyings=self.underlyings,
            spot_shock=np.ascontiguousarray(self.spot_shock[:, idx]),
            vol_shock=np.ascontiguousarray(self.vol_shock[:, idx]),
            labels=tuple(self.labels[i] for i in idx),
            group=self.group[idx],
            horizon_days=self.horizon_days,
            source=self.source,
            params=self.params,
        )
