"""The public entry point: initial margin of every portfolio and side of a CRIF, SIMM and
Schedule, with the winning regulation and the breakdown.

Per portfolio the IM model is chosen by ``models`` (portfolio -> ``"simm"``, ``"schedule"``
or ``"mixed"``); the default ``"mixed"`` follows each row's ``IMModel`` column (SIMM rows to
SIMM, Schedule rows to the Schedule grid) and adds the two, which is how a netting set with
some trades under Schedule IM is margined. ``"simm"`` ignores Schedule rows; ``"schedule"``
ignores SIMM rows.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import numpy as np

from marginflow.core.errors import MSG_SIMM_PARAMETER_CONFLICT, ValidationError
from marginflow.simm.calculator import UnitResult, run_simm
from marginflow.simm.calibration import Calibration
from marginflow.simm.crif import IM_MODEL_SCHEDULE, IM_MODEL_SIMM, Crif, CrifLoad
from marginflow.simm.fx import FxRates, implied_from_crif
from marginflow.simm.regulations import SIDES, Side, regulation_rank, winning
from marginflow.simm.results import Node, RegulationMargin, ScheduleMargin, SideResult, SimmReport
from marginflow.simm.risk import RISK_TYPE_NAMES, RiskType
from marginflow.simm.schedule import schedule_margins

Model = Literal["simm", "schedule", "mixed"]
MODELS: tuple[Model, ...] = ("simm", "schedule", "mixed")
MSG_MODEL = "must be one of simm, schedule, mixed; got {value!r}"
MSG_NO_CALCULATION = (
    "{portfolio} {side}: no calculation applies, every row is left out on this side "
    "(Excluded, or Unspecified in a portfolio that names regulations): IM 0"
)


def simm_report(
    load: CrifLoad | Crif,
    *,
    calibration: Calibration,
    currency: str = "USD",
    fx: FxRates | None = None,
    enforce_regulations: bool = True,
    detail: bool = False,
    as_of: dt.date | None = None,
    models: Mapping[str, Model] | None = None,
    default_model: Model = "mixed",
    contributions: bool = False,
) -> SimmReport:
    """Initial margin of every portfolio (both sides) in a validated CRIF.

    ``fx`` gives USD per unit of each currency; rates missing there are implied from rows
    that carry both Amount and AmountUSD. ``as_of`` is the date Schedule maturities run
    from (default: today). Amounts in the result are in ``currency``.
    """
    crif = load.crif if isinstance(load, CrifLoad) else load
    failures = load.failures if isinstance(load, CrifLoad) else ()
    for name, model in [*(models or {}).items(), ("default", default_model)]:
        if model not in MODELS:
            raise ValidationError(f"model[{name}]", MSG_MODEL.format(value=model))
    rates = (fx or FxRates.of({})).merged(implied_from_crif(crif))
    model_of = {p: (models or {}).get(p, default_model) for p in crif.portfolios}
    portfolio_model = np.array([model_of[p] for p in crif.portfolios] or ["mixed"])
    row_model = portfolio_model[crif.portfolio] if len(crif) else np.zeros(0, dtype=str)
    simm_rows = (crif.im_model == IM_MODEL_SIMM) & (row_model != "schedule")
    schedule_rows = (crif.im_model == IM_MODEL_SCHEDULE) & (row_model != "simm")
    run = run_simm(
        crif.take(simm_rows),
        calibration=calibration,
        currency=currency,
        fx=rates,
        enforce_regulations=enforce_regulations,
        detail=detail,
    )
    sched = schedule_margins(
        crif.take(schedule_rows),
        currency=run.currency,
        fx=rates,
        as_of=as_of or dt.date.today(),
        enforce_regulations=enforce_regulations,
    )
    by_unit: dict[tuple[str, Side], list[UnitResult]] = {}
    for u in run.units:
        by_unit.setdefault((run.portfolios[u.unit.portfolio], u.unit.side), []).append(u)
    present = {crif.portfolios[int(p)] for p in np.unique(crif.portfolio)} if len(crif) else set()
    results = [
        _side_result(
            portfolio,
            side,
            by_unit.get((portfolio, side), []),
            sched.get((portfolio, side), {}),
            model_of[portfolio],
        )
        for portfolio in sorted(present, key=_natural)
        for side in SIDES
    ]
    if contributions:
        results = _with_contributions(
            results,
            crif.take(simm_rows),
            calibration=calibration,
            currency=run.currency,
            fx=rates,
            enforce_regulations=enforce_regulations,
        )
    notes = []
    if not enforce_regulations:
        notes.append("regulation columns ignored: one calculation per portfolio and side")
    notes.extend(
        MSG_NO_CALCULATION.format(portfolio=r.portfolio, side=r.side)
        for r in results
        if r.regulation is None
    )
    notes.extend(parameter_conflicts(crif.take(simm_rows)))
    return SimmReport(
        version=calibration.version,
        mpor_days=calibration.mpor_days,
        currency=run.currency,
        results=tuple(results),
        failures=tuple(failures),
        notes=tuple(notes),
    )


def parameter_conflicts(crif: Crif) -> list[str]:
    """A note for each product class multiplier or add-on notional factor that a portfolio's
    rows give different values, naming the rows (``file:line: value``) in file order.

    The calculator takes the largest (see ``docs/simm.md``): the conservative choice, but
    engines differ here (one adds them up, one ignores multiplier rows that carry a product
    class), so the user is told rather than left to guess."""
    groups: dict[tuple[int, int, int], list[int]] = {}
    for parameter in (RiskType.PRODUCT_CLASS_MULTIPLIER, RiskType.ADD_ON_NOTIONAL_FACTOR):
        for r in np.flatnonzero(crif.risk_type == parameter).tolist():
            key = (int(parameter), int(crif.portfolio[r]), int(crif.qualifier[r]))
            groups.setdefault(key, []).append(r)
    notes: list[tuple[int, str]] = []
    for (kind, portfolio, qualifier), rows in groups.items():
        values = {float(crif.amount[r]) for r in rows}
        if len(values) < 2:
            continue
        listed = "; ".join(f"{crif.source}:{crif.line[r]}: {crif.amount[r]:g}" for r in rows)
        text = MSG_SIMM_PARAMETER_CONFLICT.format(
            portfolio=crif.portfolios[portfolio],
            risk_type=RISK_TYPE_NAMES[RiskType(kind)],
            qualifier=crif.qualifiers[qualifier],
            count=len(values),
            rows=listed,
            chosen=max(values),
        )
        notes.append((int(crif.line[rows[0]]), text))
    return [text for _, text in sorted(notes)]


def _natural(name: str) -> tuple[tuple[int, object], ...]:
    """Sort key that orders C2 before C10."""
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", name) if t)


def _side_result(
    portfolio: str,
    side: Side,
    units: list[UnitResult],
    schedule: Mapping[str, ScheduleMargin],
    model: Model,
) -> SideResult:
    # With both SIMM and Schedule rows, a regulation's margin is SIMM + Schedule under that
    # regulation; the winner is the regulation with the highest sum.
    simm_by_reg = {reg: u for u in units for reg in u.unit.regulations}
    regs = sorted(set(simm_by_reg) | set(schedule), key=regulation_rank)
    candidates = [
        (
            (simm_by_reg[r].margin if r in simm_by_reg else 0.0)
            + (schedule[r].margin if r in schedule else 0.0),
            (r,),
        )
        for r in regs
    ]
    best = winning(candidates)
    if best is None:
        empty = Node("Total", "total", 0.0)
        return SideResult(portfolio, side, None, 0.0, 0.0, 0.0, model, empty)
    im, reg = best
    unit = simm_by_reg.get(reg)
    sched = schedule.get(reg)
    children = [unit.breakdown] if unit else []
    if sched is not None:
        children.append(sched.to_node())
    return SideResult(
        portfolio=portfolio,
        side=side,
        regulation=reg,
        im=im,
        simm=unit.margin if unit else 0.0,
        schedule=sched.margin if sched else 0.0,
        model=model,
        breakdown=Node("Total", "total", im, tuple(children)),
        regulations=tuple(
            RegulationMargin(u.unit.regulations, u.margin, u.breakdown) for u in units
        ),
        schedule_detail=sched,
    )


def _with_contributions(
    results: list[SideResult],
    simm_rows: Crif,
    *,
    calibration: Calibration,
    currency: str,
    fx: FxRates,
    enforce_regulations: bool,
) -> list[SideResult]:
    """Each side's per-trade contributions to its SIMM under the regulation the side reports
    (which Schedule IM may decide), with the unallocated remainder; none where that
    regulation has no SIMM."""
    from marginflow.simm.contributions import UNALLOCATED, trade_contributions

    found = trade_contributions(
        simm_rows,
        calibration=calibration,
        currency=currency,
        fx=fx,
        enforce_regulations=enforce_regulations,
        regulations={(r.portfolio, r.side): r.regulation for r in results if r.regulation},
    )
    out = []
    for r in results:
        c = found.get((r.portfolio, r.side))
        allocation = None if c is None else {**c.by_trade, UNALLOCATED: c.unallocated}
        out.append(replace(r, contributions=allocation))
    return out
