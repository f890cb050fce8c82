"""Regulations: which rows each (portfolio, side, regulation) calculation sees, and which
regulation wins.

The rules (those of ISDA's CRIF ``collect_regulations`` / ``post_regulations`` columns, as ORE
applies them with ``enforceIMRegulations``):

1. The call side reads ``CollectRegulation``, the post side ``PostRegulation``. A row whose
   list is empty counts as ``Unspecified``.
2. A row whose list holds ``Excluded`` is left out of that side.
3. In a portfolio where any row names a regulation (on either side), ``Unspecified`` rows are
   left out; a portfolio where no row names one is computed once, as ``Unspecified``.
4. SIMM under regulation R uses every row whose list contains R. Regulations that select
   exactly the same rows share one calculation.
5. The winning regulation of a (portfolio, side) is the one with the highest margin; ties go
   to the first in :data:`~marginflow.simm.risk.REGULATION_ORDER` (then alphabetical).

Without regulation enforcement every row of a portfolio is in one ``Unspecified``
calculation per side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from marginflow.simm.risk import EXCLUDED, REGULATION_ORDER, UNSPECIFIED

Side = Literal["call", "post"]
SIDES: tuple[Side, Side] = ("call", "post")
I64 = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Unit:
    """One SIMM calculation: a portfolio, a side, and the regulations that share its rows."""

    portfolio: int
    side: Side
    regulations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnitSplit:
    """Units of one side and the (pair -> unit) membership, a pair being a distinct
    (portfolio, regulation-set code) of the input rows."""

    units: tuple[Unit, ...]
    pair_portfolio: I64
    pair_regset: I64
    edge_pair: I64
    edge_unit: I64


def regulation_rank(name: str) -> tuple[int, str]:
    """Sort key: ORE's regulation order, unknown names after, alphabetically."""
    try:
        return (REGULATION_ORDER.index(name), name)
    except ValueError:
        return (len(REGULATION_ORDER), name)


def split_units(
    portfolio: I64,
    regset: I64,
    other_regset: I64,
    regulation_sets: Sequence[frozenset[str]],
    *,
    side: Side,
    enforce: bool,
    unit_offset: int = 0,
) -> UnitSplit:
    """Units for one side from each row's portfolio and its regulation-set code for this side
    (``regset``) and for the other side (``other_regset``, used by rule 3)."""
    if not enforce:
        regset = np.zeros_like(regset)
    n_sets = max(len(regulation_sets), 1)
    pairs = np.unique(portfolio.astype(np.int64) * n_sets + regset)
    pair_portfolio, pair_regset = pairs // n_sets, pairs % n_sets
    named = (regset > 0) | (other_regset > 0)
    portfolios_with_regs = set(np.unique(portfolio[named]).tolist()) if enforce else set()

    members: dict[tuple[int, str], list[int]] = {}
    for i, (p, s) in enumerate(zip(pair_portfolio.tolist(), pair_regset.tolist(), strict=True)):
        regs = set(regulation_sets[s]) or {UNSPECIFIED}
        if EXCLUDED in regs:
            continue
        if regs == {UNSPECIFIED} and p in portfolios_with_regs:
            continue
        for r in regs:
            members.setdefault((p, r), []).append(i)

    by_rows: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    for (p, r), idx in members.items():
        by_rows.setdefault((p, tuple(sorted(idx))), []).append(r)
    units: list[Unit] = []
    edge_pair: list[int] = []
    edge_unit: list[int] = []
    ordered = sorted(by_rows.items(), key=lambda kv: (kv[0][0], min(map(regulation_rank, kv[1]))))
    for (p_code, idx_tuple), names in ordered:
        unit_id = unit_offset + len(units)
        regs_sorted = tuple(sorted(names, key=regulation_rank))
        units.append(Unit(portfolio=p_code, side=side, regulations=regs_sorted))
        edge_pair.extend(idx_tuple)
        edge_unit.extend([unit_id] * len(idx_tuple))
    return UnitSplit(
        units=tuple(units),
        pair_portfolio=pair_portfolio,
        pair_regset=pair_regset,
        edge_pair=np.asarray(edge_pair, dtype=np.int64),
        edge_unit=np.asarray(edge_unit, dtype=np.int64),
    )


def pair_index(split: UnitSplit, portfolio: I64, regset: I64, n_sets: int, enforce: bool) -> I64:
    """Index of each row's (portfolio, regulation set) in ``split``'s pairs."""
    if not enforce:
        regset = np.zeros_like(regset)
    keys = split.pair_portfolio * max(n_sets, 1) + split.pair_regset
    return np.searchsorted(keys, portfolio.astype(np.int64) * max(n_sets, 1) + regset)


def winning(margins: Sequence[tuple[float, tuple[str, ...]]]) -> tuple[float, str] | None:
    """(margin, regulation) of the winner among (margin, regulations) candidates: the highest
    margin, ties (to 1e-12 relative) broken by regulation rank."""
    if not margins:
        return None
    best = max(m for m, _ in margins)
    tol = 1e-12 * max(abs(best), 1.0)
    tied = [r for m, regs in margins if abs(m - best) <= tol for r in regs]
    return best, min(tied, key=regulation_rank)
