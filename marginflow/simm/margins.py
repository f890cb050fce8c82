"""Delta, vega, curvature and base-correlation margins of every risk class, for many
calculation groups at once.

Input is a :class:`FactorTable`: one row per risk factor (risk type, qualifier, bucket,
Label1, Label2) of each *group* (one product class of one SIMM calculation), amounts already
in the calculation currency and already negated for the post side. Output is long-format:
one margin per (group, risk class, margin type) and one per bucket for the breakdown.

The formulas are those of the ISDA SIMM methodology (sections B.2-B.11 of the methodology
document); where the document leaves a choice open, the choice matches ORE's implementation
(e.g. which rows count in the curvature theta), so the two agree to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from marginflow.simm import kernels
from marginflow.simm.calibration import NORMAL_Q995, BucketedParams, Calibration
from marginflow.simm.risk import MarginType, RiskClass, RiskType

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

LAMBDA_BASE = NORMAL_Q995 * NORMAL_Q995 - 1.0
QL_CLOSE_TO_ZERO = (42.0 * np.finfo(float).eps) ** 2


def curvature_lambda(theta: F64) -> F64:
    """lambda(theta) = (N^-1(99.5%)^2 - 1) (1 + theta) - theta."""
    return LAMBDA_BASE * (1.0 + theta) - theta


@dataclass(frozen=True, slots=True)
class FactorTable:
    """Risk factors of all groups: parallel arrays of equal length."""

    group: I64
    risk_type: I64
    qualifier: I64
    bucket: I64
    label1: I64
    label2: I64
    amount: F64

    def select(self, index: B | I64) -> FactorTable:
        """Rows by boolean mask or integer index."""
        return FactorTable(
            self.group[index],
            self.risk_type[index],
            self.qualifier[index],
            self.bucket[index],
            self.label1[index],
            self.label2[index],
            self.amount[index],
        )

    def sorted_by_group_qualifier(self, *, by_bucket: bool = False) -> FactorTable:
        """Rows ordered by group, (bucket,) qualifier, Label1, Label2."""
        keys: tuple[NDArray[np.int64], ...] = (self.label2, self.label1, self.qualifier)
        if by_bucket:
            keys = (*keys, self.bucket)
        return self.select(np.lexsort((*keys, self.group)).astype(np.int64))


@dataclass(frozen=True, slots=True)
class Context:
    """What the formulas need beyond the factors: the calibration, the calculation currency,
    the threshold scale (USD -> calculation currency) and the qualifier strings."""

    calibration: Calibration
    currency: str
    usd_to_calc: float
    qualifiers: tuple[str, ...]
    detail: bool = False


@dataclass(slots=True)
class Margins:
    """Long-format results. ``bucket_*`` rows detail each margin by bucket (by currency for
    interest rate, by currency or currency pair for FX); ``qual_*`` rows (only with
    ``detail``) give each qualifier's net weighted sensitivity within its bucket."""

    group: list[I64] = field(default_factory=list)
    risk_class: list[I64] = field(default_factory=list)
    margin_type: list[I64] = field(default_factory=list)
    value: list[F64] = field(default_factory=list)
    bucket_group: list[I64] = field(default_factory=list)
    bucket_rc: list[I64] = field(default_factory=list)
    bucket_mt: list[I64] = field(default_factory=list)
    bucket_label: list[list[str]] = field(default_factory=list)
    bucket_value: list[F64] = field(default_factory=list)
    qual_group: list[I64] = field(default_factory=list)
    qual_rc: list[I64] = field(default_factory=list)
    qual_mt: list[I64] = field(default_factory=list)
    qual_bucket: list[list[str]] = field(default_factory=list)
    qual_name: list[list[str]] = field(default_factory=list)
    qual_value: list[F64] = field(default_factory=list)

    def add(self, group: I64, rc: RiskClass, mt: MarginType, value: F64) -> None:
        self.group.append(group)
        self.risk_class.append(np.full(group.shape, int(rc), dtype=np.int64))
        self.margin_type.append(np.full(group.shape, int(mt), dtype=np.int64))
        self.value.append(value)

    def add_buckets(
        self, group: I64, rc: RiskClass, mt: MarginType, labels: list[str], value: F64
    ) -> None:
        self.bucket_group.append(group)
        self.bucket_rc.append(np.full(group.shape, int(rc), dtype=np.int64))
        self.bucket_mt.append(np.full(group.shape, int(mt), dtype=np.int64))
        self.bucket_label.append(labels)
        self.bucket_value.append(value)

    def add_qualifiers(
        self,
        group: I64,
        rc: RiskClass,
        mt: MarginType,
        buckets: list[str],
        names: list[str],
        value: F64,
    ) -> None:
        self.qual_group.append(group)
        self.qual_rc.append(np.full(group.shape, int(rc), dtype=np.int64))
        self.qual_mt.append(np.full(group.shape, int(mt), dtype=np.int64))
        self.qual_bucket.append(buckets)
        self.qual_name.append(names)
        self.qual_value.append(value)

    def arrays(self) -> tuple[I64, I64, I64, F64]:
        if not self.group:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, np.zeros(0)
        return (
            np.concatenate(self.group),
            np.concatenate(self.risk_class),
            np.concatenate(self.margin_type),
            np.concatenate(self.value),
        )


def compute_margins(table: FactorTable, ctx: Context) -> Margins:
    """Every margin of every group in ``table``."""
    out = Margins()
    rt = table.risk_type
    _interest_rate(table.select(rt <= RiskType.INFLATION_VOL), ctx, out)
    cal = ctx.calibration
    for params, rc, delta_rt, vol_rt in (
        (cal.credit_q, RiskClass.CREDIT_Q, RiskType.CREDIT_Q, RiskType.CREDIT_VOL),
        (
            cal.credit_non_q,
            RiskClass.CREDIT_NON_Q,
            RiskType.CREDIT_NON_Q,
            RiskType.CREDIT_VOL_NON_Q,
        ),
        (cal.equity, RiskClass.EQUITY, RiskType.EQUITY, RiskType.EQUITY_VOL),
        (cal.commodity, RiskClass.COMMODITY, RiskType.COMMODITY, RiskType.COMMODITY_VOL),
    ):
        _bucketed(table.select(rt == delta_rt), ctx, out, params, rc, MarginType.DELTA)
        vol = table.select(rt == vol_rt)
        _bucketed(vol, ctx, out, params, rc, MarginType.VEGA)
        _bucketed(vol, ctx, out, params, rc, MarginType.CURVATURE)
    _fx(table.select(rt == RiskType.FX), table.select(rt == RiskType.FX_VOL), ctx, out)
    _base_corr(table.select(rt == RiskType.BASE_CORR), ctx, out)
    return out


# ----------------------------------------------------------------------------- helpers


def _sum_by(index: I64, weights: F64, n: int) -> F64:
    """Sum of ``weights`` per index value 0..n-1 (a float-typed bincount)."""
    return np.asarray(np.bincount(index, weights=weights, minlength=n), dtype=np.float64)


def _groups(key: I64) -> tuple[I64, I64]:
    """Sorted distinct keys and each row's index into them."""
    uniq, inverse = np.unique(key, return_inverse=True)
    return uniq, inverse.reshape(-1).astype(np.int64)


def _bounds(sorted_key: I64) -> tuple[I64, I64]:
    """Segment starts and ends of runs of equal values in a sorted array."""
    if sorted_key.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cuts = np.flatnonzero(np.diff(sorted_key)) + 1
    starts = np.concatenate([np.zeros(1, np.int64), cuts]).astype(np.int64)
    ends = np.concatenate([cuts, np.array([sorted_key.size])]).astype(np.int64)
    return starts, ends


def _concentration(net: F64, threshold: F64) -> F64:
    """CR = max(1, sqrt(|net sensitivity| / threshold)); 1 when there is no threshold."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isinf(threshold), 0.0, np.abs(net) / threshold)
    return np.maximum(1.0, np.sqrt(ratio))


def _clip(s: F64, k: F64) -> F64:
    return np.maximum(np.minimum(s, k), -k)


def _quad(v: F64, rho: F64) -> F64:
    """Row-wise v rho v^T."""
    return np.asarray(np.einsum("ij,jk,ik->i", v, rho, v), dtype=np.float64)


def _tenor_vectors(index: I64, n: int, tenor: I64, values: F64) -> F64:
    flat = _sum_by(index * 12 + tenor, values, n * 12)
    return flat.reshape(n, 12)


# ----------------------------------------------------------------------------- interest rate


def _interest_rate(t: FactorTable, ctx: Context, out: Margins) -> None:
    if t.group.size == 0:
        return
    ir = ctx.calibration.interest_rate
    nq = max(len(ctx.qualifiers), 1)
    ccy_bucket = np.array([ir.bucket_of(q) for q in ctx.qualifiers] or [0], dtype=np.int64)
    ccy_cat = np.array([ir.category_of(q) for q in ctx.qualifiers] or [0], dtype=np.int64)
    rt = t.risk_type
    delta = rt <= RiskType.XCCY_BASIS
    if delta.any():
        _ir_delta(t.select(delta), ctx, out, nq, ccy_bucket, ccy_cat)
    vol = ~delta
    if vol.any():
        _ir_vega(t.select(vol), ctx, out, nq, ccy_cat)
        _ir_curvature(t.select(vol), ctx, out, nq)


def _currency_groups(t: FactorTable, nq: int) -> tuple[I64, I64, I64, I64, I64]:
    """(group, currency) keys: per key its group and currency, each row's key index, and the
    segment bounds of the keys by group."""
    uniq, kinv = _groups(t.group * nq + t.qualifier)
    k_group, k_ccy = uniq // nq, uniq % nq
    starts, ends = _bounds(k_group)
    return k_group, k_ccy, kinv, starts, ends


def _ir_across(
    ctx: Context,
    k_group: I64,
    k_ccy: I64,
    starts: I64,
    ends: I64,
    k: F64,
    s: F64,
    cr: F64,
    mt: MarginType,
    out: Margins,
) -> None:
    ir = ctx.calibration.interest_rate
    sq = kernels.across_flat(starts, ends, k, s, cr, ir.inter_currency_corr, True)
    out.add(k_group[starts], RiskClass.INTEREST_RATE, mt, np.sqrt(np.maximum(sq, 0.0)))
    out.add_buckets(
        k_group, RiskClass.INTEREST_RATE, mt, [ctx.qualifiers[c] for c in k_ccy.tolist()], k
    )


def _ir_delta(
    t: FactorTable, ctx: Context, out: Margins, nq: int, ccy_bucket: I64, ccy_cat: I64
) -> None:
    ir = ctx.calibration.interest_rate
    k_group, k_ccy, kinv, starts, ends = _currency_groups(t, nq)
    n = k_group.size
    curve = t.risk_type == RiskType.IR_CURVE
    infl = t.risk_type == RiskType.INFLATION
    xccy = t.risk_type == RiskType.XCCY_BASIS
    net = _sum_by(kinv, np.where(curve | infl, t.amount, 0.0), n)
    threshold = ir.delta_threshold[ccy_cat[k_ccy]] * ctx.usd_to_calc
    cr = _concentration(net, threshold)
    rw = ir.delta_rw[ccy_bucket[k_ccy[kinv]], np.maximum(t.label1, 0)]
    ws = np.where(curve, rw * t.amount * cr[kinv], 0.0)
    ws_inf = ir.inflation_rw * _sum_by(kinv, np.where(infl, t.amount, 0.0), n) * cr
    ws_x = ir.xccy_basis_rw * _sum_by(kinv, np.where(xccy, t.amount, 0.0), n)
    tenor = np.maximum(t.label1, 0)
    v_all = _tenor_vectors(kinv, n, tenor, ws)
    sub_uniq, sub_inv = _groups(kinv * (int(t.label2.max(initial=0)) + 1) + np.maximum(t.label2, 0))
    v_sub = _tenor_vectors(sub_inv, sub_uniq.size, tenor, ws)
    q_sub = _sum_by(sub_uniq // (int(t.label2.max(initial=0)) + 1), _quad(v_sub, ir.tenor_corr), n)
    phi = ir.subcurve_corr
    sum_curve = v_all.sum(axis=1)
    k2 = (
        phi * _quad(v_all, ir.tenor_corr)
        + (1.0 - phi) * q_sub
        + ws_inf * ws_inf
        + 2.0 * ir.inflation_corr * ws_inf * sum_curve
        + ws_x * ws_x
        + 2.0 * ir.xccy_basis_corr * ws_x * sum_curve
        + 2.0 * ir.xccy_basis_corr * ws_inf * ws_x
    )
    k = np.sqrt(np.maximum(k2, 0.0))
    _ir_across(
        ctx, k_group, k_ccy, starts, ends, k, sum_curve + ws_inf + ws_x, cr, MarginType.DELTA, out
    )


def _ir_vega(t: FactorTable, ctx: Context, out: Margins, nq: int, ccy_cat: I64) -> None:
    ir = ctx.calibration.interest_rate
    k_group, k_ccy, kinv, starts, ends = _currency_groups(t, nq)
    n = k_group.size
    net = _sum_by(kinv, t.amount, n)
    cr = _concentration(net, ir.vega_threshold[ccy_cat[k_ccy]] * ctx.usd_to_calc)
    ws = ir.vega_rw * t.amount * cr[kinv]
    infl = t.risk_type == RiskType.INFLATION_VOL
    v = _tenor_vectors(kinv, n, np.maximum(t.label1, 0), np.where(infl, 0.0, ws))
    i_sum = _sum_by(kinv, np.where(infl, ws, 0.0), n)
    v_sum = v.sum(axis=1)
    k2 = _quad(v, ir.tenor_corr) + 2.0 * ir.inflation_corr * i_sum * v_sum + i_sum * i_sum
    k = np.sqrt(np.maximum(k2, 0.0))
    _ir_across(ctx, k_group, k_ccy, starts, ends, k, v_sum + i_sum, cr, MarginType.VEGA, out)


def _ir_curvature(t: FactorTable, ctx: Context, out: Margins, nq: int) -> None:
    cal = ctx.calibration
    ir = cal.interest_rate
    k_group, k_ccy, kinv, starts, ends = _currency_groups(t, nq)
    n = k_group.size
    infl = t.risk_type == RiskType.INFLATION_VOL
    cvr = cal.curvature_weight[np.maximum(t.label1, 0)] * t.amount
    v = _tenor_vectors(kinv, n, np.maximum(t.label1, 0), np.where(infl, 0.0, cvr))
    i_sum = _sum_by(kinv, np.where(infl, cvr, 0.0), n)
    v_sum = v.sum(axis=1)
    rho2 = ir.tenor_corr * ir.tenor_corr
    c2 = ir.inflation_corr * ir.inflation_corr
    k2 = _quad(v, rho2) + i_sum * i_sum + 2.0 * c2 * i_sum * v_sum
    k = np.sqrt(np.maximum(k2, 0.0))
    s = v_sum + i_sum
    n_seg = starts.size
    seg_of_key = np.repeat(np.arange(n_seg), ends - starts)
    total = _sum_by(seg_of_key, s, n_seg)
    abs_total = _sum_by(seg_of_key[kinv], np.where(infl, 0.0, np.abs(cvr)), n_seg)
    abs_total += _sum_by(seg_of_key, np.abs(i_sum), n_seg)
    gamma = ir.inter_currency_corr
    inner = kernels.across_flat(starts, ends, k, s, np.ones(n), gamma * gamma, False)
    margin = _curvature_total(total, abs_total, inner) * cal.curvature_ir_scaling
    out.add(k_group[starts], RiskClass.INTEREST_RATE, MarginType.CURVATURE, margin)
    out.add_buckets(
        k_group,
        RiskClass.INTEREST_RATE,
        MarginType.CURVATURE,
        [ctx.qualifiers[c] for c in k_ccy.tolist()],
        k,
    )


def _curvature_total(total: F64, abs_total: F64, inner: F64) -> F64:
    """max(sum CVR + lambda(theta) sqrt(inner), 0), theta = min(sum CVR / sum |CVR|, 0);
    zero when every curvature sensitivity is zero."""
    zero = np.abs(abs_total) < QL_CLOSE_TO_ZERO
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.minimum(np.where(zero, 0.0, total / np.where(zero, 1.0, abs_total)), 0.0)
    value = total + curvature_lambda(theta) * np.sqrt(np.maximum(inner, 0.0))
    return np.where(zero, 0.0, np.maximum(value, 0.0))


# ----------------------------------------------------------------------------- bucketed


def _bucketed(
    t: FactorTable,
    ctx: Context,
    out: Margins,
    p: BucketedParams,
    rc: RiskClass,
    mt: MarginType,
) -> None:
    if t.group.size == 0:
        return
    cal = ctx.calibration
    nb = len(p.buckets)
    nq = max(len(ctx.qualifiers), 1)
    t = t.sorted_by_group_qualifier(by_bucket=True)
    bucket = t.bucket
    curvature = mt == MarginType.CURVATURE
    sigma = np.ones(t.amount.size)
    hvr = 1.0
    if rc in (RiskClass.EQUITY, RiskClass.COMMODITY) and mt != MarginType.DELTA:
        sigma = cal.sigma_multiplier * p.delta_rw[bucket]
        hvr = p.hvr
    segment_key = t.group * nb + bucket
    starts, ends = _bounds(segment_key)
    seg_bucket = bucket[starts]
    seg_group = t.group[starts]
    credit = rc in (RiskClass.CREDIT_Q, RiskClass.CREDIT_NON_Q)
    if curvature:
        ws = cal.curvature_weight[np.maximum(t.label1, 0)] * (t.amount * sigma)
        if rc == RiskClass.EQUITY and cal.equity_curvature_zero_buckets:
            zero = np.isin(bucket, list(cal.equity_curvature_zero_buckets))
            ws = np.where(zero, 0.0, ws)
        cr = np.ones(ws.size)
    else:
        x = t.amount * sigma * hvr
        q_uniq, q_inv = _groups((t.group * nb + bucket) * nq + t.qualifier)
        threshold = (p.delta_threshold if mt == MarginType.DELTA else p.vega_threshold)[
            (q_uniq // nq) % nb
        ]
        cr_q = _concentration(_sum_by(q_inv, x, q_uniq.size), threshold * ctx.usd_to_calc)
        rw = (p.delta_rw if mt == MarginType.DELTA else p.vega_rw)[bucket]
        ws = rw * x * cr_q[q_inv]
        cr = cr_q[q_inv]
    rho_same = p.intra_same[seg_bucket]
    rho_diff = p.intra_diff[seg_bucket]
    use_f = not curvature
    if rc == RiskClass.CREDIT_NON_Q and cal.credit_non_q_by_label2:
        # Correlation by Label2 group; the residual bucket uses one correlation for all pairs.
        k2 = kernels.intra_by_key(
            starts, ends, ws, cr, t.label2, rho_same, rho_diff, use_f, curvature
        )
    else:
        k2 = kernels.intra_by_qualifier(
            starts, ends, ws, cr, t.qualifier, rho_same, rho_diff, use_f, curvature
        )
    k = np.sqrt(np.maximum(k2, 0.0))
    n_seg = starts.size
    seg_of_row = np.repeat(np.arange(n_seg), ends - starts)
    s = _sum_by(seg_of_row, ws, n_seg)
    if curvature:
        if credit:
            abs_s = _sum_by(seg_of_row, np.abs(ws), n_seg)
        else:
            qk_uniq, qk_inv = _groups(seg_of_row.astype(np.int64) * nq + t.qualifier)
            per_q = _sum_by(qk_inv, ws, qk_uniq.size)
            abs_s = _sum_by(qk_uniq // nq, np.abs(per_q), n_seg)
    else:
        abs_s = np.zeros(n_seg)
    _across_buckets(ctx, out, p, rc, mt, seg_group, seg_bucket, k, s, abs_s)
    if ctx.detail:
        _qualifier_detail(
            out,
            rc,
            mt,
            t,
            ws,
            seg_of_row,
            seg_group,
            [p.buckets[b] for b in seg_bucket.tolist()],
            ctx,
        )


def _across_buckets(
    ctx: Context,
    out: Margins,
    p: BucketedParams,
    rc: RiskClass,
    mt: MarginType,
    seg_group: I64,
    seg_bucket: I64,
    k: F64,
    s: F64,
    abs_s: F64,
) -> None:
    nb = len(p.buckets)
    groups, g_inv = _groups(seg_group)
    n_g = groups.size
    residual = seg_bucket == p.residual
    k_mat = np.zeros((n_g, nb))
    s_mat = np.zeros((n_g, nb))
    regular = ~residual
    k_mat[g_inv[regular], seg_bucket[regular]] = k[regular]
    s_mat[g_inv[regular], seg_bucket[regular]] = s[regular]
    k_res = _sum_by(g_inv[residual], k[residual], n_g)
    labels = [p.buckets[b] for b in seg_bucket.tolist()]
    if mt != MarginType.CURVATURE:
        clipped = _clip(s_mat, k_mat)
        inner = (k_mat * k_mat).sum(axis=1) + np.einsum("gi,ij,gj->g", clipped, p.inter, clipped)
        margin = np.sqrt(np.maximum(inner, 0.0)) + k_res
        out.add(groups, rc, mt, margin)
        out.add_buckets(seg_group, rc, mt, labels, k)
        return
    total = _sum_by(g_inv[regular], s[regular], n_g)
    abs_total = _sum_by(g_inv[regular], abs_s[regular], n_g)
    clipped = _clip(s_mat, k_mat)
    gamma2 = p.inter * p.inter
    inner = (k_mat * k_mat).sum(axis=1) + np.einsum("gi,ij,gj->g", clipped, gamma2, clipped)
    margin = _curvature_total(total, abs_total, inner)
    res_total = _sum_by(g_inv[residual], s[residual], n_g)
    res_abs = _sum_by(g_inv[residual], abs_s[residual], n_g)
    res_margin = _curvature_total(res_total, res_abs, k_res * k_res)
    out.add(groups, rc, mt, margin + res_margin)
    bucket_values = np.where(residual, res_margin[g_inv], k)
    out.add_buckets(seg_group, rc, mt, labels, bucket_values)


def _qualifier_detail(
    out: Margins,
    rc: RiskClass,
    mt: MarginType,
    t: FactorTable,
    ws: F64,
    seg_of_row: I64,
    seg_group: I64,
    seg_labels: list[str],
    ctx: Context,
) -> None:
    nq = max(len(ctx.qualifiers), 1)
    uniq, inv = _groups(seg_of_row.astype(np.int64) * nq + t.qualifier)
    net = _sum_by(inv, ws, uniq.size)
    seg = uniq // nq
    out.add_qualifiers(
        seg_group[seg],
        rc,
        mt,
        [seg_labels[i] for i in seg.tolist()],
        [ctx.qualifiers[q] for q in (uniq % nq).tolist()],
        net,
    )


# ----------------------------------------------------------------------------- FX, base corr


def _fx(delta: FactorTable, vol: FactorTable, ctx: Context, out: Margins) -> None:
    cal = ctx.calibration
    fx = cal.fx
    nq = max(len(ctx.qualifiers), 1)
    calc_group = fx.group_of(ctx.currency)
    q_group = np.array([fx.group_of(q) for q in ctx.qualifiers] or [0], dtype=np.int64)
    if delta.group.size:
        calc_code = ctx.qualifiers.index(ctx.currency) if ctx.currency in ctx.qualifiers else -1
        t = delta.select(delta.qualifier != calc_code)
        if t.group.size == 0:  # only the calculation currency: the margin is zero
            groups = np.unique(delta.group)
            out.add(groups, RiskClass.FX, MarginType.DELTA, np.zeros(groups.size))
        else:
            t = t.sorted_by_group_qualifier()
            q_uniq, q_inv = _groups(t.group * nq + t.qualifier)
            cats = np.array([fx.category_of(q) for q in ctx.qualifiers] or [0], dtype=np.int64)
            threshold = fx.delta_threshold[cats[q_uniq % nq]] * ctx.usd_to_calc
            cr_q = _concentration(_sum_by(q_inv, t.amount, q_uniq.size), threshold)
            rw = fx.delta_rw[calc_group, q_group[t.qualifier]]
            ws = rw * t.amount * cr_q[q_inv]
            rho = fx.corr_high_calc if calc_group == 1 else fx.corr_regular_calc
            starts, ends = _bounds(t.group)
            k2 = kernels.intra_by_matrix(
                starts, ends, ws, cr_q[q_inv], q_group[t.qualifier], rho, True, False
            )
            out.add(t.group[starts], RiskClass.FX, MarginType.DELTA, np.sqrt(np.maximum(k2, 0.0)))
            per_q = _sum_by(q_inv, ws, q_uniq.size)
            out.add_buckets(
                q_uniq // nq,
                RiskClass.FX,
                MarginType.DELTA,
                [ctx.qualifiers[q] for q in (q_uniq % nq).tolist()],
                np.abs(per_q),
            )
            missing = np.setdiff1d(np.unique(delta.group), t.group)
            if missing.size:
                out.add(missing, RiskClass.FX, MarginType.DELTA, np.zeros(missing.size))
    if vol.group.size:
        _fx_vol(vol, ctx, out, q_group)


def _fx_vol(t: FactorTable, ctx: Context, out: Margins, q_group: I64) -> None:
    cal = ctx.calibration
    fx = cal.fx
    nq = max(len(ctx.qualifiers), 1)
    t = t.sorted_by_group_qualifier()
    pairs = ctx.qualifiers
    g1 = np.array([fx.group_of(q[:3]) for q in pairs] or [0], dtype=np.int64)
    g2 = np.array([fx.group_of(q[3:6]) for q in pairs] or [0], dtype=np.int64)
    # sigma = sqrt(365/14)/N^-1(99%) x the FX delta risk weight of the pair's two currencies
    sigma = cal.sigma_multiplier * fx.delta_rw[g2[t.qualifier], g1[t.qualifier]]
    starts, ends = _bounds(t.group)
    n_seg = starts.size
    seg_of_row = np.repeat(np.arange(n_seg), ends - starts)
    q_uniq, q_inv = _groups(t.group * nq + t.qualifier)
    rho_same = np.ones(n_seg)
    rho_diff = np.full(n_seg, fx.vega_corr)
    # vega
    x = t.amount * sigma * fx.hvr
    thresholds = np.array(
        [fx.vega_threshold_of(q) if len(q) == 6 else np.inf for q in pairs] or [np.inf]
    )
    cr_q = _concentration(_sum_by(q_inv, x, q_uniq.size), thresholds[q_uniq % nq] * ctx.usd_to_calc)
    ws = fx.vega_rw * x * cr_q[q_inv]
    k2 = kernels.intra_by_qualifier(
        starts, ends, ws, cr_q[q_inv], t.qualifier, rho_same, rho_diff, True, False
    )
    out.add(t.group[starts], RiskClass.FX, MarginType.VEGA, np.sqrt(np.maximum(k2, 0.0)))
    names = [pairs[q] for q in (q_uniq % nq).tolist()]
    out.add_buckets(
        q_uniq // nq,
        RiskClass.FX,
        MarginType.VEGA,
        names,
        np.abs(_sum_by(q_inv, ws, q_uniq.size)),
    )
    # curvature
    cvr = cal.curvature_weight[np.maximum(t.label1, 0)] * (t.amount * sigma)
    k2c = kernels.intra_by_qualifier(
        starts, ends, cvr, np.ones(cvr.size), t.qualifier, rho_same, rho_diff, False, True
    )
    per_q = _sum_by(q_inv, cvr, q_uniq.size)
    seg_of_q = seg_of_row[np.searchsorted(t.group * nq + t.qualifier, q_uniq)]
    total = _sum_by(seg_of_row, cvr, n_seg)
    abs_total = _sum_by(seg_of_q, np.abs(per_q), n_seg)
    margin = _curvature_total(total, abs_total, k2c)
    out.add(t.group[starts], RiskClass.FX, MarginType.CURVATURE, margin)
    out.add_buckets(q_uniq // nq, RiskClass.FX, MarginType.CURVATURE, names, np.abs(per_q))


def _base_corr(t: FactorTable, ctx: Context, out: Margins) -> None:
    if t.group.size == 0:
        return
    cal = ctx.calibration
    t = t.sorted_by_group_qualifier()
    ws = cal.base_corr_rw * t.amount
    starts, ends = _bounds(t.group)
    n_seg = starts.size
    k2 = kernels.intra_by_qualifier(
        starts,
        ends,
        ws,
        np.ones(ws.size),
        t.qualifier,
        np.ones(n_seg),
        np.full(n_seg, cal.base_corr_corr),
        False,
        False,
    )
    out.add(t.group[starts], RiskClass.CREDIT_Q, MarginType.BASE_CORR, np.sqrt(np.maximum(k2, 0.0)))
