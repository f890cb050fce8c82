"""Struct-of-arrays batches: the shape every vectorised function takes.

An :class:`OptionBatch` holds N options as parallel float64/bool arrays, never a list of
objects, so pricing and revaluation run as array operations over millions at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginflow.core.errors import ValidationError

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class OptionBatch:
    """N options in parallel arrays.

    Attributes
    ----------
    is_call : bool[N]
        True for calls, False for puts.
    is_american : bool[N]
        True for American exercise, False for European.
    spot : float64[N]
        Spot price of the underlying; for options on futures, the futures price.
    strike : float64[N]
        Strike, in the units of ``spot``.
    expiry_years : float64[N]
        Time to expiry in years (ACT/365 fixed unless the caller chose otherwise). 0 means
        expiring now: the price is the intrinsic value.
    rate : float64[N]
        Risk-free rate, continuously compounded, annualised. May be negative.
    dividend_yield : float64[N]
        Continuous dividend yield (or foreign rate, or borrow cost). For options on futures
        set it equal to ``rate`` (zero cost of carry: Black-76). May exceed ``rate``.
    vol : float64[N]
        Annualised volatility of log returns, >= 0.
    """

    is_call: BoolArray
    is_american: BoolArray
    spot: FloatArray
    strike: FloatArray
    expiry_years: FloatArray
    rate: FloatArray
    dividend_yield: FloatArray
    vol: FloatArray

    @classmethod
    def of(
        cls,
        *,
        is_call: ArrayLike,
        spot: ArrayLike,
        strike: ArrayLike,
        expiry_years: ArrayLike,
        rate: ArrayLike = 0.0,
        dividend_yield: ArrayLike = 0.0,
        vol: ArrayLike,
        is_american: ArrayLike = False,
    ) -> OptionBatch:
        """Build a batch, broadcasting scalars, and validate every field."""
        floats = np.broadcast_arrays(
            *(
                np.asarray(a, dtype=np.float64)
                for a in (spot, strike, expiry_years, rate, dividend_yield, vol)
            ),
            np.asarray(is_call, dtype=np.bool_),
            np.asarray(is_american, dtype=np.bool_),
        )
        # Copies: a batch never shares memory with the caller's arrays or a broadcast view.
        s, k, t, r, q, v, c, a = (np.array(x, copy=True).ravel() for x in floats)
        batch = cls(
            is_call=c.astype(np.bool_),
            is_american=a.astype(np.bool_),
            spot=s,
            strike=k,
            expiry_years=t,
            rate=r,
            dividend_yield=q,
            vol=v,
        )
        batch.validate()
        return batch

    def __len__(self) -> int:
        return int(self.spot.shape[0])

    def validate(self) -> None:
        """Raise :class:`ValidationError` naming the first bad field and the first bad index."""
        n = len(self)
        for f in fields(self):
            arr = getattr(self, f.name)
            if arr.shape != (n,):
                raise ValidationError(f.name, f"has shape {arr.shape}, expected ({n},)")
        _check("spot", self.spot, positive=True)
        _check("strike", self.strike, positive=True)
        _check("expiry_years", self.expiry_years, nonnegative=True)
        _check("rate", self.rate)
        _check("dividend_yield", self.dividend_yield)
        _check("vol", self.vol, nonnegative=True)

    def take(self, index: Any) -> OptionBatch:
        """A sub-batch (fancy or boolean index), arrays copied."""
        return OptionBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def replace(self, **arrays: ArrayLike) -> OptionBatch:
        """A batch with some arrays replaced (broadcast to N), e.g. a spot scenario."""
        n = len(self)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, arr in arrays.items():
            dtype = values[name].dtype
            values[name] = np.ascontiguousarray(np.broadcast_to(np.asarray(arr, dtype), (n,)))
        return OptionBatch(**values)


def _check(
    name: str, arr: FloatArray, *, positive: bool = False, nonnegative: bool = False
) -> None:
    bad = ~np.isfinite(arr)
    what = "finite"
    if positive:
        bad |= arr <= 0
        what = "finite and > 0"
    elif nonnegative:
        bad |= arr < 0
        what = "finite and >= 0"
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(name, f"must be {what}; index {i} is {float(arr[i])!r}")
