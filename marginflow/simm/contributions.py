"""Per-trade marginal contributions to SIMM (Euler allocation).

The contribution of trade t to the margin of a (portfolio, side) is the directional
derivative of SIMM along the trade's own sensitivities s_t::

    c_t = d/de SIMM(s + e s_t) at e = 0

computed by central finite differences, SIMM((1 + e) ...) with relative step ``e = 1e-6``
(truncation ~e^2, round-off ~1e-16 / e relative: both far below a cent on any real margin).
All perturbed portfolios go through the calculator in one vectorised batch.

SIMM is positively homogeneous of degree one in the sensitivities except for the
concentration factors (above a threshold a sensitivity's margin grows faster than linearly)
and the fixed add-on, so sum_t c_t = SIMM up to those terms (Euler's theorem). The remainder
``SIMM - sum_t c_t`` is reported as ``unallocated``, so contributions and remainder always sum
to the total. Rows without a TradeID count as one pseudo-trade ``(no trade id)``; product
class multipliers, notional factors and fixed add-ons are not perturbed (they are terms of
the agreement, not of a trade).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from marginflow.core.errors import ValidationError
from marginflow.simm.calculator import (
    BaseFactors,
    SimmRun,
    _check_currency,
    amounts_in,
    base_factors,
    simm_of_base,
    winners,
)
from marginflow.simm.calibration import Calibration
from marginflow.simm.crif import IM_MODEL_SIMM, Crif
from marginflow.simm.fx import FxRates
from marginflow.simm.regulations import Side
from marginflow.simm.risk import RiskType

NO_TRADE = "(no trade id)"
UNALLOCATED = "(unallocated)"
STEP = 1e-6
MAX_ROWS = 20_000_000
MSG_TOO_LARGE = (
    "per-trade contributions need {rows:,} factor rows ({trades:,} trades x portfolio size); "
    "the limit is {limit:,}: compute them per portfolio or for fewer trades"
)


@dataclass(frozen=True, slots=True)
class Contributions:
    """Euler contributions of each trade to one (portfolio, side) SIMM."""

    portfolio: str
    side: Side
    regulation: str
    simm: float
    by_trade: dict[str, float]
    unallocated: float


def trade_contributions(
    crif: Crif,
    *,
    calibration: Calibration,
    currency: str = "USD",
    fx: FxRates | None = None,
    enforce_regulations: bool = True,
    step: float = STEP,
    max_rows: int = MAX_ROWS,
    regulations: Mapping[tuple[str, Side], str] | None = None,
) -> dict[tuple[str, Side], Contributions]:
    """Contributions of every trade to the SIMM of each (portfolio, side) of ``crif``,
    under that side's winning SIMM regulation, or under ``regulations[(portfolio, side)]``
    when given (the regulation reported for the side, e.g. when Schedule IM decides it;
    sides not listed there are left out)."""
    currency = _check_currency(currency)
    fx = fx or FxRates.of({})
    rows = crif.take(crif.im_model == IM_MODEL_SIMM)
    amount = amounts_in(rows, currency, fx)
    total = base_factors(rows, amount)
    per_trade = base_factors(rows, amount, by_trade=True)
    fixed_terms = np.isin(
        per_trade.risk_type,
        [
            RiskType.PRODUCT_CLASS_MULTIPLIER,
            RiskType.ADD_ON_NOTIONAL_FACTOR,
            RiskType.ADD_ON_FIXED_AMOUNT,
        ],
    )
    per_trade = per_trade.take(~fixed_terms)
    common = {
        "regulation_sets": crif.regulation_sets,
        "qualifiers": crif.qualifiers,
        "calibration": calibration,
        "currency": currency,
        "fx": fx,
        "enforce_regulations": enforce_regulations,
    }
    base_run = simm_of_base(total, portfolios=crif.portfolios, **common)  # type: ignore[arg-type]
    targets = _targets(base_run, regulations)

    # One copy of the portfolio per (trade, +/-): the portfolio's factors plus +/- step times
    # the trade's own factors.
    parts: list[BaseFactors] = []
    labels: list[tuple[int, int]] = []  # copy -> (portfolio code, trade code)
    size = 0
    for p in np.unique(total.portfolio).tolist():
        mine = total.take(total.portfolio == p)
        trade_rows = per_trade.take(per_trade.portfolio == p)
        for t in np.unique(trade_rows.trade).tolist():
            delta = trade_rows.take(trade_rows.trade == t)
            for sign in (1.0, -1.0):
                copy = len(labels)
                labels.append((p, t))
                shifted = replace(delta, amount=sign * step * delta.amount)
                parts.extend((mine.relabel(copy), shifted.relabel(copy)))
                size += mine.portfolio.size + delta.portfolio.size
    if size > max_rows:
        raise ValidationError(
            "contributions",
            MSG_TOO_LARGE.format(rows=size, trades=len(labels) // 2, limit=max_rows),
        )
    out: dict[tuple[str, Side], Contributions] = {}
    if not parts:
        return out
    copies = BaseFactors.concat(parts)
    names = tuple(str(i) for i in range(len(labels)))
    run = simm_of_base(copies, portfolios=names, **common)  # type: ignore[arg-type]
    margin_of: dict[tuple[int, Side, str], float] = {}
    for u in run.units:
        for reg in u.unit.regulations:
            margin_of[(u.unit.portfolio, u.unit.side, reg)] = u.margin
    for (portfolio, side), (simm, reg) in targets.items():
        p_code = crif.portfolios.index(portfolio)
        by_trade: dict[str, float] = {}
        for copy in range(0, len(labels), 2):
            p, t = labels[copy]
            if p != p_code:
                continue
            up = margin_of.get((copy, side, reg), 0.0)
            down = margin_of.get((copy + 1, side, reg), 0.0)
            name = crif.trades[t] if t >= 0 else NO_TRADE
            by_trade[name] = (up - down) / (2.0 * step)
        allocated = float(sum(by_trade.values()))
        out[(portfolio, side)] = Contributions(
            portfolio=portfolio,
            side=side,
            regulation=reg,
            simm=simm,
            by_trade=dict(sorted(by_trade.items(), key=lambda kv: -abs(kv[1]))),
            unallocated=simm - allocated,
        )
    return out


def _targets(
    run: SimmRun, regulations: Mapping[tuple[str, Side], str] | None
) -> dict[tuple[str, Side], tuple[float, str]]:
    """(portfolio, side) -> (SIMM, regulation) to allocate: the winning regulation of each
    side, or the one named in ``regulations`` where SIMM is computed under it."""
    if regulations is None:
        return {key: (margin, reg) for key, (margin, reg, _) in winners(run).items()}
    out: dict[tuple[str, Side], tuple[float, str]] = {}
    for u in run.units:
        key = (run.portfolios[u.unit.portfolio], u.unit.side)
        reg = regulations.get(key)
        if reg is not None and reg in u.unit.regulations:
            out[key] = (u.margin, reg)
    return out
