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
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
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
    n, T = horizon_days, len(history)
    if n < 1:
        raise ValidationError("horizon_days", f"must be >= 1, got {n}")
    if lookback_days < n:
        raise ValidationError("lookback_days", f"must be >= the horizon ({n}), got {lookback_days}")
    first_start = warmup  # windows start after the EWMA warm-up
    if T - lookback_days < first_start:
        raise ValidationError(
            "lookback_days",
            f"{lookback_days} days need {lookback_days + warmup} returns of history "
            f"(with {warmup} to warm up the EWMA); the history has {T}",
        )
    current = _window_ends(T, lookback_days, n, overlapping)
    groups: list[tuple[ScenarioGroup, str, IntArray]] = [(ScenarioGroup.CURRENT, "fhs", current)]
    if floor_lookback_days is not None and floor_lookback_days > lookback_days:
        if T - floor_lookback_days < first_start:
            raise ValidationError(
                "floor_lookback_days",
                f"{floor_lookback_days} days need {floor_lookback_days + warmup} returns; "
                f"the history has {T}",
            )
        longer = _window_ends(T, floor_lookback_days, n, overlapping)
        groups.append((ScenarioGroup.FLOOR, "floor", longer[longer < current[0]]))
    if stress is not None:
        ends = _stress_ends(history, stress, n, warmup)
        if not overlapping:
            ends = ends[::-1][::n][::-1].copy()
        groups.append((ScenarioGroup.STRESSED, "stress", ends))

    f = ewma_filter(history.log_returns, decay=decay, warmup=warmup)
    r = history.log_returns
    raw_sum = _cumsum0(r)
    filtered_sum = _cumsum0(r / f.sigma_before * f.sigma_after[-1])
    spot_parts: list[NDArray[np.float64]] = []
    vol_parts: list[NDArray[np.float64]] = []
    labels: list[str] = []
    codes: list[NDArray[np.int8]] = []
    for group, tag, ends in groups:
        starts = ends - n + 1
        raw = raw_sum[ends + 1] - raw_sum[starts]
        moved = (
            raw
            if group == ScenarioGroup.STRESSED
            else filtered_sum[ends + 1] - filtered_sum[starts]
        )
        vol = _window_vol_shock(f, raw, starts, ends, n, vol_response)
        spot_parts.append(np.expm1(moved).T)
        vol_parts.append(vol.T)
        labels.extend(f"{tag}:{history.dates[e]}" for e in ends)
        codes.append(np.full(ends.size, int(group), dtype=np.int8))
    return ScenarioSet(
        underlyings=history.underlyings,
        spot_shock=np.ascontiguousarray(np.hstack(spot_parts), dtype=np.float32),
        vol_shock=np.ascontiguousarray(np.hstack(vol_parts), dtype=np.float32),
        labels=tuple(labels),
        group=np.concatenate(codes),
        horizon_days=n,
        source="fhs",
        params={
            "as_of": str(history.dates[-1]),
            "horizon_days": n,
            "lookback_days": lookback_days,
            "decay": decay,
            "overlapping": overlapping,
            "stress": str(stress) if stress is not None else None,
            "floor_lookback_days": floor_lookback_days,
            "vol_response": [vol_response.ewma_elasticity, vol_response.return_beta],
        },
    )


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


def _stress_ends(history: ReturnHistory, stress: StressPeriod, n: int, warmup: int) -> IntArray:
    inside = (history.dates >= stress.start) & (history.dates <= stress.end)
    idx = np.flatnonzero(inside)
    ends = idx[idx - n + 1 >= max(warmup, int(idx[0]) if idx.size else 0)]
    if ends.size == 0:
        raise ValidationError(
            "stress",
            f"the period {stress} holds no complete {n}-day window of the history "
            f"({history.dates[0]}..{history.dates[-1]})",
        )
    return ends
