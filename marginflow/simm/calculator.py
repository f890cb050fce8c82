"""SIMM of a validated CRIF: units (portfolio x side x regulation), risk-factor aggregation,
margins, aggregation across risk classes and product classes, add-ons, winning regulation.

Sides: *call* is SIMM on the sensitivities as given (the margin the file's owner collects),
*post* is SIMM on the negated sensitivities (the margin it posts). SIMM parameters (product
class multipliers, add-ons, notionals) are not negated. Aggregation (methodology section
B.12-B.14):

    IM_rc  = DeltaMargin + VegaMargin + CurvatureMargin (+ BaseCorrMargin for credit Q)
    IM_pc  = sqrt(sum_r IM_r^2 + sum_{r != s} psi_rs IM_r IM_s)
    SIMM   = sum_pc IM_pc * multiplier_pc + notional add-on + fixed add-on

with the notional add-on sum_q factor_q / 100 * notional_q (factor as a percentage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from marginflow.core.errors import ValidationError
from marginflow.simm.calibration import Calibration
from marginflow.simm.crif import IM_MODEL_SIMM, Crif
from marginflow.simm.currencies import ACCEPTED_CURRENCIES, CURRENCY_ALIASES
from marginflow.simm.fx import FxRates
from marginflow.simm.margins import Context, FactorTable, Margins, compute_margins
from marginflow.simm.regulations import (
    SIDES,
    Side,
    Unit,
    UnitSplit,
    pair_index,
    split_units,
    winning,
)
from marginflow.simm.results import Node
from marginflow.simm.risk import (
    MARGIN_TYPE_NAMES,
    N_SENSITIVITY_TYPES,
    N_SIMM_PRODUCT_CLASSES,
    PRODUCT_CLASS_NAMES,
    RISK_CLASS_NAMES,
    MarginType,
    ProductClass,
    RiskClass,
    RiskType,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
N_PC = N_SIMM_PRODUCT_CLASSES
N_RC = len(RiskClass)
N_MT = len(MarginType)

MSG_CURRENCY = "calculation currency must be an ISO currency code, got {value!r}"
MSG_NOT_FINITE = (
    "SIMM of portfolio {portfolio!r} ({side}) is not finite: amounts or FX rates are too "
    "large for double precision"
)


@dataclass(frozen=True, slots=True)
class UnitResult:
    """SIMM of one unit (portfolio, side, regulations), with its breakdown tree."""

    unit: Unit
    margin: float
    breakdown: Node


@dataclass(frozen=True, slots=True)
class SimmRun:
    """All units of a CRIF for one calibration and calculation currency."""

    units: tuple[UnitResult, ...]
    portfolios: tuple[str, ...]
    currency: str


def amounts_in(crif: Crif, currency: str, fx: FxRates) -> F64:
    """CRIF amounts in ``currency``: AmountUSD when the currency is USD and it is given,
    otherwise Amount converted from AmountCurrency, otherwise AmountUSD converted from USD.
    Multipliers and notional factors are unitless and kept as given."""
    usd_per_calc = fx.usd_per(currency)
    usd_per_ccy = np.array(
        [fx.usd_per_unit.get(c, np.nan) if c != "USD" else 1.0 for c in crif.currencies] or [np.nan]
    )
    has_amount = np.isfinite(crif.amount) & (crif.amount_currency >= 0)
    rate = np.where(has_amount, usd_per_ccy[np.maximum(crif.amount_currency, 0)], np.nan)
    from_amount = crif.amount * rate / usd_per_calc
    from_usd = crif.amount_usd / usd_per_calc
    use_usd = np.isfinite(crif.amount_usd) & ((currency == "USD") | ~np.isfinite(from_amount))
    out = np.where(use_usd, from_usd, from_amount)
    unitless = (crif.risk_type == RiskType.PRODUCT_CLASS_MULTIPLIER) | (
        crif.risk_type == RiskType.ADD_ON_NOTIONAL_FACTOR
    )
    out = np.where(unitless, crif.amount, out)
    missing = ~np.isfinite(out)
    if missing.any():
        codes = np.unique(crif.amount_currency[missing & (crif.amount_currency >= 0)])
        names = ", ".join(crif.currencies[int(c)] for c in codes) or "?"
        raise ValidationError("fx_rate", f"no FX rate for {names} (USD per unit); give --fx-rates")
    return out


def _fold(columns: Sequence[I64]) -> I64:
    """One int64 key per distinct combination of the (non-negative) columns, order-preserving."""
    key = np.zeros(columns[0].shape[0], dtype=np.int64)
    for col in columns:
        col = col.astype(np.int64) + 1
        card = int(col.max(initial=0)) + 1
        if card > 1 and int(key.max(initial=0)) >= (2**62) // card:
            key = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)
        key = key * card + col
    return key


@dataclass(frozen=True, slots=True)
class BaseFactors:
    """CRIF rows aggregated by every field SIMM distinguishes (portfolio, both regulation
    sets, product class, risk type, qualifier, bucket, labels), before the split into units.
    Amounts are in the calculation currency (multipliers and notional factors as given);
    ``trade`` is set when aggregated per trade, else -1."""

    portfolio: I64
    collect: I64
    post: I64
    product_class: I64
    risk_type: I64
    qualifier: I64
    bucket: I64
    label1: I64
    label2: I64
    amount: F64
    trade: I64

    def take(self, index: NDArray[np.bool_] | I64) -> BaseFactors:
        return BaseFactors(*(getattr(self, f)[index] for f in _BASE_FIELDS))

    def relabel(self, portfolio: int) -> BaseFactors:
        """The same factors as portfolio code ``portfolio``."""
        return replace(self, portfolio=np.full(self.portfolio.size, portfolio, dtype=np.int64))

    @staticmethod
    def concat(parts: Sequence[BaseFactors]) -> BaseFactors:
        return BaseFactors(*(np.concatenate([getattr(p, f) for p in parts]) for f in _BASE_FIELDS))


_BASE_FIELDS = (
    "portfolio",
    "collect",
    "post",
    "product_class",
    "risk_type",
    "qualifier",
    "bucket",
    "label1",
    "label2",
    "amount",
    "trade",
)


def base_factors(crif: Crif, amount: F64, *, by_trade: bool = False) -> BaseFactors:
    """Aggregate rows (``amount`` in the calculation currency, see :func:`amounts_in`).
    Sensitivities, notionals and fixed add-ons add up; a product class multiplier or notional
    factor given twice for the same key is taken once (the largest)."""
    cols = [
        crif.portfolio.astype(np.int64),
        crif.collect_regs.astype(np.int64),
        crif.post_regs.astype(np.int64),
        crif.product_class.astype(np.int64),
        crif.risk_type.astype(np.int64),
        crif.qualifier.astype(np.int64),
        crif.bucket.astype(np.int64),
        crif.label1.astype(np.int64),
        crif.label2.astype(np.int64),
    ]
    trade = crif.trade.astype(np.int64) if by_trade else np.full(len(crif), -1, dtype=np.int64)
    key = _fold([*cols, trade])
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    total = np.asarray(np.bincount(inverse, amount, uniq.size), dtype=np.float64)
    unitless = (crif.risk_type == RiskType.PRODUCT_CLASS_MULTIPLIER) | (
        crif.risk_type == RiskType.ADD_ON_NOTIONAL_FACTOR
    )
    if unitless.any():
        largest = np.full(uniq.size, -np.inf)
        np.maximum.at(largest, inverse[unitless], amount[unitless])
        total = np.where(np.isfinite(largest), largest, total)
    c = [col[first] for col in cols]
    return BaseFactors(
        portfolio=c[0],
        collect=c[1],
        post=c[2],
        product_class=c[3],
        risk_type=c[4],
        qualifier=c[5],
        bucket=c[6],
        label1=c[7],
        label2=c[8],
        amount=total,
        trade=trade[first],
    )


def _explode(split: UnitSplit, pair_of_row: I64) -> tuple[I64, I64]:
    """(row index, unit id) for every unit each row's pair belongs to."""
    order = np.argsort(split.edge_pair, kind="stable")
    e_pair, e_unit = split.edge_pair[order], split.edge_unit[order]
    n_pairs = split.pair_portfolio.size
    counts = np.bincount(e_pair, minlength=n_pairs)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    per_row = counts[pair_of_row]
    rows = np.repeat(np.arange(pair_of_row.size), per_row)
    start = np.repeat(offsets[pair_of_row], per_row)
    within = np.arange(rows.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    return rows, e_unit[start + within]


def run_simm(
    crif: Crif,
    *,
    calibration: Calibration,
    currency: str = "USD",
    fx: FxRates | None = None,
    enforce_regulations: bool = True,
    detail: bool = False,
) -> SimmRun:
    """SIMM of every (portfolio, side, regulation) unit of ``crif`` (rows with IM model
    SIMM; Schedule rows are ignored here)."""
    currency = check_currency(currency)
    fx = fx or FxRates.of({})
    simm_rows = crif.take(crif.im_model == IM_MODEL_SIMM)
    base = base_factors(simm_rows, amounts_in(simm_rows, currency, fx))
    return simm_of_base(
        base,
        regulation_sets=crif.regulation_sets,
        qualifiers=crif.qualifiers,
        portfolios=crif.portfolios,
        calibration=calibration,
        currency=currency,
        fx=fx,
        enforce_regulations=enforce_regulations,
        detail=detail,
    )


def check_currency(currency: str) -> str:
    """``currency`` upper-cased; raises :class:`ValidationError` unless it is a currency code."""
    currency = currency.strip().upper()
    if currency not in ACCEPTED_CURRENCIES:
        raise ValidationError("currency", MSG_CURRENCY.format(value=currency))
    return currency


def simm_of_base(
    base: BaseFactors,
    *,
    regulation_sets: Sequence[frozenset[str]],
    qualifiers: tuple[str, ...],
    portfolios: tuple[str, ...],
    calibration: Calibration,
    currency: str,
    fx: FxRates,
    enforce_regulations: bool = True,
    detail: bool = False,
) -> SimmRun:
    """SIMM of every unit of already aggregated factors (``base.portfolio`` indexes
    ``portfolios``); the engine behind :func:`run_simm`."""
    n_sets = len(regulation_sets)
    units: list[Unit] = []
    tables: list[FactorTable] = []
    params: list[tuple[I64, I64, I64, F64]] = []
    for side in SIDES:
        regset = base.collect if side == "call" else base.post
        other = base.post if side == "call" else base.collect
        split = split_units(
            base.portfolio,
            regset,
            other,
            regulation_sets,
            side=side,
            enforce=enforce_regulations,
            unit_offset=len(units),
        )
        units.extend(split.units)
        pair = pair_index(split, base.portfolio, regset, n_sets, enforce_regulations)
        rows, unit = _explode(split, pair)
        sign = 1.0 if side == "call" else -1.0
        sens = base.risk_type[rows] < N_SENSITIVITY_TYPES
        r, u = rows[sens], unit[sens]
        tables.append(
            FactorTable(
                group=u * N_PC + base.product_class[r],
                risk_type=base.risk_type[r],
                qualifier=base.qualifier[r],
                bucket=base.bucket[r],
                label1=base.label1[r],
                label2=base.label2[r],
                amount=sign * base.amount[r],
            )
        )
        r, u = rows[~sens], unit[~sens]
        params.append((u, base.risk_type[r], base.qualifier[r], base.amount[r]))
    table = _aggregate(_concat(tables))
    ctx = Context(
        calibration=calibration,
        currency=CURRENCY_ALIASES.get(currency, currency),
        usd_to_calc=1.0 / fx.usd_per(currency),
        qualifiers=qualifiers,
        detail=detail,
    )
    margins = compute_margins(table, ctx)
    p_unit, p_rt, p_q, p_amt = (np.concatenate([p[i] for p in params]) for i in range(4))
    results = _assemble(
        units, margins, calibration, (p_unit, p_rt, p_q, p_amt), qualifiers, len(units)
    )
    _check_finite(results, portfolios)
    return SimmRun(units=tuple(results), portfolios=portfolios, currency=currency)


def _check_finite(results: Sequence[UnitResult], portfolios: tuple[str, ...]) -> None:
    """Raise when a margin overflowed: NaN would lose every comparison when the winning
    regulation is chosen, and inf is no amount to call."""
    for res in results:
        if not np.isfinite(res.margin):
            raise ValidationError(
                "margin",
                MSG_NOT_FINITE.format(portfolio=portfolios[res.unit.portfolio], side=res.unit.side),
            )


def _concat(tables: list[FactorTable]) -> FactorTable:
    return FactorTable(
        *(
            np.concatenate([getattr(t, f) for t in tables])
            for f in ("group", "risk_type", "qualifier", "bucket", "label1", "label2", "amount")
        )
    )


def _aggregate(t: FactorTable) -> FactorTable:
    """Sum rows of the same risk factor of the same group (several pairs of one unit)."""
    if t.group.size == 0:
        return t
    cols = [t.group, t.risk_type, t.qualifier, t.bucket, t.label1, t.label2]
    uniq, first, inverse = np.unique(_fold(cols), return_index=True, return_inverse=True)
    amount = np.asarray(np.bincount(inverse.reshape(-1), t.amount, uniq.size), dtype=np.float64)
    g, rt, q, b, l1, l2 = (c[first] for c in cols)
    return FactorTable(g, rt, q, b, l1, l2, amount)


def _assemble(
    units: list[Unit],
    margins: Margins,
    cal: Calibration,
    params: tuple[I64, I64, I64, F64],
    qualifiers: tuple[str, ...],
    n_units: int,
) -> list[UnitResult]:
    """Each unit's SIMM and tree: margins add up within a risk class, risk classes combine
    with the risk-class correlations into product classes, product classes are scaled by
    their multipliers and added with the add-ons."""
    g, rc, mt, value = margins.arrays()
    n_g = n_units * N_PC
    cube = np.zeros((n_g, N_RC, N_MT))
    present = np.zeros((n_g, N_RC, N_MT), dtype=bool)
    np.add.at(cube, (g, rc, mt), value)
    present[g, rc, mt] = True
    rc_margin = cube.sum(axis=2)
    psi = cal.risk_class_corr
    pc_margin = np.sqrt(np.maximum(np.einsum("gi,ij,gj->g", rc_margin, psi, rc_margin), 0.0))
    add_ons = _add_ons(params, qualifiers, n_units)
    buckets = _bucket_index(margins)
    out: list[UnitResult] = []
    for u, unit in enumerate(units):
        nodes: list[Node] = []
        for pc in range(N_PC):
            gid = u * N_PC + pc
            if present[gid].any():
                nodes.append(
                    _product_class_node(
                        pc,
                        gid,
                        float(pc_margin[gid]),
                        add_ons.multiplier[u, pc],
                        cube,
                        present,
                        rc_margin,
                        buckets,
                    )
                )
        if add_ons.notional[u]:
            children = tuple(Node(q, "qualifier", v) for q, v in sorted(add_ons.notional[u]))
            total = sum(v for _, v in add_ons.notional[u])
            nodes.append(Node("AddOnNotionalFactor", "add_on", total, children))
        if add_ons.fixed[u] != 0.0:
            nodes.append(Node("AddOnFixedAmount", "add_on", float(add_ons.fixed[u])))
        total = sum(n.margin for n in nodes)
        out.append(UnitResult(unit, total, Node("SIMM", "model", total, tuple(nodes))))
    return out


def _product_class_node(
    pc: int,
    gid: int,
    base: float,
    multiplier: float,
    cube: F64,
    present: NDArray[np.bool_],
    rc_margin: F64,
    buckets: dict[tuple[int, int, int], tuple[Node, ...]],
) -> Node:
    """Product class ``pc`` of group ``gid``: its risk classes and margin types, and the
    multiplier's add-on ``(multiplier - 1) x IM_pc`` when there is one."""
    rc_nodes = []
    for r in range(N_RC):
        if not present[gid, r].any():
            continue
        mt_nodes = tuple(
            Node(
                MARGIN_TYPE_NAMES[MarginType(m)],
                "margin_type",
                float(cube[gid, r, m]),
                buckets.get((gid, r, m), ()),
            )
            for m in range(N_MT)
            if present[gid, r, m]
        )
        rc_nodes.append(
            Node(RISK_CLASS_NAMES[RiskClass(r)], "risk_class", float(rc_margin[gid, r]), mt_nodes)
        )
    extra = (multiplier - 1.0) * base
    if extra != 0.0:
        rc_nodes.append(Node("ProductClassMultiplier", "add_on", extra))
    return Node(
        PRODUCT_CLASS_NAMES[ProductClass(pc)], "product_class", base + extra, tuple(rc_nodes)
    )


@dataclass(frozen=True, slots=True)
class _AddOns:
    """Per unit: product class multipliers [U, PC] (1 where none is given), the fixed
    add-on [U] and the notional add-on per product name (qualifier, amount)."""

    multiplier: F64
    fixed: F64
    notional: list[list[tuple[str, float]]]


def _add_ons(params: tuple[I64, I64, I64, F64], qualifiers: tuple[str, ...], n: int) -> _AddOns:
    """The add-on terms of ``n`` units from their parameter rows (unit, risk type,
    qualifier, amount). A multiplier or notional factor given twice for one key counts
    once (the largest); notionals add up; a notional factor is a percentage."""
    unit, rt, q, amount = params
    multiplier = np.ones((n, N_PC))
    pc_index = {PRODUCT_CLASS_NAMES[ProductClass(i)]: i for i in range(N_PC)}
    for (u, code), a in _largest(unit, q, amount, rt == RiskType.PRODUCT_CLASS_MULTIPLIER).items():
        multiplier[u, pc_index[qualifiers[code]]] = a
    is_fixed = rt == RiskType.ADD_ON_FIXED_AMOUNT
    fixed = np.bincount(unit[is_fixed], amount[is_fixed], n).astype(np.float64)
    notionals: dict[tuple[int, int], float] = {}
    nt = rt == RiskType.NOTIONAL
    for u, code, a in zip(unit[nt].tolist(), q[nt].tolist(), amount[nt].tolist(), strict=True):
        notionals[(u, code)] = notionals.get((u, code), 0.0) + a
    by_unit: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    factors = _largest(unit, q, amount, rt == RiskType.ADD_ON_NOTIONAL_FACTOR)
    for (u, code), factor in factors.items():
        if (u, code) in notionals:
            by_unit[u].append((qualifiers[code], notionals[(u, code)] * factor / 100.0))
    return _AddOns(multiplier, fixed, by_unit)


def _largest(
    unit: I64, q: I64, amount: F64, rows: NDArray[np.bool_]
) -> dict[tuple[int, int], float]:
    """The largest amount per (unit, qualifier) among ``rows``."""
    out: dict[tuple[int, int], float] = {}
    for u, code, a in zip(
        unit[rows].tolist(), q[rows].tolist(), amount[rows].tolist(), strict=True
    ):
        out[(u, code)] = max(out.get((u, code), a), a)
    return out


def _bucket_index(margins: Margins) -> dict[tuple[int, int, int], tuple[Node, ...]]:
    """Bucket nodes (with qualifier children when detailed) by (group, risk class, type)."""
    quals: dict[tuple[int, int, int, str], list[Node]] = {}
    for grp, rc, mt, bnames, qnames, values in zip(
        margins.qual_group,
        margins.qual_rc,
        margins.qual_mt,
        margins.qual_bucket,
        margins.qual_name,
        margins.qual_value,
        strict=True,
    ):
        for i, (g_, r_, m_) in enumerate(zip(grp.tolist(), rc.tolist(), mt.tolist(), strict=True)):
            quals.setdefault((g_, r_, m_, bnames[i]), []).append(
                Node(qnames[i], "qualifier", float(values[i]))
            )
    out: dict[tuple[int, int, int], list[Node]] = {}
    for grp, rc, mt, labels, values in zip(
        margins.bucket_group,
        margins.bucket_rc,
        margins.bucket_mt,
        margins.bucket_label,
        margins.bucket_value,
        strict=True,
    ):
        for i, (g_, r_, m_) in enumerate(zip(grp.tolist(), rc.tolist(), mt.tolist(), strict=True)):
            children = tuple(quals.get((g_, r_, m_, labels[i]), ()))
            out.setdefault((g_, r_, m_), []).append(
                Node(labels[i], "bucket", float(values[i]), children)
            )
    return {k: tuple(sorted(v, key=lambda n: _bucket_sort(n.name))) for k, v in out.items()}


def _bucket_sort(name: str) -> tuple[int, int, str]:
    if name.isdigit():
        return (0, int(name), "")
    return (2, 0, name) if name == "Residual" else (1, 0, name)


def winners(run: SimmRun) -> dict[tuple[str, Side], tuple[float, str, UnitResult]]:
    """(portfolio, side) -> (margin, winning regulation, its unit result)."""
    grouped: dict[tuple[str, Side], list[UnitResult]] = {}
    for u in run.units:
        grouped.setdefault((run.portfolios[u.unit.portfolio], u.unit.side), []).append(u)
    out: dict[tuple[str, Side], tuple[float, str, UnitResult]] = {}
    for key, units in grouped.items():
        best = winning([(u.margin, u.unit.regulations) for u in units])
        if best is None:
            continue
        margin, reg = best
        unit = next(u for u in units if reg in u.unit.regulations)
        out[key] = (margin, reg, unit)
    return out
