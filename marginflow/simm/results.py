"""Result types: a margin breakdown tree per calculation, one result per (portfolio, side),
and the report of a whole file, with their JSON forms.

Tree levels, top down: ``total`` -> ``product_class`` (plus ``add_on`` nodes) ->
``risk_class`` -> ``margin_type`` -> ``bucket`` -> ``qualifier``. A node's margin is the
margin of its subtree: risk classes aggregate with the ISDA risk-class correlations, so a
parent is not the plain sum of its children except where SIMM adds (margin types within a risk
class, product classes, add-ons).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from marginflow.core.errors import RowFailure
from marginflow.simm.regulations import Side


@dataclass(frozen=True, slots=True)
class Node:
    """One line of a breakdown: a name, its level in the tree, its margin (calculation
    currency) and the lines under it."""

    name: str
    level: str
    margin: float
    children: tuple[Node, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``{name, level, margin, children}``, children omitted on leaves."""
        out: dict[str, Any] = {"name": self.name, "level": self.level, "margin": self.margin}
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Node]]:
        """Depth-first (depth, node) pairs, this node first."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)

    def find(self, *path: str) -> Node | None:
        """The descendant reached by following child names, or None."""
        node: Node | None = self
        for name in path:
            node = next((c for c in node.children if c.name == name), None) if node else None
        return node


@dataclass(frozen=True, slots=True)
class RegulationMargin:
    """SIMM of one calculation: the regulations sharing it, the margin and its breakdown."""

    regulations: tuple[str, ...]
    margin: float
    breakdown: Node


@dataclass(frozen=True, slots=True)
class ScheduleMargin:
    """Schedule IM of one (portfolio, side, regulation): gross margin, net and gross
    replacement cost, net-to-gross ratio and the margin ``gross * (0.4 + 0.6 * NGR)``."""

    regulation: str
    gross_margin: float
    gross_replacement_cost: float
    net_replacement_cost: float
    net_to_gross: float
    margin: float
    by_class: Mapping[str, float] = field(default_factory=dict)

    def to_node(self) -> Node:
        """The Schedule node; its children are the grid lines' gross margins (before the
        net-to-gross factor), so they add up to ``gross_margin``, not to ``margin``."""
        children = tuple(
            Node(name, "gross_margin", value) for name, value in sorted(self.by_class.items())
        )
        return Node("Schedule", "model", self.margin, children)


@dataclass(frozen=True, slots=True)
class SideResult:
    """The initial margin of one portfolio on one side (call: collected, post: posted)."""

    portfolio: str
    side: Side
    regulation: str | None
    im: float
    simm: float
    schedule: float
    model: str
    breakdown: Node
    regulations: tuple[RegulationMargin, ...] = ()
    schedule_detail: ScheduleMargin | None = None
    contributions: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form; amounts in the calculation currency, IM positive on both sides."""
        out: dict[str, Any] = {
            "portfolio": self.portfolio,
            "side": self.side,
            "regulation": self.regulation,
            "im": self.im,
            "simm": self.simm,
            "schedule": self.schedule,
            "model": self.model,
            "breakdown": self.breakdown.to_dict(),
            "by_regulation": [
                {"regulations": list(r.regulations), "simm": r.margin} for r in self.regulations
            ],
        }
        if self.schedule_detail is not None:
            s = self.schedule_detail
            out["schedule_detail"] = {
                "regulation": s.regulation,
                "gross_margin": s.gross_margin,
                "gross_replacement_cost": s.gross_replacement_cost,
                "net_replacement_cost": s.net_replacement_cost,
                "net_to_gross": s.net_to_gross,
                "margin": s.margin,
                "by_class": dict(s.by_class),
            }
        if self.contributions is not None:
            out["contributions"] = [
                {"trade": trade, "im": value} for trade, value in self.contributions.items()
            ]
        return out


@dataclass(frozen=True, slots=True)
class SimmReport:
    """Every portfolio and side of one CRIF, with the rows that were rejected."""

    version: str
    mpor_days: int
    currency: str
    results: tuple[SideResult, ...]
    failures: tuple[RowFailure, ...] = ()
    notes: tuple[str, ...] = ()

    def get(self, portfolio: str, side: Side) -> SideResult:
        """The result of ``portfolio`` on ``side``; KeyError when there is none."""
        for r in self.results:
            if r.portfolio == portfolio and r.side == side:
                return r
        raise KeyError((portfolio, side))

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document: version, horizon, currency, one result per portfolio and
        side, the rejected rows and the notes."""
        return {
            "version": self.version,
            "mpor_days": self.mpor_days,
            "currency": self.currency,
            "results": [r.to_dict() for r in self.results],
            "rejected": [
                {"line": f.line, "field": f.field, "reason": f.reason, "raw": f.raw}
                for f in self.failures
            ],
            "notes": list(self.notes),
        }
