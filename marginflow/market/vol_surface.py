"""Implied-volatility surfaces by expiry and log-forward-moneyness.

Grid: expiries ``T_j`` (years, ACT/365) × log-moneyness ``k_i = ln(K / F(T))`` with
``vols[j, i]`` annualised. Interpolation works on total implied variance ``w = vol² T``:

* across strikes, linear in ``w`` between grid points, flat vol beyond the wings;
* across expiries, linear in ``w`` at fixed ``k``; constant vol before the first and after
  the last expiry.

Linear interpolation of total variance in time keeps ``w`` non-decreasing in ``T`` whenever
the pillars are, so it adds no calendar arbitrage of its own (the place where it matters:
scenario shocks that move short and long expiries differently). :meth:`VolSurface.arbitrage`
reports calendar and butterfly violations of the input itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class ArbitrageReport:
    """Where the input grid allows arbitrage. Empty lists mean none found."""

    calendar: list[tuple[float, float, float]] = field(default_factory=list)
    """(k, T_short, T_long) where total variance falls from T_short to T_long."""
    butterfly: list[tuple[float, float]] = field(default_factory=list)
    """(T, k) where undiscounted call prices are not convex in strike."""

    @property
    def ok(self) -> bool:
        return not self.calendar and not self.butterfly


@dataclass(frozen=True, slots=True)
class VolSurface:
    expiries: FloatArray
    log_moneyness: FloatArray
    vols: FloatArray

    @classmethod
    def of(cls, expiries: ArrayLike, log_moneyness: ArrayLike, vols: ArrayLike) -> VolSurface:
        t = np.asarray(expiries, dtype=np.float64).ravel()
        k = np.asarray(log_moneyness, dtype=np.float64).ravel()
        v = np.asarray(vols, dtype=np.float64)
        if v.shape != (t.size, k.size):
            raise ValidationError("vols", f"shape {v.shape} does not match ({t.size}, {k.size})")
        if t.size == 0 or t[0] <= 0 or np.any(np.diff(t) <= 0):
            raise ValidationError("expiries", "must be > 0 and strictly increasing")
        if k.size == 0 or np.any(np.diff(k) <= 0):
            raise ValidationError("log_moneyness", "must be strictly increasing")
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValidationError("vols", "must be finite and >= 0")
        return cls(t, k, v)

    @classmethod
    def flat(cls, vol: float) -> VolSurface:
        return cls.of([1.0], [0.0], [[vol]])

    def total_variance(self, expiry_years: ArrayLike, log_moneyness: ArrayLike) -> FloatArray:
        """Total implied variance w(T, k) = vol² T, broadcast over the inputs."""
        t, k = np.broadcast_arrays(
            np.asarray(expiry_years, dtype=np.float64), np.asarray(log_moneyness, dtype=np.float64)
        )
        w_pillars = self.vols**2 * self.expiries[:, None]  # (n_T, n_k)
        kc = np.clip(k, self.log_moneyness[0], self.log_moneyness[-1])
        # Strike interpolation on each pillar; flat vol beyond the wings comes from clipping.
        w_at_k = np.stack([np.interp(kc, self.log_moneyness, row) for row in w_pillars])
        vol2_at_k = w_at_k / self.expiries.reshape((-1,) + (1,) * kc.ndim)
        n = self.expiries.size
        j = np.clip(np.searchsorted(self.expiries, t, side="right") - 1, 0, max(n - 2, 0))
        if n == 1:
            return np.asarray(vol2_at_k[0] * t, dtype=np.float64)
        t0, t1 = self.expiries[j], self.expiries[j + 1]
        w0 = np.take_along_axis(w_at_k, j[None, ...], axis=0)[0]
        w1 = np.take_along_axis(w_at_k, (j + 1)[None, ...], axis=0)[0]
        between = w0 + (w1 - w0) * (t - t0) / (t1 - t0)
        before = vol2_at_k[0] * t
        after = vol2_at_k[-1] * t
        w = np.where(t < self.expiries[0], before, np.where(t > self.expiries[-1], after, between))
        return np.asarray(w, dtype=np.float64)

    def vol(self, expiry_years: ArrayLike, log_moneyness: ArrayLike) -> FloatArray:
        """Implied vol (annualised) at ``T`` years and ``k = ln(K/F)``. At T = 0, the
        short-end vol (so a price at expiry stays defined)."""
        t = np.asarray(expiry_years, dtype=np.float64)
        safe_t = np.where(t > 0, t, self.expiries[0] * 1e-6)
        return np.sqrt(np.maximum(self.total_variance(safe_t, log_moneyness), 0.0) / safe_t)

    def scaled(self, factor: float) -> VolSurface:
        """Every vol multiplied by ``factor`` (sticky-moneyness proportional shock)."""
        return VolSurface(self.expiries, self.log_moneyness, self.vols * factor)

    def shifted(self, shift: float) -> VolSurface:
        """Every vol moved by ``shift`` (absolute, in vol units), floored at zero."""
        return VolSurface(self.expiries, self.log_moneyness, np.maximum(self.vols + shift, 0.0))

    def arbitrage(self, tolerance: float = 1e-12) -> ArbitrageReport:
        """Calendar (w falling in T) and butterfly (call not convex in K) violations."""
        report = ArbitrageReport()
        w = self.vols**2 * self.expiries[:, None]
        for j, i in zip(*np.nonzero(np.diff(w, axis=0) < -tolerance), strict=True):
            report.calendar.append(
                (float(self.log_moneyness[i]), float(self.expiries[j]), float(self.expiries[j + 1]))
            )
        strikes = np.exp(self.log_moneyness)  # forward = 1
        for j, tj in enumerate(self.expiries):
            calls = np.array(
                [
                    _black_call_unit_forward(float(kk), float(ww))
                    for kk, ww in zip(strikes, w[j], strict=True)
                ]
            )
            slopes = np.diff(calls) / np.diff(strikes)
            for i in np.nonzero(np.diff(slopes) < -tolerance)[0]:
                report.butterfly.append((float(tj), float(self.log_moneyness[i + 1])))
        return report


def _black_call_unit_forward(strike: float, total_var: float) -> float:
    if total_var <= 0:
        return max(1.0 - strike, 0.0)
    sd = math.sqrt(total_var)
    d1 = -math.log(strike) / sd + 0.5 * sd
    return _ncdf(d1) - strike * _ncdf(d1 - sd)


def _ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))
