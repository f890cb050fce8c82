"""Margin results: which model, with which parameters, how much, and why.

Bulk results are struct-of-arrays (:class:`AccountMargins`); one account's readable result
with its breakdown is an :class:`AccountMargin`. Amounts are in the currency of the prices,
positive amounts to be posted (margin is never negative).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marginflow.core.batch import FloatArray


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model's registered name and every parameter that shaped the number."""

    name: str
    params: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


@dataclass(frozen=True, slots=True)
class AccountMargins:
    """Per account (A rows): total margin and its components.

    ``components`` maps a component name (``"es"``, ``"apc_buffer"``, ``"concentration"``,
    ``"scan_risk"``...) to an A-vector; ``margin`` is what they assemble into.
    ``driver`` is the index of the scenario driving each account (-1 when not
    scenario-based) and ``var`` the value-at-risk where the model has one.
    """

    model: ModelInfo
    margin: FloatArray
    components: Mapping[str, FloatArray]
    driver: np.ndarray
    var: FloatArray | None = None


@dataclass(frozen=True, slots=True)
class Contribution:
    """One position's share of the margin (Euler allocation of ES: the shares add up to the
    ES; a negative share is a hedge)."""

    instrument: str
    quantity: float
    amount: float

    def to_json(self) -> dict[str, Any]:
        return {"instrument": self.instrument, "quantity": self.quantity, "amount": self.amount}


@dataclass(frozen=True, slots=True)
class Breakdown:
    """What an analyst reads: the components, the driving scenario and its loss, the
    positions contributing most."""

    components: Mapping[str, float]
    driving_scenario: str | None = None
    driving_loss: float | None = None
    top_positions: tuple[Contribution, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "components": {k: float(v) for k, v in self.components.items()},
            "driving_scenario": self.driving_scenario,
            "driving_loss": self.driving_loss,
            "top_positions": [c.to_json() for c in self.top_positions],
            **dict(self.extra),
        }


@dataclass(frozen=True, slots=True)
class AccountMargin:
    account: str
    member: str
    margin: float
    model: ModelInfo
    breakdown: Breakdown

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "member": self.member,
            "margin": self.margin,
            "model": self.model.name,
            "breakdown": self.breakdown.to_json(),
        }


def member_totals(margins: FloatArray, account_member: np.ndarray, n_members: int) -> FloatArray:
    """Member margin = the sum of its accounts' margins (accounts are margined separately;
    no netting across accounts, as for segregated client accounts)."""
    return np.bincount(account_member, weights=margins, minlength=n_members).astype(np.float64)
