"""Daily price history of the underlyings as log returns: the market's memory, which the
scenario generators turn into scenarios.

A return on date ``t`` is ``ln(P_t / P_{t-1})`` between consecutive business-day closes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError

DateArray = NDArray[np.datetime64]


@dataclass(frozen=True, slots=True)
class ReturnHistory:
    """T business days × U underlyings of daily log returns.

    ``dates[t]`` is the close the return ``log_returns[t, u]`` ends at. The series must be
    complete (no NaN): a missing close has no honest default for a margin model.
    """

    dates: DateArray
    underlyings: tuple[str, ...]
    log_returns: FloatArray

    def __post_init__(self) -> None:
        t, u = len(self.dates), len(self.underlyings)
        if self.log_returns.shape != (t, u):
            raise ValidationError(
                "log_returns", f"has shape {self.log_returns.shape}, expected ({t}, {u})"
            )
        if t and np.any(np.diff(self.dates.astype("datetime64[D]").astype(np.int64)) <= 0):
            raise ValidationError("dates", "must be strictly increasing")
        bad = ~np.isfinite(self.log_returns)
        if bad.any():
            ti, ui = np.argwhere(bad)[0]
            raise ValidationError(
                "history",
                f"return of {self.underlyings[ui]!r} on {self.dates[ti]} is missing or not finite",
            )

    @classmethod
    def from_closes(
        cls, dates: DateArray, underlyings: tuple[str, ...], closes: FloatArray
    ) -> ReturnHistory:
        """Returns from a T+1 × U table of closes (the first row only anchors the first return)."""
        closes = np.asarray(closes, dtype=np.float64)
        bad = ~(np.isfinite(closes) & (closes > 0))
        if bad.any():
            ti, ui = np.argwhere(bad)[0]
            raise ValidationError(
                "history",
                f"close of {underlyings[ui]!r} on {dates[ti]} must be a finite number > 0, "
                f"got {closes[ti, ui]!r}",
            )
        if closes.shape[0] < 2:
            raise ValidationError("history", "needs at least two closes")
        returns = np.diff(np.log(closes), axis=0)
        return cls(np.asarray(dates[1:], dtype="datetime64[D]"), underlyings, returns)

    def __len__(self) -> int:
        return int(self.dates.shape[0])

    def column(self, underlying: str) -> FloatArray:
        return self.log_returns[:, self.underlyings.index(underlying)]

    def select(self, underlyings: tuple[str, ...] | list[str]) -> ReturnHistory:
        """The columns of ``underlyings``, in that order (naming the first one missing)."""
        index = {u: i for i, u in enumerate(self.underlyings)}
        missing = [u for u in underlyings if u not in index]
        if missing:
            raise ValidationError(
                "history",
                f"no price history for underlying {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            )
        cols = [index[u] for u in underlyings]
        return ReturnHistory(self.dates, tuple(underlyings), self.log_returns[:, cols])

    def until(self, as_of: np.datetime64) -> ReturnHistory:
        """The history up to and including ``as_of``."""
        day = np.asarray(as_of, dtype="datetime64[D]")
        n = int(np.searchsorted(self.dates, day, side="right"))
        if n == 0:
            raise ValidationError("as_of", f"{as_of} is before the first date {self.dates[0]}")
        return ReturnHistory(self.dates[:n], self.underlyings, self.log_returns[:n])

    def closes(self, last: FloatArray) -> FloatArray:
        """Rebuild (T+1) × U closes ending at ``last`` (the first row is the anchor)."""
        cum = np.vstack([np.zeros((1, self.log_returns.shape[1])), np.cumsum(self.log_returns, 0)])
        return np.asarray(last * np.exp(cum - cum[-1]), dtype=np.float64)
