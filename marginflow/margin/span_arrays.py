"""SPAN risk arrays by full revaluation, and the per-instrument input of the model.

A risk array holds, for one *long* contract, the loss under each scenario of its
combined commodity: currency, **losses positive**, the scenario's cover weight applied
(``risk_array = -pnl × cover``). Futures (and shares: multiplier 1) are linear in the
price move; options are repriced under each scenario's price and volatility with the
pricing core (Black-Scholes-Merton or Black-76 for European options, the American
pricer for American ones). :class:`SpanInstruments` bundles the arrays the model needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginflow.core.batch import BoolArray, OptionBatch
from marginflow.core.errors import ValidationError
from marginflow.margin.grid import FloatArray, IntArray, per_instrument, price_options
from marginflow.margin.span_parameters import SpanParameters

# A scenario price is floored at this fraction of the current price: an extreme move
# larger than the price itself means "the underlying is worthless", not a negative price.
_MIN_PRICE_FRACTION = 1e-8
# Relative bump of the underlying for the central-difference delta; small enough that the
# second-order error (gamma × h²) is far below a cent per contract, large enough that
# double rounding of the prices stays below 1e-9 of the delta.
_DELTA_BUMP = 1e-4


@dataclass(frozen=True, slots=True, eq=False)
class SpanInstruments:
    """N instruments as SPAN sees them, in parallel arrays (per one long contract).

    Attributes
    ----------
    risk_array : float[N, S]
        Loss per scenario, currency, losses positive, cover applied.
    delta : float64[N]
        Delta in the commodity's delta units.
    commodity : int64[N]
        Index into :attr:`SpanParameters.commodities`.
    tier : int64[N]
        Intra-commodity tier in ``[0, n_tiers)`` of its commodity.
    option_value : float64[N]
        Market value for net option value, currency (0 for futures, futures-style options).
    short_option_charge : float64[N]
        Short option minimum per short contract, currency (0 for non-options).
    is_option, is_call : bool[N]
    """

    risk_array: NDArray[np.floating[Any]]
    delta: FloatArray
    commodity: IntArray
    tier: IntArray
    option_value: FloatArray
    short_option_charge: FloatArray
    is_option: BoolArray
    is_call: BoolArray

    @classmethod
    def of(
        cls,
        *,
        risk_array: ArrayLike,
        commodity: ArrayLike,
        delta: ArrayLike = 0.0,
        tier: ArrayLike = 0,
        option_value: ArrayLike = 0.0,
        short_option_charge: ArrayLike = 0.0,
        is_option: ArrayLike = False,
        is_call: ArrayLike = False,
    ) -> SpanInstruments:
        """Build, broadcasting scalars to N = ``len(risk_array)``, and validate shapes and
        values (the parameters are checked by :meth:`validate_for`)."""
        ra = np.asarray(risk_array)
        if ra.dtype.kind != "f":
            ra = ra.astype(np.float64)
        if ra.ndim != 2:
            raise ValidationError(
                "risk_array", f"must be 2-D (instruments × scenarios), got {ra.ndim}-D"
            )
        n = ra.shape[0]
        out = cls(
            risk_array=np.ascontiguousarray(ra),
            delta=per_instrument("delta", delta, np.float64, n),
            commodity=per_instrument("commodity", commodity, np.int64, n),
            tier=per_instrument("tier", tier, np.int64, n),
            option_value=per_instrument("option_value", option_value, np.float64, n),
            short_option_charge=per_instrument(
                "short_option_charge", short_option_charge, np.float64, n
            ),
            is_option=per_instrument("is_option", is_option, np.bool_, n),
            is_call=per_instrument("is_call", is_call, np.bool_, n),
        )
        for name in ("risk_array", "delta", "option_value", "short_option_charge"):
            arr = getattr(out, name)
            if not np.isfinite(arr).all():
                bad = np.argwhere(~np.isfinite(arr))[0]
                raise ValidationError(name, f"must be finite; instrument {int(bad[0])} is not")
        if (out.short_option_charge < 0).any():
            raise ValidationError("short_option_charge", "must be >= 0")
        return out

    def __len__(self) -> int:
        return int(self.risk_array.shape[0])

    def validate_for(self, params: SpanParameters) -> None:
        """Check the instruments against ``params``: scenario count, commodity and tier."""
        if self.risk_array.shape[1] != params.n_scenarios:
            raise ValidationError(
                "risk_array",
                f"has {self.risk_array.shape[1]} scenarios, parameters have {params.n_scenarios}",
            )
        n_cc = len(params.commodities)
        bad = (self.commodity < 0) | (self.commodity >= n_cc)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValidationError(
                "commodity", f"instrument {i} has {self.commodity[i]}, not in [0, {n_cc})"
            )
        n_tiers = params.tables().n_tiers
        bad = (self.tier < 0) | (self.tier >= n_tiers[self.commodity])
        if bad.any():
            i = int(np.argmax(bad))
            raise ValidationError(
                "tier", f"instrument {i} has tier {self.tier[i]}, outside its commodity's tiers"
            )

    @staticmethod
    def concat(parts: Sequence[SpanInstruments]) -> SpanInstruments:
        """Stack several instrument sets (e.g. futures then options) into one."""
        if not parts:
            raise ValidationError("parts", "needs at least one instrument set")
        names = (
            "risk_array",
            "delta",
            "commodity",
            "tier",
            "option_value",
            "short_option_charge",
            "is_option",
            "is_call",
        )
        return SpanInstruments(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


@dataclass(frozen=True, slots=True, eq=False)
class RiskArrays:
    """Output of the risk-array builders, per one long contract.

    ``risk_array`` float64[N, S] (losses positive, cover applied), ``value`` float64[N]
    (current value per contract, currency; 0 for futures), ``delta`` float64[N] (in the
    commodity's delta units).
    """

    risk_array: FloatArray
    value: FloatArray
    delta: FloatArray


def _gather(
    params: SpanParameters, commodity: ArrayLike, n: int
) -> tuple[IntArray, dict[str, Any]]:
    c = np.ascontiguousarray(np.broadcast_to(np.asarray(commodity, dtype=np.int64), (n,)))
    n_cc = len(params.commodities)
    if ((c < 0) | (c >= n_cc)).any():
        raise ValidationError("commodity", f"indices must be in [0, {n_cc})")
    t = params.tables()
    names = ("psr", "vsr", "vol_relative", "delta_unit", "price_fraction", "vol_multiple", "cover")
    return c, {k: getattr(t, k)[c] for k in names}


def _multiplier(multiplier: ArrayLike, n: int) -> FloatArray:
    m = np.ascontiguousarray(np.broadcast_to(np.asarray(multiplier, dtype=np.float64), (n,)))
    if not (np.isfinite(m) & (m > 0)).all():
        raise ValidationError("multiplier", "must be finite and > 0")
    return m


def futures_risk_arrays(
    *, params: SpanParameters, commodity: ArrayLike, multiplier: ArrayLike
) -> RiskArrays:
    """Risk arrays of futures (or any linear instrument: a share is a future with
    multiplier 1): the loss at scenario s is ``-price_fraction[s] × PSR × multiplier ×
    cover[s]``, whatever the price level. ``commodity`` indexes ``params.commodities``."""
    n = int(np.broadcast(np.atleast_1d(commodity), np.atleast_1d(multiplier)).size)
    m = _multiplier(multiplier, n)
    _, g = _gather(params, commodity, n)
    risk = -(g["price_fraction"] * g["psr"][:, None]) * (m[:, None] * g["cover"])
    return RiskArrays(risk_array=risk, value=np.zeros(n), delta=m / g["delta_unit"])


def option_risk_arrays(
    *,
    params: SpanParameters,
    commodity: ArrayLike,
    batch: OptionBatch,
    multiplier: ArrayLike,
    lookahead_years: float = 0.0,
) -> RiskArrays:
    """Risk arrays of options by full revaluation under each scenario.

    Scenario s moves the underlying (``batch.spot``; the futures price for options on
    futures, priced with Black-76 when ``dividend_yield == rate``) by
    ``price_fraction[s] × PSR`` and the vol by ``vol_multiple[s] × VSR`` (floored at 0),
    ages the option by ``lookahead_years`` (SPAN's look-ahead; 0 by default), and
    reprices it: European options with Black-Scholes-Merton, American ones with the
    pricing core's American pricer. The loss is
    ``-(V_scenario - V_now) × multiplier × cover[s]``.
    """
    n = len(batch)
    m = _multiplier(multiplier, n)
    _, g = _gather(params, commodity, n)
    if not (math.isfinite(lookahead_years) and lookahead_years >= 0):
        raise ValidationError("lookahead_years", f"must be >= 0, got {lookahead_years!r}")
    s_count = params.n_scenarios
    spot = batch.spot[:, None]
    spot_s = np.maximum(spot + g["price_fraction"] * g["psr"][:, None], spot * _MIN_PRICE_FRACTION)
    vol = batch.vol[:, None]
    shift = g["vol_multiple"] * g["vsr"][:, None]
    vol_s = np.where(g["vol_relative"][:, None], vol * (1.0 + shift), vol + shift)
    vol_s = np.maximum(vol_s, 0.0)
    t_s = np.maximum(batch.expiry_years - lookahead_years, 0.0)
    h = batch.spot * _DELTA_BUMP
    # One pricing call: the S scenarios, then now, then spot ± h (for delta), per option.
    spots = np.concatenate([spot_s.ravel(), batch.spot, batch.spot + h, batch.spot - h])
    vols = np.concatenate([vol_s.ravel(), batch.vol, batch.vol, batch.vol])
    expiries = np.concatenate([np.repeat(t_s, s_count), np.tile(batch.expiry_years, 3)])

    def rep(a: NDArray[Any]) -> NDArray[Any]:
        return np.concatenate([np.repeat(a, s_count), np.tile(a, 3)])

    big = OptionBatch(
        is_call=rep(batch.is_call),
        is_american=rep(batch.is_american),
        spot=spots,
        strike=rep(batch.strike),
        expiry_years=expiries,
        rate=rep(batch.rate),
        dividend_yield=rep(batch.dividend_yield),
        vol=vols,
    )
    prices = price_options(big)
    scen = prices[: n * s_count].reshape(n, s_count)
    now, up, down = prices[n * s_count :].reshape(3, n)
    risk = -(scen - now[:, None]) * (m[:, None] * g["cover"])
    delta = (up - down) / (2.0 * h) * m / g["delta_unit"]
    return RiskArrays(risk_array=risk, value=now * m, delta=delta)


def short_option_charges(
    *,
    params: SpanParameters,
    commodity: ArrayLike,
    underlying_price: ArrayLike,
    multiplier: ArrayLike,
) -> FloatArray:
    """Short option minimum per short contract (currency) from the commodity's fixed
    amount and fraction of notional (``underlying_price × multiplier``)."""
    m = np.asarray(multiplier, dtype=np.float64)
    c = np.asarray(commodity, dtype=np.int64)
    fixed = params.tables().som_fixed[c]
    frac = params.tables().som_fraction[c]
    return np.asarray(
        fixed + frac * np.asarray(underlying_price, dtype=np.float64) * m, dtype=np.float64
    )
