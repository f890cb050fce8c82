"""Filtered historical simulation (FHS): n-day scenarios from history, rescaled by EWMA
volatility from the level of their day to today's.

Definition (per underlying, daily log returns ``r_t``, EWMA of :mod:`.ewma`):

1. de-volatise each day: ``z_t = r_t / σ_{t-1}``; re-volatise at today's forecast
   ``σ_now = σ_T`` (the forecast for the next day, including the last return):
   ``r̃_t = z_t · σ_now``;
2. a scenario is one n-day window (n = margin period of risk, default 2 days); its spot
   move is ``exp(Σ_window r̃_t) - 1``;
3. windows **overlap** by default: every day of the look-back ends one, so a look-back of
   L days gives L - n + 1 scenarios (non-overlapping windows, anchored at the latest day,
   give floor(L / n));
4. the stressed period's windows are always added, **unfiltered** (their raw n-day moves:
   they exist to keep the stress in the margin whatever today's volatility);
5. with a floor look-back (e.g. 10 years for the anti-procyclicality floor), the filtered
   windows older than the look-back are added in group FLOOR;
6. the implied-vol move of each scenario follows :class:`~.ewma.VolResponse` from the
   window's raw EWMA change and standardised return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError
from marginflow.core.history import DateArray, ReturnHistory
from marginflow.scenarios.ewma import (
    DEFAULT_VOL_RESPONSE,
    DEFAULT_WARMUP,
    EwmaFilter,
    VolResponse,
    ewma_filter,
)
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet

IntArray = NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class StressPeriod:
    """Inclusive calendar dates whose windows are always in the scenario set."""

    start: np.datetime64
    end: np.datetime64

    @classmethod
    def of(cls, start: str, end: str) -> StressPeriod:
        s, e = np.datetime64(start, "D"), np.datetime64(end, "D")
        if e < s:
            raise ValidationError("stress", f"ends ({end}) before it starts ({start})")
        return cls(s, e)

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"


# Lehman to the March 2009 low: the worst stretch in the arch S&P 500 series (1999-2018).
DEFAULT_STRESS = StressPeriod.of("2008-09-01", "2009-03-31")


def filtered_historical(
    history: ReturnHistory,
    *,
    horizon_days: int = 2,
    lookback_days: int = 1250,
    decay: float = 0.97,
    overlapping: bool = True,
    stress: StressPeriod | None = DEFAULT_STRESS,
    floor_lookback_days: int | None = None,
    vol_response: VolResponse = DEFAULT_VOL_RESPONSE,
    warmup: int = DEFAULT_WARMUP,
) -> ScenarioSet:
    """FHS scenarios for every underlying of ``history`` as of its last date.

    Parameters
    ----------
    horizon_days : margin period of risk n, business days (EMIR Art. 26: 2 for listed).
    lookback_days : L, business days of returns the current scenarios come from (EMIR
        Art. 25: at least 12 months; default 1,250 ≈ 5 years, as LCH used).
    decay : EWMA λ (0.97 default, as LCH used for FHS; RiskMetrics' 0.94 reacts faster).
    overlapping : overlapping (default) or non-overlapping n-day windows.
    stress : stressed period, always included unfiltered; None for none.
    floor_lookback_days : a longer look-back whose extra windows enter as group FLOOR.
    """
    days = FilteredHistory(
        history,
        horizon_days=horizon_days,
        lookback_days=lookback_days,
        decay=decay,
        overlapping=overlapping,
        stress=stress,
        floor_lookback_days=floor_lookback_days,
        vol_response=vol_response,
        warmup=warmup,
    )
    return days.on(len(history) - 1)


class FilteredHistory:
    """The FHS scenario set of every day of one history: :meth:`on` gives day ``t``'s,
    the set :func:`filtered_historical` (same arguments) gives for the history cut after
    row ``t`` (its returns ``0..t``), to the bit. A back-test asks for one a day.

    Everything the set needs that depends only on returns up to a row (the EWMA filter,
    the raw returns' running sums, the de-volatised returns ``z_t = r_t / σ_{t-1}``) is the
    same for a cut as for the whole history (each is a recursion or running sum from the
    first row), so it is computed once, lazily, for the whole history; so is each window's
    implied-vol shock (a function of its own rows), made the first day a window is used
    and kept. What depends on the day itself is made per day: today's forecast ``σ_now``
    rescales every ``z_t``, and the rescaled returns' running sums are summed afresh from
    the first row in NumPy's order (:func:`_scaled_sums_at`), so each window's move carries
    the bits a cut's filter gives.
    """

    def __init__(
        self,
        history: ReturnHistory,
        *,
        horizon_days: int = 2,
        lookback_days: int = 1250,
        decay: float = 0.97,
        overlapping: bool = True,
        stress: StressPeriod | None = DEFAULT_STRESS,
        floor_lookback_days: int | None = None,
        vol_response: VolResponse = DEFAULT_VOL_RESPONSE,
        warmup: int = DEFAULT_WARMUP,
    ) -> None:
        n = horizon_days
        if n < 1:
            raise ValidationError("horizon_days", f"must be >= 1, got {n}")
        if lookback_days < n:
            raise ValidationError(
                "lookback_days", f"must be >= the horizon ({n}), got {lookback_days}"
            )
        self.history = history
        self.horizon_days, self.lookback_days, self.decay = n, lookback_days, decay
        self.overlapping, self.stress = overlapping, stress
        self.floor_lookback_days = floor_lookback_days
        self.vol_response, self.warmup = vol_response, warmup
        self._dates = history.dates.astype(str).tolist()  # window labels, made once
        self._filter: _Filtered | None = None

    def on(self, t: int) -> ScenarioSet:
        """Day ``t``'s scenarios: from returns ``0..t`` of the history only (no look-ahead)."""
        T = t + 1
        if not 0 < T <= len(self.history):
            raise ValidationError("history", f"has no row {t} (rows 0..{len(self.history) - 1})")
        n, history = self.horizon_days, self.history
        groups = self._groups(T)
        f = self._filtered()
        # Today's rescaled running sums at every row a filtered window starts at or ends after.
        firsts = [e - n + 1 for g, _, e in groups if g != ScenarioGroup.STRESSED]
        at = np.unique(
            np.concatenate([np.zeros(1, dtype=np.intp), *firsts, *(s + n for s in firsts)])
        )
        filtered_at = np.empty((at.size, f.z.shape[1]))
        _scaled_sums_at(f.z, f.ewma.sigma_after[T - 1], T, at, filtered_at)
        every = np.concatenate([ends for _, _, ends in groups])
        spot = np.empty((len(history.underlyings), every.size), dtype=np.float32)
        vol = self._vol_shocks(every).T
        labels: list[str] = []
        col = 0
        for group, tag, ends in groups:
            starts = ends - n + 1
            moved = (
                f.raw_sum[ends + 1] - f.raw_sum[starts]
                if group == ScenarioGroup.STRESSED
                else filtered_at[np.searchsorted(at, ends + 1)]
                - filtered_at[np.searchsorted(at, starts)]
            )
            spot[:, col : col + ends.size] = np.expm1(moved).T  # rounded to float32
            col += ends.size
            labels.extend(f"{tag}:{self._dates[e]}" for e in ends.tolist())
        return ScenarioSet(
            underlyings=history.underlyings,
            spot_shock=spot,
            vol_shock=np.ascontiguousarray(vol),
            labels=tuple(labels),
            group=np.concatenate([np.full(e.size, int(g), dtype=np.int8) for g, _, e in groups]),
            horizon_days=n,
            source="fhs",
            params={
                "as_of": str(history.dates[t]),
                "horizon_days": n,
                "lookback_days": self.lookback_days,
                "decay": self.decay,
                "overlapping": self.overlapping,
                "stress": str(self.stress) if self.stress is not None else None,
                "floor_lookback_days": self.floor_lookback_days,
                "vol_response": [self.vol_response.ewma_elasticity, self.vol_response.return_beta],
            },
        )

    def _vol_shocks(self, ends: IntArray) -> NDArray[np.float32]:
        """The implied-vol shock (float32, windows × U) of the windows ending on ``ends``:
        ``ln(1 + shock) = a · Δln σ_EWMA + b · z_n`` over the window's own rows, the same
        whichever day uses it; made for the windows not met before, then kept."""
        f, n = self._filtered(), self.horizon_days
        new = np.unique(ends[~f.have_vol[ends]])
        if new.size:
            starts = new - n + 1
            raw = f.raw_sum[new + 1] - f.raw_sum[starts]
            f.vol[new] = _window_vol_shock(f.ewma, raw, starts, new, n, self.vol_response)
            f.have_vol[new] = True
        return f.vol[ends]

    def _groups(self, T: int) -> list[tuple[ScenarioGroup, str, IntArray]]:
        """The windows (their last rows) of each group of the set from the first ``T``
        returns; a look-back or stress period they cannot fill is refused."""
        n, lookback, warmup = self.horizon_days, self.lookback_days, self.warmup
        first_start = warmup  # windows start after the EWMA warm-up
        if T - lookback < first_start:
            raise ValidationError(
                "lookback_days",
                f"{lookback} days need {lookback + warmup} returns of history "
                f"(with {warmup} to warm up the EWMA); the history has {T}",
            )
        current = _window_ends(T, lookback, n, self.overlapping)
        groups = [(ScenarioGroup.CURRENT, "fhs", current)]
        floor = self.floor_lookback_days
        if floor is not None and floor > lookback:
            if T - floor < first_start:
                raise ValidationError(
                    "floor_lookback_days",
                    f"{floor} days need {floor + warmup} returns; the history has {T}",
                )
            longer = _window_ends(T, floor, n, self.overlapping)
            groups.append((ScenarioGroup.FLOOR, "floor", longer[longer < current[0]]))
        if self.stress is not None:
            ends = _stress_ends(self.history.dates[:T], self.stress, n, warmup)
            if not self.overlapping:
                ends = ends[::-1][::n][::-1].copy()
            groups.append((ScenarioGroup.STRESSED, "stress", ends))
        return groups

    def _filtered(self) -> _Filtered:
        if self._filter is None:
            r = self.history.log_returns
            f = ewma_filter(r, decay=self.decay, warmup=self.warmup)
            self._filter = _Filtered(
                ewma=f,
                z=np.ascontiguousarray(r / f.sigma_before),
                raw_sum=_cumsum0(r),
                vol=np.empty(r.shape, dtype=np.float32),  # rows filled as windows are met
                have_vol=np.zeros(r.shape[0], dtype=np.bool_),
            )
        return self._filter


@dataclass(frozen=True, slots=True)
class _Filtered:
    """What every day's set of one history shares, per history row: the EWMA filter
    (``σ_{t-1}``, ``σ_t``), the de-volatised returns ``z_t = r_t / σ_{t-1}``, the raw
    returns' running sums from row 0 (one more row: ``raw_sum[t]`` sums rows ``< t``), and
    the implied-vol shock of the window ending on each row (where ``have_vol``)."""

    ewma: EwmaFilter
    z: FloatArray
    raw_sum: FloatArray
    vol: NDArray[np.float32]
    have_vol: NDArray[np.bool_]


@njit(cache=True, nogil=True)
def _scaled_sums_at(
    z: np.ndarray, scale: np.ndarray, T: int, at: np.ndarray, out: np.ndarray
) -> None:
    """``out[k] = cumsum0(z[:T] * scale)[at[k]]`` (``at`` ascending, within 0..T) without
    the T × U temporaries: the products and the running sums in NumPy's order and
    rounding (``z * scale`` rounded, then added row after row from the first, which is
    copied, not added to 0; no fused multiply-add), so each value carries the bits of
    ``_cumsum0(z[:T] * scale)``."""
    n_u = z.shape[1]
    acc = np.zeros(n_u)
    k = 0
    while k < at.shape[0] and at[k] == 0:
        out[k] = 0.0
        k += 1
    for t in range(T):
        if k == at.shape[0]:
            return
        row = z[t]
        if t == 0:
            for c in range(n_u):
                acc[c] = row[c] * scale[c]
        else:
            for c in range(n_u):
                acc[c] = acc[c] + row[c] * scale[c]
        while k < at.shape[0] and at[k] == t + 1:
            out[k] = acc
            k += 1


def realised_vol_shocks(
    history: ReturnHistory,
    ends: IntArray,
    *,
    horizon_days: int,
    decay: float,
    vol_response: VolResponse = DEFAULT_VOL_RESPONSE,
    warmup: int = DEFAULT_WARMUP,
) -> FloatArray:
    """The implied-vol shock the FHS vol map gives the n-day windows of ``history`` that end
    at the return rows ``ends`` (each window holds returns ``e - n + 1 .. e``): relative,
    windows × underlyings, exactly what :func:`filtered_historical` gives a scenario drawn
    from that window (same EWMA, same :class:`VolResponse`).

    The back-test moves implied vols over a realised window by it, so that its realised P&L
    and the margin's scenarios move vols by one rule. Windows must start after the EWMA's
    warm-up. The filter's value on a row depends on no later row, so cutting the history
    after the window would give the same shocks.
    """
    n = horizon_days
    e = np.asarray(ends, dtype=np.intp)
    if e.size and (int(e.min()) - n + 1 < warmup or int(e.max()) >= len(history)):
        raise ValidationError(
            "ends", f"windows must lie in returns {warmup}..{len(history) - 1} (after warm-up)"
        )
    f = ewma_filter(history.log_returns, decay=decay, warmup=warmup)
    raw_sum = _cumsum0(history.log_returns)
    starts = e - n + 1
    out: FloatArray = _window_vol_shock(
        f, raw_sum[e + 1] - raw_sum[starts], starts, e, n, vol_response
    )
    return out


def _window_vol_shock(
    f: EwmaFilter,
    raw: FloatArray,
    starts: IntArray,
    ends: IntArray,
    n: int,
    vol_response: VolResponse,
) -> FloatArray:
    """The vol map of windows ``starts..ends`` with raw n-day log returns ``raw``: the EWMA's
    log change over the window and the return standardised by the vol before it."""
    sig0 = f.sigma_before[starts]
    dlog = np.log(f.sigma_after[ends]) - np.log(sig0)
    return vol_response.vol_shock(dlog, raw / (sig0 * math.sqrt(n)))


def _cumsum0(x: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.zeros((x.shape[0] + 1, *x.shape[1:]), dtype=np.float64)
    np.cumsum(x, axis=0, out=out[1:])
    return out


def _window_ends(T: int, lookback: int, n: int, overlapping: bool) -> IntArray:
    """Indices of the last day of each window inside the last ``lookback`` returns."""
    first_end = T - lookback + n - 1
    if overlapping:
        return np.arange(first_end, T, dtype=np.intp)
    return np.arange(T - 1, first_end - 1, -n, dtype=np.intp)[::-1].copy()


def _stress_ends(dates: DateArray, stress: StressPeriod, n: int, warmup: int) -> IntArray:
    inside = (dates >= stress.start) & (dates <= stress.end)
    idx = np.flatnonzero(inside)
    ends = idx[idx - n + 1 >= max(warmup, int(idx[0]) if idx.size else 0)]
    if ends.size == 0:
        raise ValidationError(
            "stress",
            f"the period {stress} holds no complete {n}-day window of the history "
            f"({dates[0]}..{dates[-1]})",
        )
    return ends
