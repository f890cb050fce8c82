"""Risk-free rate curves.

A :class:`ZeroCurve` holds continuously compounded zero rates at pillar times (years,
ACT/365 fixed). Interpolation is linear in ``r(t) * t`` (the log discount factor), which
means piecewise-flat instantaneous forwards between pillars: the usual choice because it
never invents forward-rate wiggles the pillars don't imply. Before the first pillar the
first zero rate applies; after the last, the last forward rate continues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class ZeroCurve:
    """Zero rates ``rates[i]`` (continuous, annual) at ``times[i]`` years, times strictly rising."""

    times: FloatArray
    rates: FloatArray

    @classmethod
    def of(cls, times: ArrayLike, rates: ArrayLike) -> ZeroCurve:
        t = np.asarray(times, dtype=np.float64).ravel()
        r = np.asarray(rates, dtype=np.float64).ravel()
        if t.size == 0 or t.shape != r.shape:
            raise ValidationError("times", "needs as many pillars as rates, at least one")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(r))):
            raise ValidationError("rates", "pillars and rates must be finite")
        if t[0] <= 0 or np.any(np.diff(t) <= 0):
            raise ValidationError("times", "must be > 0 and strictly increasing")
        return cls(t, r)

    @classmethod
    def flat(cls, rate: float) -> ZeroCurve:
        return cls.of([1.0], [rate])

    def _log_discount(self, t: FloatArray) -> FloatArray:
        # -ln D(t) = r(t) t, linear between pillars, anchored at 0 at t = 0.
        rt = self.rates * self.times
        knots_t = np.concatenate(([0.0], self.times))
        knots_rt = np.concatenate(([0.0], rt))
        inside = np.interp(t, knots_t, knots_rt)
        if self.times.size > 1:
            last_fwd = (rt[-1] - rt[-2]) / (self.times[-1] - self.times[-2])
        else:
            last_fwd = self.rates[-1]
        beyond = rt[-1] + last_fwd * (t - self.times[-1])
        return np.where(t > self.times[-1], beyond, inside)

    def discount(self, t: ArrayLike) -> FloatArray:
        """Discount factor D(t) = exp(-r(t) t) for ``t`` in years (t >= 0)."""
        return np.exp(-self._log_discount(np.asarray(t, dtype=np.float64)))

    def zero_rate(self, t: ArrayLike) -> FloatArray:
        """Continuously compounded zero rate r(t); r(0) is the first pillar's rate."""
        tt = np.asarray(t, dtype=np.float64)
        safe = np.where(tt > 0, tt, 1.0)
        return np.where(tt > 0, self._log_discount(safe) / safe, self.rates[0])
