"""Standard normal density and distribution as Numba scalar kernels.

``ncdf`` goes through ``erfc`` so the far tails keep full relative precision (N(-30) is
~5e-198, not 0), which matters for deep out-of-the-money prices and implied volatility.
"""

from __future__ import annotations

import math

from numba import njit

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True, inline="always")
def ncdf(x: float) -> float:
    """Standard normal cumulative distribution N(x)."""
    return 0.5 * math.erfc(-x * _INV_SQRT2)


@njit(cache=True, inline="always")
def npdf(x: float) -> float:
    """Standard normal density n(x)."""
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)
