"""Discrete cash dividends, handled by the escrowed-dividend model.

The spot is split into the present value of the dividends paid before expiry (riskless) and
the rest (lognormal). For pricing, an option sees spot ``S - PV(dividends before expiry)``;
equivalently a continuous yield ``q_eff = -ln(1 - PV/S) / T``. This is the standard
practitioner model; its known bias (volatility applied to a smaller base) is small for the
dividend sizes of listed equities and is the reason implied vols are quoted in this model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError
from marginflow.market.curves import ZeroCurve


@dataclass(frozen=True, slots=True)
class DividendSchedule:
    """Cash amounts (per share) going ex at ``ex_times`` (years from today, ACT/365)."""

    ex_times: FloatArray
    amounts: FloatArray

    @classmethod
    def of(cls, ex_times: ArrayLike, amounts: ArrayLike) -> DividendSchedule:
        t = np.asarray(ex_times, dtype=np.float64).ravel()
        a = np.asarray(amounts, dtype=np.float64).ravel()
        if t.shape != a.shape:
            raise ValidationError("amounts", "needs one amount per ex-date")
        if np.any(~np.isfinite(t)) or np.any(t < 0):
            raise ValidationError("ex_times", "must be finite and >= 0")
        if np.any(~np.isfinite(a)) or np.any(a < 0):
            raise ValidationError("amounts", "must be finite and >= 0")
        order = np.argsort(t, kind="stable")
        return cls(t[order], a[order])

    @classmethod
    def none(cls) -> DividendSchedule:
        return cls(np.empty(0), np.empty(0))

    def present_value(self, expiry_years: ArrayLike, curve: ZeroCurve) -> FloatArray:
        """PV of the dividends going ex strictly before each expiry, per share."""
        t_exp = np.atleast_1d(np.asarray(expiry_years, dtype=np.float64))
        if self.ex_times.size == 0:
            return np.zeros_like(t_exp)
        pv_each = self.amounts * curve.discount(self.ex_times)
        before = self.ex_times[None, :] < t_exp[:, None]
        return np.asarray(before @ pv_each, dtype=np.float64)

    def equivalent_yield(
        self, spot: ArrayLike, expiry_years: ArrayLike, curve: ZeroCurve
    ) -> FloatArray:
        """Continuous yield with the same forward as the escrowed model (0 at T = 0)."""
        s = np.asarray(spot, dtype=np.float64)
        t = np.atleast_1d(np.asarray(expiry_years, dtype=np.float64))
        pv = self.present_value(t, curve)
        if np.any(pv >= s):
            raise ValidationError("amounts", "dividends worth more than the spot")
        safe_t = np.where(t > 0, t, 1.0)
        return np.where(t > 0, -np.log1p(-pv / s) / safe_t, 0.0)
