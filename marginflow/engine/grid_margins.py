"""The scenario-grid models (:mod:`marginflow.margin.span`,
:mod:`marginflow.margin.portfolio_margin`) applied to a clearing book.

SPAN-style: one combined commodity per underlying, its 16 scenarios from NSE's published
parameters (reference table §1) unless others are given:

* price scan range = max(k σ, floor) × spot, σ the daily vol (ATM implied / √252),
  k = 3 and floor 7.1% for indices, k = 3.5 and floor 10.7% for single stocks and ETFs;
* volatility scan range 4 vol points for indices, 10 for stocks (absolute);
* extreme moves 2 × PSR covered at 35%;
* short option minimum 3% (indices) / 7.5% (stocks) of the underlying notional per short
  contract; net option value offsets risk across the account.

A share is a future with multiplier 1 (delta 1 per share). Portfolio margin (TIMS family):
one class per underlying, range by kind (±15% stocks and ETFs, ±10% indices, +6%/-8% for
high-cap broad indices), the rule's $0.375 × multiplier minimum per option contract.
Options are revalued at today's implied vol of their strike (the smile of :mod:`.book`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from marginflow.core.book import Book, InstrumentKind, Positions
from marginflow.core.errors import ConfigurationError, ValidationError
from marginflow.engine.revaluation import option_batch
from marginflow.margin.base import AccountMargin, Breakdown, Contribution, ModelInfo
from marginflow.margin.portfolio_margin import (
    PmInstruments,
    PortfolioMarginParameters,
    PortfolioMarginResult,
    contract_minimums,
    linear_grid_pnl,
    option_grid_pnl,
    portfolio_margin,
)
from marginflow.margin.span import (
    SpanCommodity,
    SpanInstruments,
    SpanParameters,
    SpanResult,
    SpanScenarios,
    futures_risk_arrays,
    option_risk_arrays,
    short_option_charges,
    span_margin,
)

TRADING_DAYS = 252.0


@dataclass(frozen=True, slots=True)
class NseStyleSpan:
    """How SPAN parameters are derived per underlying from its market data."""

    index_sigmas: float = 3.0
    stock_sigmas: float = 3.5
    index_min_fraction: float = 0.071
    stock_min_fraction: float = 0.107
    index_vsr: float = 0.04
    stock_vsr: float = 0.10
    index_som_fraction: float = 0.03
    stock_som_fraction: float = 0.075
    extreme_multiple: float = 2.0
    extreme_cover: float = 0.35


def span_parameters_for(book: Book, cfg: NseStyleSpan | None = None) -> SpanParameters:
    cfg = cfg or NseStyleSpan()
    scenarios = SpanScenarios.standard(
        extreme_multiple=cfg.extreme_multiple, extreme_cover=cfg.extreme_cover
    )
    mk = book.market
    commodities = []
    for u, name in enumerate(book.underlyings.ids):
        index = book.underlyings.kind[u] == "index"
        sigma = mk.atm_vol[u] / math.sqrt(TRADING_DAYS)
        k, floor = (
            (cfg.index_sigmas, cfg.index_min_fraction)
            if index
            else (cfg.stock_sigmas, cfg.stock_min_fraction)
        )
        commodities.append(
            SpanCommodity(
                name=name,
                price_scan_range=float(max(k * sigma, floor) * mk.spot[u]),
                vol_scan_range=cfg.index_vsr if index else cfg.stock_vsr,
                scenarios=scenarios,
                short_option_minimum_fraction=(
                    cfg.index_som_fraction if index else cfg.stock_som_fraction
                ),
            )
        )
    return SpanParameters(commodities=tuple(commodities))


def span_instruments_for(book: Book, params: SpanParameters) -> SpanInstruments:
    ins = book.instruments
    n, s = len(ins), params.n_scenarios
    risk = np.zeros((n, s))
    delta = np.zeros(n)
    value = np.zeros(n)
    com = ins.underlying.astype(np.int64)
    stock = np.flatnonzero(ins.kind == InstrumentKind.STOCK)
    opt = np.flatnonzero(ins.kind != InstrumentKind.STOCK)
    if stock.size:
        ra = futures_risk_arrays(
            params=params, commodity=com[stock], multiplier=ins.multiplier[stock]
        )
        risk[stock], delta[stock] = ra.risk_array, ra.delta
    if opt.size:
        ra = option_risk_arrays(
            params=params,
            commodity=com[opt],
            batch=option_batch(ins, book.market, opt, 0.01),
            multiplier=ins.multiplier[opt],
        )
        risk[opt], delta[opt], value[opt] = ra.risk_array, ra.delta, ra.value
    som = np.zeros(n)
    if opt.size:
        som[opt] = short_option_charges(
            params=params,
            commodity=com[opt],
            underlying_price=book.market.spot[ins.underlying[opt]],
            multiplier=ins.multiplier[opt],
        )
    return SpanInstruments.of(
        risk_array=risk,
        commodity=com,
        delta=delta,
        option_value=value,
        short_option_charge=som,
        is_option=ins.kind != InstrumentKind.STOCK,
        is_call=ins.kind == InstrumentKind.CALL,
    )


def span_margin_book(book: Book, cfg: NseStyleSpan | None = None, *, top_n: int = 5) -> SpanResult:
    params = span_parameters_for(book, cfg)
    return span_margin(
        positions=book.positions.matrix,
        instruments=span_instruments_for(book, params),
        params=params,
        top_n=top_n,
    )


def pm_instruments_for(book: Book, params: PortfolioMarginParameters) -> PmInstruments:
    ins, und = book.instruments, book.underlyings
    ranges = [
        params.range_for(und.kind[u], high_cap=bool(und.high_cap_broad_index[u]))
        for u in range(len(und))
    ]
    up = np.array([r.up for r in ranges])[ins.underlying]
    down = np.array([r.down for r in ranges])[ins.underlying]
    n = len(ins)
    pnl = np.zeros((n, params.n_points))
    value = np.zeros(n)
    stock = np.flatnonzero(ins.kind == InstrumentKind.STOCK)
    opt = np.flatnonzero(ins.kind != InstrumentKind.STOCK)
    if stock.size:
        pnl[stock] = linear_grid_pnl(
            params=params,
            spot=book.market.spot[ins.underlying[stock]],
            multiplier=ins.multiplier[stock],
            up=up[stock],
            down=down[stock],
        )
    if opt.size:
        grid = option_grid_pnl(
            params=params,
            batch=option_batch(ins, book.market, opt, 0.01),
            multiplier=ins.multiplier[opt],
            up=up[opt],
            down=down[opt],
        )
        pnl[opt], value[opt] = grid.pnl, grid.value
    min_long, min_short = contract_minimums(
        params=params, multiplier=ins.multiplier, value=value, is_option=ins.is_option
    )
    return PmInstruments.of(
        pnl=pnl,
        class_index=ins.underlying.astype(np.int64),
        up=up,
        down=down,
        minimum_long=min_long,
        minimum_short=min_short,
    )


def portfolio_margin_book(
    book: Book, params: PortfolioMarginParameters | None = None, *, top_n: int = 5
) -> PortfolioMarginResult:
    params = params or PortfolioMarginParameters()
    return portfolio_margin(
        positions=book.positions.matrix,
        instruments=pm_instruments_for(book, params),
        params=params,
        top_n=top_n,
    )


def grid_margin_book(model: str, book: Book) -> SpanResult | PortfolioMarginResult:
    """``model`` is ``"span"`` or ``"pm"``."""
    if model == "span":
        return span_margin_book(book)
    if model == "pm":
        return portfolio_margin_book(book)
    raise ConfigurationError(f"not a grid model: {model!r} (span or pm)")


def grid_what_if(
    model: str, book: Book, account: str, trades: Sequence[tuple[str, float]]
) -> tuple[AccountMargin, AccountMargin]:
    """(before, after) margins of ``account`` with ``trades`` added; the book is unchanged.
    Only that account's instruments are revalued."""
    p = book.positions
    try:
        a = p.accounts.index(account)
    except ValueError:
        raise ValidationError("account", f"unknown account {account!r}") from None
    index = book.instruments.index()
    row = p.matrix[a].toarray().ravel()
    new = row.copy()
    for instrument, q in trades:
        j = index.get(instrument)
        if j is None:
            raise ValidationError("instrument", f"unknown instrument {instrument!r}")
        new[j] += q
    cols = np.flatnonzero((row != 0) | (new != 0))
    two = Positions(
        accounts=(account, account),
        members=p.members,
        account_member=np.repeat(p.account_member[a], 2).astype(np.int32),
        matrix=sp.csr_matrix(np.vstack([row[cols], new[cols]])),
    )
    small = replace(book, instruments=book.instruments.take(cols), positions=two)
    before, after = grid_account_margins(grid_margin_book(model, small), small)
    return before, after


def grid_account_margins(
    result: SpanResult | PortfolioMarginResult, book: Book
) -> list[AccountMargin]:
    """Per-account results with a breakdown in the common shape (components, driving
    scenario, largest contributors by loss at their group's driving point)."""
    p = book.positions
    names = book.instruments.ids
    components = result.components()
    info = ModelInfo(
        "span" if isinstance(result, SpanResult) else "pm", result.parameters.to_mapping()
    )
    out = []
    for a, account in enumerate(p.accounts):
        detail = _detail(result, a, names, book.underlyings.ids)
        driving = detail.get("driving")
        out.append(
            AccountMargin(
                account=account,
                member=p.members[int(p.account_member[a])],
                margin=float(result.margin[a]),
                model=info,
                breakdown=Breakdown(
                    components={k: float(v[a]) for k, v in components.items()},
                    driving_scenario=_driving_text(driving),
                    top_positions=tuple(
                        Contribution(c["instrument"], c["quantity"], c["loss"])
                        for c in detail.get("largest_contributors", [])
                    ),
                    extra={k: v for k, v in detail.items() if k in ("commodities", "classes")},
                ),
            )
        )
    return out


def _detail(
    result: SpanResult | PortfolioMarginResult,
    a: int,
    names: Sequence[str],
    classes: Sequence[str],
) -> dict[str, Any]:
    if isinstance(result, SpanResult):
        return result.breakdown(a, instrument_names=names)
    return result.breakdown(a, class_names=classes, instrument_names=names)


def _driving_text(driving: Any) -> str | None:
    if not driving:
        return None
    if "commodity" in driving:
        return f"{driving['commodity']} #{driving['scenario']} ({driving['scenario_description']})"
    return f"{driving['class']} {driving['move']:+.1%}"
