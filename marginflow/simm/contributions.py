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
    amounts_in,
    base_factors,
    check_currency,
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
    currency = check_currency(currency)
    fx = fx or FxRates.of({})
    rows = crif.take(crif.im_model == IM_MODEL_SIMM)
    amount = amounts_in(rows, currency, fx)
    total = base_factors(rows, amount)
    per_trade = base_factors(rows, amount, by_trade=True)
    per_trade = per_trade.take(~np.isin(per_trade.risk_type, _AGREEMENT_TERMS))

    def simm(base: BaseFactors, portfolios: tuple[str, ...]) -> SimmRun:
        return simm_of_base(
            base,
            regulation_sets=crif.regulation_sets,
            qualifiers=crif.qualifiers,
            portfolios=portfolios,
            calibration=calibration,
            currency=currency,
            fx=fx,
            enforce_regulations=enforce_regulations,
        )

    targets = _targets(simm(total, crif.portfolios), regulations)
    size, n_trades = _copies_size(total, per_trade)
    if size > max_rows:
        raise ValidationError(
            "contributions", MSG_TOO_LARGE.format(rows=size, trades=n_trades, limit=max_rows)
        )
    copies, labels = _bumped_copies(total, per_trade, step)
    if not labels:
        return {}
    run = simm(copies, tuple(str(i) for i in range(2 * len(labels))))
    margin_of: dict[tuple[int, Side, str], float] = {}
    for u in run.units:
        for reg in u.unit.regulations:
            margin_of[(u.unit.portfolio, u.unit.side, reg)] = u.margin
    out: dict[tuple[str, Side], Contributions] = {}
    for (portfolio, side), (margin, reg) in targets.items():
        p_code = crif.portfolios.index(portfolio)
        by_trade: dict[str, float] = {}
        for k, (p, t) in enumerate(labels):
            if p == p_code:
                up = margin_of.get((2 * k, side, reg), 0.0)
                down = margin_of.get((2 * k + 1, side, reg), 0.0)
                by_trade[crif.trades[t] if t >= 0 else NO_TRADE] = (up - down) / (2.0 * step)
        out[(portfolio, side)] = Contributions(
            portfolio=portfolio,
            side=side,
            regulation=reg,
            simm=margin,
            by_trade=dict(sorted(by_trade.items(), key=lambda kv: -abs(kv[1]))),
            unallocated=margin - float(sum(by_trade.values())),
        )
    return out


# Terms of the agreement, not of a trade: never perturbed.
_AGREEMENT_TERMS = (
    RiskType.PRODUCT_CLASS_MULTIPLIER,
    RiskType.ADD_ON_NOTIONAL_FACTOR,
    RiskType.ADD_ON_FIXED_AMOUNT,
)


def _copies_size(total: BaseFactors, per_trade: BaseFactors) -> tuple[int, int]:
    """Rows :func:`_bumped_copies` would build, and the number of trades, without building
    them: two copies of each trade's portfolio plus the trade's own rows."""
    n = int(max(total.portfolio.max(initial=-1), per_trade.portfolio.max(initial=-1))) + 1
    pairs = np.unique(np.stack([per_trade.portfolio, per_trade.trade]), axis=1)
    trades = np.bincount(pairs[0], minlength=n)
    size = 2 * (trades * np.bincount(total.portfolio, minlength=n)).sum() + 2 * per_trade.trade.size
    return int(size), int(pairs.shape[1])


def _bumped_copies(
    total: BaseFactors, per_trade: BaseFactors, step: float
) -> tuple[BaseFactors, list[tuple[int, int]]]:
    """Two copies of each trade's portfolio, its factors plus and minus ``step`` times the
    trade's own factors, as portfolios 2k and 2k + 1; and the (portfolio code, trade code)
    of each k."""
    parts: list[BaseFactors] = []
    labels: list[tuple[int, int]] = []
    for p in np.unique(total.portfolio).tolist():
        mine = total.take(total.portfolio == p)
        trade_rows = per_trade.take(per_trade.portfolio == p)
        for t in np.unique(trade_rows.trade).tolist():
            delta = trade_rows.take(trade_rows.trade == t)
            for sign in (1.0, -1.0):
                copy = 2 * len(labels) + (0 if sign > 0 else 1)
                shifted = replace(delta, amount=sign * step * delta.amount)
                parts.extend((mine.relabel(copy), shifted.relabel(copy)))
            labels.append((p, t))
    if not parts:
        return total.take(np.zeros(0, dtype=np.int64)), labels
    return BaseFactors.concat(parts), labels


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
