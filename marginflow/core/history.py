"""Daily price history of the underlyings as log returns: the market's memory, which the
scenario generators turn into scenarios.

A return on date ``t`` is ``ln(P_t / P_{t-1})`` between consecutive business-day closes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError

DateArray = NDArray[np.datetime64]

MAX_GAP_BUSINESS_DAYS = 5
"""Most business days (Monday-Friday) a history may skip between two closes, and the most
its last close may lie before the valuation date. Exchange closures are shorter (NYSE after
11 September 2001: 4 days); a longer gap turns one return into a multi-day move the models
would take for a daily one, and a history that stops early prices today's risk with
yesterday's market."""


@dataclass(frozen=True, slots=True)
class ReturnHistory:
    """T business days × U underlyings of daily log returns.

    ``dates[t]`` is the close the return ``log_returns[t, u]`` ends at. The series must be
    complete (no NaN): a missing close has no honest default for a margin model.
    """

    dates: DateArray
    underlyings: tuple[str, ...]
    log_returns: FloatArray
    source: str = "history"
    """Where it came from (a file name), for messages."""

    def __post_init__(self) -> None:
        t, u = len(self.dates), len(self.underlyings)
        if self.log_returns.shape != (t, u):
            raise ValidationError(
                "log_returns", f"has shape {self.log_returns.shape}, expected ({t}, {u})"
            )
        check_dates(self.dates, self.source)
        bad = ~np.isfinite(self.log_returns)
        if bad.any():
            ti, ui = np.argwhere(bad)[0]
            raise ValidationError(
                "history",
                f"return of {self.underlyings[ui]!r} on {self.dates[ti]} is missing or not finite",
            )

    @classmethod
    def from_closes(
        cls,
        dates: DateArray,
        underlyings: tuple[str, ...],
        closes: FloatArray,
        *,
        source: str = "history",
    ) -> ReturnHistory:
        """Returns from a T+1 × U table of closes (the first row only anchors the first return)."""
        check_dates(np.asarray(dates, dtype="datetime64[D]"), source)
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
        return cls(np.asarray(dates[1:], dtype="datetime64[D]"), underlyings, returns, source)

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
        return ReturnHistory(self.dates, tuple(underlyings), self.log_returns[:, cols], self.source)

    def until(self, as_of: np.datetime64) -> ReturnHistory:
        """The history up to and including ``as_of``."""
        day = np.asarray(as_of, dtype="datetime64[D]")
        n = int(np.searchsorted(self.dates, day, side="right"))
        if n == 0:
            first = self.dates[0] if len(self) else "(none)"
            raise ValidationError(
                "history", f"{self.source}: starts on {first}, after the valuation date {day}"
            )
        return ReturnHistory(self.dates[:n], self.underlyings, self.log_returns[:n], self.source)

    def check_current(self, valuation_date: dt.date | np.datetime64) -> None:
        """Refuse a history whose last close is more than :data:`MAX_GAP_BUSINESS_DAYS`
        business days before ``valuation_date`` (or that has no close by then)."""
        day = np.datetime64(str(valuation_date), "D")
        upto = self.dates[self.dates <= day]
        if upto.size == 0:
            first = self.dates[0] if len(self) else "(none)"
            raise ValidationError(
                "history", f"{self.source}: starts on {first}, after the valuation date {day}"
            )
        last = upto[-1]
        behind = int(np.busday_count(last, day))
        if behind > MAX_GAP_BUSINESS_DAYS:
            raise ValidationError(
                "history",
                f"{self.source}: last date {last} is {behind} business days before the "
                f"valuation date {day} (at most {MAX_GAP_BUSINESS_DAYS})",
            )

    def closes(self, last: FloatArray) -> FloatArray:
        """Rebuild (T+1) × U closes ending at ``last`` (the first row is the anchor)."""
        cum = np.vstack([np.zeros((1, self.log_returns.shape[1])), np.cumsum(self.log_returns, 0)])
        return np.asarray(last * np.exp(cum - cum[-1]), dtype=np.float64)


def check_dates(dates: DateArray, source: str) -> None:
    """Dates strictly increasing (no duplicate, nothing out of order) and no gap of more
    than :data:`MAX_GAP_BUSINESS_DAYS` business days; names the first offending date."""
    if dates.size < 2:
        return
    d = dates.astype("datetime64[D]")
    step = np.diff(d.astype(np.int64))
    bad = np.flatnonzero(step <= 0)
    if bad.size:
        i = int(bad[0])
        what = "appears twice" if step[i] == 0 else f"comes after {d[i]}"
        raise ValidationError("date", f"{source}: {d[i + 1]} {what} (dates must increase)")
    gaps = np.busday_count(d[:-1], d[1:])
    wide = np.flatnonzero(gaps > MAX_GAP_BUSINESS_DAYS)
    if wide.size:
        i = int(wide[0])
        raise ValidationError(
            "date",
            f"{source}: {int(gaps[i])} business days from {d[i]} to {d[i + 1]} without a "
            f"close (at most {MAX_GAP_BUSINESS_DAYS})",
        )
