"""Schedule IM: the regulatory standardised grid (BCBS-IOSCO, *Margin requirements for
non-centrally cleared derivatives*, 2015, Appendix A) with the net-to-gross ratio.

Per trade: gross margin = grid percentage (by asset class and residual maturity) x |notional|,
the notional being the sum of the trade's Notional rows (signed, then the absolute value).
Per portfolio, side and regulation::

    NGR         = net replacement cost / gross replacement cost
                  (call: max(0, sum PV) / sum max(0, PV); post: min(0, .) / sum min(0, .))
    Schedule IM = gross margin x (0.4 + 0.6 x NGR)

Schedule rows are CRIF rows with ``IMModel = Schedule``, one ``Notional`` and one ``PV`` row
per trade (same ``TradeID``), a product class among Rates, FX, Credit, Equity, Commodity,
Other and an ``EndDate``. A trade without PV counts with PV 0; a trade without notional is
skipped. Residual maturity is the ACT/ACT (ISDA) year fraction from ``as_of`` to the end date;
a trade past its end date counts in the shortest band. With no positive (call) or negative
(post) PV the NGR is 1 (0 under BANX, following ORE).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginflow.simm.calculator import amounts_in
from marginflow.simm.crif import Crif
from marginflow.simm.fx import FxRates
from marginflow.simm.regulations import SIDES, Side, pair_index, split_units
from marginflow.simm.results import ScheduleMargin
from marginflow.simm.risk import ProductClass, RiskType

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class GridBand:
    """One line of the grid: asset class, maturity band [low, high) in years, percentage."""

    label: str
    product_class: ProductClass
    low: float
    high: float
    rate: float


GRID: tuple[GridBand, ...] = (
    GridBand("Credit 0-2 years", ProductClass.CREDIT, 0.0, 2.0, 0.02),
    GridBand("Credit 2-5 years", ProductClass.CREDIT, 2.0, 5.0, 0.05),
    GridBand("Credit 5+ years", ProductClass.CREDIT, 5.0, np.inf, 0.10),
    GridBand("Commodity", ProductClass.COMMODITY, -np.inf, np.inf, 0.15),
    GridBand("Equity", ProductClass.EQUITY, -np.inf, np.inf, 0.15),
    GridBand("FX", ProductClass.FX, -np.inf, np.inf, 0.06),
    GridBand("Interest Rate 0-2 years", ProductClass.RATES, 0.0, 2.0, 0.01),
    GridBand("Interest Rate 2-5 years", ProductClass.RATES, 2.0, 5.0, 0.02),
    GridBand("Interest Rate 5+ years", ProductClass.RATES, 5.0, np.inf, 0.04),
    GridBand("Other", ProductClass.OTHER, -np.inf, np.inf, 0.15),
)


def year_fraction_act_act_isda(start: dt.date, end: dt.date) -> float:
    """ACT/ACT (ISDA): days in each calendar year over that year's length; negative when
    ``end`` is before ``start``."""
    if end < start:
        return -year_fraction_act_act_isda(end, start)
    total = 0.0
    cursor = start
    while cursor < end:
        year_end = dt.date(cursor.year + 1, 1, 1)
        stop = min(year_end, end)
        length = (
            366
            if (cursor.year % 4 == 0 and cursor.year % 100 != 0) or cursor.year % 400 == 0
            else 365
        )
        total += (stop - cursor).days / length
        cursor = stop
    return total


def grid_band(product_class: ProductClass, maturity_years: float) -> GridBand:
    """The grid line of a trade (a trade past its end date counts in the shortest band)."""
    m = max(maturity_years, 0.0)
    for band in GRID:
        if band.product_class == product_class and band.low <= m < band.high:
            return band
    raise ValueError(f"no Schedule grid line for {product_class!r}")


def schedule_margins(
    crif: Crif,
    *,
    currency: str,
    fx: FxRates,
    as_of: dt.date,
    enforce_regulations: bool = True,
) -> dict[tuple[str, Side], dict[str, ScheduleMargin]]:
    """(portfolio, side) -> regulation -> Schedule IM, for the Schedule rows of ``crif``."""
    if len(crif) == 0:
        return {}
    amount = amounts_in(crif, currency, fx)
    notional_row = crif.risk_type == RiskType.NOTIONAL
    trade = crif.trade.astype(np.int64)
    end = crif.end_date.astype("datetime64[D]").astype(object)
    maturity_cache: dict[dt.date, float] = {}
    out: dict[tuple[str, Side], dict[str, ScheduleMargin]] = {}
    n_sets = len(crif.regulation_sets)
    for side in SIDES:
        regset = (crif.collect_regs if side == "call" else crif.post_regs).astype(np.int64)
        other = (crif.post_regs if side == "call" else crif.collect_regs).astype(np.int64)
        portfolio = crif.portfolio.astype(np.int64)
        split = split_units(
            portfolio, regset, other, crif.regulation_sets, side=side, enforce=enforce_regulations
        )
        pair = pair_index(split, portfolio, regset, n_sets, enforce_regulations)
        for u, unit in enumerate(split.units):
            pairs = split.edge_pair[split.edge_unit == u]
            rows = np.flatnonzero(np.isin(pair, pairs))
            result = _unit_margin(
                rows,
                trade,
                notional_row,
                amount,
                crif,
                end,
                as_of,
                side,
                unit.regulations,
                maturity_cache,
            )
            for reg in unit.regulations:
                out.setdefault((crif.portfolios[unit.portfolio], side), {})[reg] = ScheduleMargin(
                    regulation=reg,
                    gross_margin=result.gross_margin,
                    gross_replacement_cost=result.gross_replacement_cost,
                    net_replacement_cost=result.net_replacement_cost,
                    net_to_gross=_ngr(result, reg),
                    margin=result.gross_margin * (0.4 + 0.6 * _ngr(result, reg)),
                    by_class=result.by_class,
                )
    return out


def _ngr(result: ScheduleMargin, regulation: str) -> float:
    if result.gross_replacement_cost == 0.0:
        return 0.0 if regulation == "BANX" else 1.0
    return result.net_replacement_cost / result.gross_replacement_cost


def _unit_margin(
    rows: NDArray[np.intp],
    trade: NDArray[np.int64],
    notional_row: NDArray[np.bool_],
    amount: F64,
    crif: Crif,
    end: NDArray[np.object_],
    as_of: dt.date,
    side: Side,
    regulations: tuple[str, ...],
    cache: dict[dt.date, float],
) -> ScheduleMargin:
    notionals: dict[int, float] = {}
    pvs: dict[int, float] = {}
    info: dict[int, tuple[ProductClass, dt.date]] = {}
    for r in rows.tolist():
        t = int(trade[r])
        if notional_row[r]:
            notionals[t] = notionals.get(t, 0.0) + float(amount[r])
            info[t] = (ProductClass(int(crif.product_class[r])), end[r])
        else:
            pvs[t] = pvs.get(t, 0.0) + float(amount[r])
    gross = 0.0
    by_class: dict[str, float] = {}
    for t, notional in notionals.items():
        pc, end_date = info[t]
        if end_date not in cache:
            cache[end_date] = year_fraction_act_act_isda(as_of, end_date)
        band = grid_band(pc, cache[end_date])
        margin = band.rate * abs(notional)  # a trade's rows net first, as ORE does
        gross += margin
        by_class[band.label] = by_class.get(band.label, 0.0) + margin
    pv = [pvs.get(t, 0.0) for t in notionals]
    if side == "call":
        grc = float(sum(max(0.0, v) for v in pv))
        nrc = max(0.0, float(sum(pv)))
    else:
        grc = float(sum(min(0.0, v) for v in pv))
        nrc = min(0.0, float(sum(pv)))
    return ScheduleMargin(
        regulation=regulations[0],
        gross_margin=gross,
        gross_replacement_cost=grc,
        net_replacement_cost=nrc,
        net_to_gross=float("nan"),
        margin=float("nan"),
        by_class=by_class,
    )
