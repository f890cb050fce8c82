"""Expected shortfall and value-at-risk of scenario P&L: the discrete definitions.

P&L is positive for a gain; the loss of scenario s is ``L_s = -pnl_s``. Scenarios carry
weights ``w_s`` (probabilities summing to 1; equal, 1/N, unless a margin model weights the
stressed ones). With tail probability ``α = 1 - confidence`` and the losses sorted worst
first, ``L_(1) >= L_(2) >= ...``, ``W_j`` the weight of the scenarios before the j-th:

* ``VaR = L_(j*)`` with ``j*`` the last j where ``W_j <= α`` — the lower quantile
  ``inf{ℓ : P(L > ℓ) <= α}``;
* ``ES = (Σ_{j < j*} w_(j) L_(j) + (α - W_{j*}) L_(j*)) / α`` — the tail mean in which the
  scenario at the quantile counts with the part of its weight that fits in the tail
  (Acerbi-Tasche).

With N equally weighted scenarios and ``k = N α``: ``ES = (L_(1) + ... + L_(⌊k⌋) +
(k - ⌊k⌋) L_(⌊k⌋+1)) / k`` and ``VaR = L_(⌊k⌋+1)``. For example N = 1,250 at 99%: k = 12.5,
ES = (12 worst + half the 13th) / 12.5, VaR = the 13th worst. k below 1 gives the worst loss.

A whole-number k is recognised up to 1e-9 relative rounding (1 - 0.99 is not exactly 0.01).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError

IndexArray = NDArray[np.intp]
_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class TailStats:
    """Per row (account): ES and VaR as positive losses, and the worst scenario's index."""

    es: FloatArray
    var: FloatArray
    worst: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Tail:
    """The tail of one P&L vector: scenario indices worst first, each with its share of the
    tail (summing to 1), so ``ES = -Σ share · pnl[index]``."""

    index: IndexArray
    share: FloatArray


def tail_probability(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValidationError("confidence", f"must be in (0, 1), got {confidence!r}")
    return 1.0 - confidence


def _check_finite(pnl: FloatArray, rows: IndexArray) -> None:
    """Refuse a NaN or infinite P&L: the sorting kernels compare with ``<``, which is false
    for NaN, so one would silently drop out of the tail and understate ES.

    One summing pass per row finds them (a NaN or ±inf anywhere makes the sum non-finite;
    P&L within the documented magnitude limits cannot overflow a sum).
    """
    sums = pnl.sum(axis=1) if rows.size == pnl.shape[0] else pnl[rows].sum(axis=1)
    bad = np.flatnonzero(~np.isfinite(sums))
    if bad.size:
        row = int(rows[bad[0]]) if rows.size != pnl.shape[0] else int(bad[0])
        col = int(np.flatnonzero(~np.isfinite(pnl[row]))[0])
        value = float(pnl[row, col])
        raise ValidationError(
            "pnl", f"row {row}, scenario {col}: P&L must be finite, got {value!r}"
        )


def equal_weights(n: int) -> FloatArray:
    return np.full(n, 1.0 / n)


def tail_stats(
    pnl: FloatArray,
    *,
    confidence: float,
    include: IndexArray | None = None,
    weights: FloatArray | None = None,
    rows: IndexArray | None = None,
) -> TailStats:
    """ES and VaR of each row of ``pnl`` (R × S, or one vector of S).

    ``include`` selects the scenarios that count (default all) and ``weights`` gives their
    probabilities (default equal; they must sum to 1). ``rows`` limits the work to some rows.
    """
    alpha = tail_probability(confidence)
    pnl2 = np.atleast_2d(pnl)
    inc, w = _included(pnl2.shape[1], include, weights)
    rows = np.arange(pnl2.shape[0], dtype=np.intp) if rows is None else np.asarray(rows, np.intp)
    _check_finite(pnl2, rows)
    es = np.empty(rows.size)
    var = np.empty(rows.size)
    worst = np.empty(rows.size, dtype=np.int64)
    kernel = _tail_serial if rows.size < _SERIAL_BELOW else _tail_parallel
    kernel(pnl2, rows, inc, w, alpha, _candidates(alpha, w), es, var, worst)
    return TailStats(es, var, worst)


def tail(
    pnl: FloatArray,
    *,
    confidence: float,
    include: IndexArray | None = None,
    weights: FloatArray | None = None,
) -> Tail:
    """The scenarios ES averages over, for one P&L vector (used for breakdowns and
    Euler contributions: a position's share of ES is ``-Σ share · its pnl[index]``)."""
    alpha = tail_probability(confidence)
    _check_finite(np.atleast_2d(pnl), np.zeros(1, dtype=np.intp))
    inc, w = _included(pnl.shape[0], include, weights)
    idx = np.empty(_candidates(alpha, w), dtype=np.intp)
    share = np.empty(idx.size)
    n = _tail_one(np.asarray(pnl, np.float64), inc, w, alpha, idx.size, idx, share)
    return Tail(idx[:n].copy(), share[:n] / alpha)


def _included(
    n: int, include: IndexArray | None, weights: FloatArray | None
) -> tuple[IndexArray, FloatArray]:
    inc = np.arange(n, dtype=np.intp) if include is None else np.asarray(include, np.intp)
    if inc.size == 0:
        raise ValidationError("scenarios", "no scenario is included in the tail statistic")
    w = equal_weights(inc.size) if weights is None else np.asarray(weights, np.float64)
    if w.shape != inc.shape or (w <= 0).any() or abs(w.sum() - 1.0) > 1e-9:
        raise ValidationError("weights", "must be one positive weight per scenario, summing to 1")
    return inc, w


def _candidates(alpha: float, w: FloatArray) -> int:
    """How many of the worst scenarios can reach the tail: ⌊α / w_min⌋ + 2, at most N."""
    return min(int(w.size), math.floor(alpha / float(w.min()) * (1 + _TOL)) + 2)


_CHUNK = 32
"""Scenarios :func:`_tail_one` tests at once against the top of its full heap."""


@njit(cache=True, inline="always")
def _heap_push(v: float, t: int, m: int, size: int, heap_v: np.ndarray, heap_t: np.ndarray) -> int:
    """Offer value ``v`` of scenario ``t`` to the max-heap of the ``m`` worst (``size`` in
    it); returns the new size."""
    if size < m:
        j = size
        while j > 0:  # sift up
            parent = (j - 1) // 2
            if heap_v[parent] >= v:
                break
            heap_v[j], heap_t[j] = heap_v[parent], heap_t[parent]
            j = parent
        heap_v[j], heap_t[j] = v, t
        return size + 1
    if v < heap_v[0]:
        j = 0
        while True:  # sift down from the root
            child = 2 * j + 1
            if child >= m:
                break
            if child + 1 < m and heap_v[child + 1] > heap_v[child]:
                child += 1
            if heap_v[child] <= v:
                break
            heap_v[j], heap_t[j] = heap_v[child], heap_t[child]
            j = child
        heap_v[j], heap_t[j] = v, t
    return size


@njit(cache=True, inline="always")
def _tail_one(
    x_all: np.ndarray,
    inc: np.ndarray,
    w: np.ndarray,
    alpha: float,
    m: int,
    out_idx: np.ndarray,
    out_share: np.ndarray,
) -> int:
    """Walk the worst ``m`` included scenarios of ``x_all``; write tail indices and weights
    (absolute, summing to alpha); return how many are in the tail.

    The worst m are kept in a max-heap while scanning once: O(N log m), and unlike
    quickselect it does not degrade when many P&L values tie (a flat account is all
    zeros). Once the heap is full, a chunk of :data:`_CHUNK` scenarios none of which is
    below its top is passed over after one vectorised test (most are: the tail is a few
    percent of the scenarios); a chunk with one is offered to the heap scenario by
    scenario, as before, so the heap sees what it saw and ends the same."""
    n = inc.shape[0]
    heap_v = np.empty(m)
    heap_t = np.empty(m, dtype=np.int64)
    size = 0
    t = 0
    while t < n:
        end = min(t + _CHUNK, n)
        if size == m and end - t == _CHUNK:
            top = heap_v[0]
            below = False
            for u in range(t, end):
                below |= x_all[inc[u]] < top
            if not below:
                t = end
                continue
        for u in range(t, end):
            size = _heap_push(x_all[inc[u]], u, m, size, heap_v, heap_t)
        t = end
    order = np.argsort(heap_v[:size], kind="mergesort")
    cand = heap_t[:size][order]
    tol = alpha * 1e-9
    cum = 0.0
    k = 0
    for c_t in cand:
        wt = w[c_t]
        if cum + wt <= alpha + tol:
            out_idx[k] = inc[c_t]
            out_share[k] = wt
            cum += wt
            k += 1
            if k == out_idx.shape[0]:
                break
            continue
        out_idx[k] = inc[c_t]
        out_share[k] = max(alpha - cum, 0.0)
        k += 1
        break
    return k


def _tail_rows(
    pnl: np.ndarray,
    rows: np.ndarray,
    inc: np.ndarray,
    w: np.ndarray,
    alpha: float,
    m: int,
    es: np.ndarray,
    var: np.ndarray,
    worst: np.ndarray,
) -> None:
    for r in prange(rows.shape[0]):
        row = pnl[rows[r]]
        idx = np.empty(m, dtype=np.int64)
        share = np.empty(m)
        k = _tail_one(row, inc, w, alpha, m, idx, share)
        acc = 0.0
        for j in range(k):
            acc += share[j] * row[idx[j]]
        es[r] = -acc / alpha
        var[r] = -row[idx[k - 1]]
        worst[r] = idx[0]


# A few rows (one trade, a what-if) run serially: waking the thread pool costs more than
# the work, and under load it adds jitter to the latency.
_tail_parallel = njit(cache=True, parallel=True)(_tail_rows)
_tail_serial = njit(cache=True)(_tail_rows)
_SERIAL_BELOW = 32
