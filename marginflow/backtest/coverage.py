"""The coverage table of a back-test: one row of statistics per (position mode, model column,
account / member / firm), each from :func:`~marginflow.backtest.statistics.summarise` on that
series' breaches.

A member's series are the sums of its accounts' margins and P&L day by day, the firm's the
sums over every account: margin held in aggregate against the aggregate loss (a member's
accounts offset one another, as a default would net them). ``worst_excess`` is the largest
loss beyond the margin over the window (0 when the margin always covered), in currency.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from marginflow.backtest.run import BacktestResult, Column, Mode
from marginflow.backtest.statistics import BacktestStatistics, exceptions, summarise
from marginflow.core.batch import FloatArray

Level = Literal["account", "member", "firm"]
LEVELS: tuple[Level, ...] = ("firm", "member", "account")


@dataclass(frozen=True, slots=True)
class Series:
    """One back-tested series: margin and realised P&L per day (currency)."""

    level: Level
    name: str
    member: str
    mode: Mode
    column: Column
    margin: FloatArray
    pnl: FloatArray

    @property
    def breaches(self) -> np.ndarray:
        return exceptions(self.pnl, self.margin)


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """A series' statistics, with the largest loss beyond margin (``worst_excess``)."""

    level: Level
    name: str
    member: str
    mode: Mode
    column: Column
    stats: BacktestStatistics
    worst_excess: float

    def to_json(self) -> dict[str, object]:
        s = self.stats
        return {
            "level": self.level,
            "name": self.name,
            "member": self.member,
            "mode": self.mode,
            "model": self.column.model,
            "column": self.column.key,
            "confidence": s.confidence,
            "days": s.n,
            "breaches": s.breaches,
            "coverage": s.coverage,
            "expected_rate": s.expected_rate,
            "kupiec": {"lr": s.lr_pof, "p_value": s.p_pof, "reject": s.reject_pof},
            "independence": {"lr": s.lr_ind, "p_value": s.p_ind, "reject": s.reject_ind},
            "conditional_coverage": {"lr": s.lr_cc, "p_value": s.p_cc, "reject": s.reject_cc},
            "test_level": s.test_level,
            "zone": s.zone,
            "zone_probability": s.zone_probability,
            "transitions": {"n00": s.n00, "n01": s.n01, "n10": s.n10, "n11": s.n11},
            "worst_excess": self.worst_excess,
        }


def series(result: BacktestResult, *, levels: tuple[Level, ...] = LEVELS) -> Iterator[Series]:
    """Every series of ``result``: per mode and column, the firm's, each member's (with
    accounts in the sample) and each account's."""
    members_of = result.account_member
    present = np.unique(members_of)
    for m in result.modes:
        for c in result.columns:
            margin = m.margin[c.key]
            if "firm" in levels:
                yield Series("firm", "firm", "", m.mode, c, margin.sum(axis=1), m.pnl.sum(axis=1))
            if "member" in levels:
                for k in present.tolist():
                    cols = members_of == k
                    name = result.members[k]
                    yield Series(
                        "member",
                        name,
                        name,
                        m.mode,
                        c,
                        margin[:, cols].sum(axis=1),
                        m.pnl[:, cols].sum(axis=1),
                    )
            if "account" in levels:
                for a, name in enumerate(result.accounts):
                    member = result.members[int(members_of[a])]
                    yield Series("account", name, member, m.mode, c, margin[:, a], m.pnl[:, a])


def coverage_table(
    result: BacktestResult, *, test_level: float = 0.95, levels: tuple[Level, ...] = LEVELS
) -> list[CoverageRow]:
    """The statistics of every series of ``result`` (see :func:`series`), each at its
    column's confidence, tests at ``test_level``."""
    out = []
    for s in series(result, levels=levels):
        b = s.breaches
        excess = float(np.max(-s.pnl - s.margin, initial=0.0))
        out.append(
            CoverageRow(
                s.level,
                s.name,
                s.member,
                s.mode,
                s.column,
                summarise(b, s.column.confidence, test_level),
                max(excess, 0.0),
            )
        )
    return out


def worst_accounts(rows: list[CoverageRow], *, top: int = 5) -> list[CoverageRow]:
    """The ``top`` account rows with the most breaches (then the largest loss beyond
    margin), one per account: its worst row over modes and columns."""
    best: dict[str, CoverageRow] = {}
    for r in rows:
        if r.level != "account":
            continue
        key = (r.stats.breaches, r.worst_excess)
        seen = best.get(r.name)
        if seen is None or key > (seen.stats.breaches, seen.worst_excess):
            best[r.name] = r
    ranked = sorted(best.values(), key=lambda r: (-r.stats.breaches, -r.worst_excess, r.name))
    return [r for r in ranked if r.stats.breaches > 0][:top]
