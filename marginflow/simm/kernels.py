"""Numba kernels for the SIMM aggregation formulas over contiguous segments of sorted arrays.

A *segment* is one bucket of one risk measure of one (portfolio, side, regulation, product
class) group: rows ``starts[s]:ends[s]`` of the factor arrays. Every kernel returns one value
per segment, so all groups are computed in one call.

Notation (ISDA SIMM methodology): ``ws`` weighted sensitivities, ``cr`` concentration risk
factor of each row's qualifier, ``f_kl = min(cr_k, cr_l) / max(cr_k, cr_l)``. Curvature uses
squared correlations and no concentration factor (``square=True, use_f=False``).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@njit(cache=True)
def _f(a: float, b: float) -> float:
    return min(a, b) / max(a, b)


@njit(cache=True)
def intra_by_key(
    starts: I64,
    ends: I64,
    ws: F64,
    cr: F64,
    key: I64,
    rho_same: F64,
    rho_diff: F64,
    use_f: bool,
    square: bool,
) -> F64:
    """K_b^2 = sum_k ws_k^2 + sum_{k!=l} rho_kl f_kl ws_k ws_l with rho_kl = rho_same[s] when
    the rows share ``key`` (their qualifier, or their Label2 group for credit
    non-qualifying) and rho_diff[s] otherwise. Plain O(n^2) per segment."""
    out = np.zeros(starts.shape[0])
    for s in range(starts.shape[0]):
        a, b = starts[s], ends[s]
        rs, rd = rho_same[s], rho_diff[s]
        if square:
            rs, rd = rs * rs, rd * rd
        total = 0.0
        for i in range(a, b):
            wi = ws[i]
            total += wi * wi
            cross = 0.0
            for j in range(a, i):
                rho = rs if key[i] == key[j] else rd
                if use_f:
                    rho *= _f(cr[i], cr[j])
                cross += rho * ws[j]
            total += 2.0 * wi * cross
        out[s] = total
    return out


@njit(cache=True)
def intra_by_qualifier(
    starts: I64,
    ends: I64,
    ws: F64,
    cr: F64,
    qual: I64,
    rho_same: F64,
    rho_diff: F64,
    use_f: bool,
    square: bool,
) -> F64:
    """Same result as :func:`intra_by_key` with key = qualifier, in O(n log n): rows must be
    sorted by qualifier within each segment and ``cr`` must be constant per qualifier.

    K^2 = sum ws^2 + rho_same * sum_q (W_q^2 - sum_{k in q} ws_k^2)
          + rho_diff * sum_{q != p} f_qp W_q W_p,
    and with f = min/max of the qualifiers' cr, sorting qualifiers by cr gives
    sum_{q != p} f_qp W_q W_p = 2 sum_j (W_j / c_j) sum_{i < j} c_i W_i.
    """
    out = np.zeros(starts.shape[0])
    for s in range(starts.shape[0]):
        a, b = starts[s], ends[s]
        rs, rd = rho_same[s], rho_diff[s]
        if square:
            rs, rd = rs * rs, rd * rd
        # qualifier totals
        n_q = 0
        for i in range(a, b):
            if i == a or qual[i] != qual[i - 1]:
                n_q += 1
        w = np.zeros(n_q)
        c = np.ones(n_q)
        sum_sq = 0.0
        within = 0.0
        q = -1
        for i in range(a, b):
            if i == a or qual[i] != qual[i - 1]:
                q += 1
                c[q] = cr[i]
            w[q] += ws[i]
            sum_sq += ws[i] * ws[i]
        for k in range(n_q):
            within += w[k] * w[k]
        within -= sum_sq
        if use_f:
            order = np.argsort(c)
            prefix = 0.0
            across = 0.0
            for idx in range(n_q):
                k = order[idx]
                across += (w[k] / c[k]) * prefix
                prefix += c[k] * w[k]
            across *= 2.0
        else:
            total_w = 0.0
            for k in range(n_q):
                total_w += w[k]
            across = total_w * total_w
            for k in range(n_q):
                across -= w[k] * w[k]
        out[s] = sum_sq + rs * within + rd * across
    return out


@njit(cache=True)
def intra_by_matrix(
    starts: I64,
    ends: I64,
    ws: F64,
    cr: F64,
    cls: I64,
    rho: F64,
    use_f: bool,
    square: bool,
) -> F64:
    """K_b^2 with rho_kl = rho[cls_k, cls_l] for every pair (FX delta: the correlation of the
    volatility groups of the two currencies). O(n^2) per segment."""
    out = np.zeros(starts.shape[0])
    for s in range(starts.shape[0]):
        a, b = starts[s], ends[s]
        total = 0.0
        for i in range(a, b):
            wi = ws[i]
            total += wi * wi
            cross = 0.0
            for j in range(a, i):
                r = rho[cls[i], cls[j]]
                if square:
                    r = r * r
                if use_f:
                    r *= _f(cr[i], cr[j])
                cross += r * ws[j]
            total += 2.0 * wi * cross
        out[s] = total
    return out


@njit(cache=True)
def across_flat(
    starts: I64,
    ends: I64,
    k: F64,
    s_sum: F64,
    cr: F64,
    gamma: float,
    use_g: bool,
) -> F64:
    """sum_b K_b^2 + sum_{b!=c} gamma g_bc S_b S_c with S_b = max(min(sum WS_b, K_b), -K_b)
    and g_bc = min(CR_b, CR_c) / max(CR_b, CR_c) (interest-rate currencies). O(n^2)."""
    out = np.zeros(starts.shape[0])
    for seg in range(starts.shape[0]):
        a, b = starts[seg], ends[seg]
        total = 0.0
        for i in range(a, b):
            total += k[i] * k[i]
            si = max(min(s_sum[i], k[i]), -k[i])
            cross = 0.0
            for j in range(a, i):
                sj = max(min(s_sum[j], k[j]), -k[j])
                g = _f(cr[i], cr[j]) if use_g else 1.0
                cross += g * sj
            total += 2.0 * gamma * si * cross
        out[seg] = total
    return out
