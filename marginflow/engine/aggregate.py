"""Account scenario P&L: sparse positions (A × N, CSR) times the P&L matrix (N × S float32).

Every term ``quantity × P&L per unit`` is rounded to a multiple of :data:`PNL_QUANTUM`
(2^-10 of a currency unit) before it is added, and account vectors are float64. A sum of
such multiples is exact while its partial sums stay below :data:`PNL_EXACT_BOUND` in
magnitude, so it does not depend on the order of its terms. That is what lets the engine
add and subtract one position's term when a trade changes it (work in proportion to the
change) and still hold, to the bit, the vector a fresh sum over the account's holdings gives
(a batch margin, a restored engine and ``marginflow reproduce`` agree exactly).

The quantum costs nothing a margin can see: a matrix entry is float32, whose own rounding
(2^-24 relative) is coarser than 2^-10 for any entry above 2^-14 of a currency unit, and the
rounding of an account's sum is at most half a quantum per holding. Beyond the bound (a
single scenario's P&L of an account over 8.8e12 currency units) sums are still
deterministic for a given order but no longer order-free.

The kernel streams each held instrument's row once per holding account; it is bound by
memory bandwidth (see ``benchmarks/margin.py`` for the ratio).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit, prange
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray

Float32Array = NDArray[np.float32]

PNL_QUANTUM = 2.0**-10
"""The grid every position's scenario P&L term is rounded to, in currency units."""
PNL_EXACT_BOUND = 2.0**53 * PNL_QUANTUM
"""Below this magnitude (currency units) sums of rounded terms are exact and order-free."""
_UNITS = 1.0 / PNL_QUANTUM


def account_pnl(
    positions: sp.csr_matrix,
    pnl_matrix: Float32Array,
    *,
    rows: NDArray[np.intp] | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
    """``positions[rows] @ pnl_matrix`` in float64 (R × S, currency units), each term
    rounded to :data:`PNL_QUANTUM`; all rows by default."""
    a = positions.shape[0]
    rows = np.arange(a, dtype=np.intp) if rows is None else np.asarray(rows, np.intp)
    if out is None:
        out = np.empty((rows.size, pnl_matrix.shape[1]), dtype=np.float64)
    _csr_dense_kernel(
        positions.indptr.astype(np.int64, copy=False),
        positions.indices.astype(np.int64, copy=False),
        positions.data.astype(np.float64, copy=False),
        rows,
        pnl_matrix,
        out,
    )
    return out


# No fastmath: LLVM vectorises these element-wise loops without it, and the rounding must
# see each product exactly as written.
@njit(cache=True, parallel=True)
def _csr_dense_kernel(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    rows: np.ndarray,
    m: np.ndarray,
    out: np.ndarray,
) -> None:
    # Four positions per pass over the accumulator: the matrix rows are streamed once
    # each, the accumulator (in cache) is read and written a quarter as often. Measured
    # 2.5× faster than one position per pass. The accumulator counts quanta (exact
    # integers in float64), scaled to currency once at the end (a power of two: exact).
    n_s = m.shape[1]
    for r in prange(rows.shape[0]):
        a = rows[r]
        acc = np.zeros(n_s)
        p, hi = indptr[a], indptr[a + 1]
        while p + 3 < hi:
            q1, q2 = data[p] * _UNITS, data[p + 1] * _UNITS
            q3, q4 = data[p + 2] * _UNITS, data[p + 3] * _UNITS
            s1, s2 = m[indices[p]], m[indices[p + 1]]
            s3, s4 = m[indices[p + 2]], m[indices[p + 3]]
            for s in range(n_s):
                acc[s] += (np.rint(q1 * np.float64(s1[s])) + np.rint(q2 * np.float64(s2[s]))) + (
                    np.rint(q3 * np.float64(s3[s])) + np.rint(q4 * np.float64(s4[s]))
                )
            p += 4
        while p < hi:
            q1, s1 = data[p] * _UNITS, m[indices[p]]
            for s in range(n_s):
                acc[s] += np.rint(q1 * np.float64(s1[s]))
            p += 1
        for s in range(n_s):
            out[r, s] = acc[s] * PNL_QUANTUM


@njit(cache=True)
def add_position_changes(
    pnl: np.ndarray,
    accounts: np.ndarray,
    instruments: np.ndarray,
    old: np.ndarray,
    new: np.ndarray,
    m: np.ndarray,
) -> None:
    """For each change ``c``: account ``accounts[c]``'s quantity of instrument
    ``instruments[c]`` went from ``old[c]`` to ``new[c]``; its P&L vector (row of ``pnl``,
    currency units) trades the old rounded term for the new one. The result is the vector
    :func:`account_pnl` sums afresh from the new holdings, to the bit (within
    :data:`PNL_EXACT_BOUND`). Serial: several changes may name one account."""
    n_s = m.shape[1]
    for c in range(accounts.shape[0]):
        acc = pnl[accounts[c]]
        row = m[instruments[c]]
        qn, qo = new[c] * _UNITS, old[c] * _UNITS
        for s in range(n_s):
            x = np.float64(row[s])
            acc[s] += (np.rint(qn * x) - np.rint(qo * x)) * PNL_QUANTUM
