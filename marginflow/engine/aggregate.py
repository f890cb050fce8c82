"""Account scenario P&L: sparse positions (A × N, CSR) times the P&L matrix (N × S float32).

Accumulation is in float64, and account vectors are stored in float64: the matrix entries
are float32 (7 digits), but a hedged account sums many large terms that cancel, and the
incremental engine adds and subtracts rows over a day of changes — float64 keeps both far
below a cent. The kernel streams each held instrument's row once per holding account; it
is bound by memory bandwidth (see ``benchmarks/margin.py`` for the ratio).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit, prange
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray

Float32Array = NDArray[np.float32]


def account_pnl(
    positions: sp.csr_matrix,
    pnl_matrix: Float32Array,
    *,
    rows: NDArray[np.intp] | None = None,
    out: FloatArray | None = None,
) -> FloatArray:
    """``positions[rows] @ pnl_matrix`` in float64 (R × S); all rows by default."""
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


@njit(cache=True, parallel=True, fastmath=True)
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
    # 2.5× faster than one position per pass. fastmath only lets LLVM vectorise the
    # float32 → float64 multiply-adds; no value is NaN or infinite here.
    n_s = m.shape[1]
    for r in prange(rows.shape[0]):
        a = rows[r]
        acc = np.zeros(n_s)
        p, hi = indptr[a], indptr[a + 1]
        while p + 3 < hi:
            q1, q2, q3, q4 = data[p], data[p + 1], data[p + 2], data[p + 3]
            s1, s2 = m[indices[p]], m[indices[p + 1]]
            s3, s4 = m[indices[p + 2]], m[indices[p + 3]]
            for s in range(n_s):
                acc[s] += (q1 * s1[s] + q2 * s2[s]) + (q3 * s3[s] + q4 * s4[s])
            p += 4
        while p < hi:
            q1, s1 = data[p], m[indices[p]]
            for s in range(n_s):
                acc[s] += q1 * s1[s]
            p += 1
        out[r, :] = acc


@njit(cache=True)
def add_scaled_row(target: np.ndarray, q: float, row: np.ndarray) -> None:
    """``target += q * row`` (float64 target, float32 or float64 row)."""
    for s in range(target.shape[0]):
        target[s] += q * row[s]


@njit(cache=True, parallel=True)
def add_row_differences(
    acc_rows: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    instr_pos: np.ndarray,
    ptr: np.ndarray,
    new_rows: np.ndarray,
    old_rows: np.ndarray,
) -> None:
    """Rank-k correction for a price move: for each affected account ``targets[t]``,
    ``acc[targets[t]] += Σ_p weights[p] · (new_rows[instr_pos[p]] - old_rows[instr_pos[p]])``
    over its entries ``p`` in ``ptr[t]:ptr[t+1]`` (differences taken in float64)."""
    n_s = acc_rows.shape[1]
    for t in prange(targets.shape[0]):
        acc = acc_rows[targets[t]]
        for p in range(ptr[t], ptr[t + 1]):
            q = weights[p]
            k = instr_pos[p]
            for s in range(n_s):
                acc[s] += q * (np.float64(new_rows[k, s]) - np.float64(old_rows[k, s]))
