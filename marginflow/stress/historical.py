"""Stress scenarios from real market moves: the largest moves of the index series that ship
with ``arch``, and the published one-day shocks of ``margin-worked-examples.md`` §5.

Historical moves (:func:`historical_set`)
-----------------------------------------
From the S&P 500 and NASDAQ Composite daily adjusted closes of ``arch.data`` (1999-2018,
:func:`marginflow.scenarios.history.load_arch_series`, underlyings ``SPX`` and ``NDX``): for
each series, each horizon ``h`` (trading days) and each direction, the ``count`` largest
``h``-day moves that share no day (:func:`largest_moves`: the most extreme window, then the
most extreme window overlapping none already taken, and so on; for ``h`` = 1 simply the
largest daily moves). A window found for both series is one scenario. Each scenario moves
the market by the S&P 500's move over the window and each index by its own: the betas of
single stocks are to the S&P 500, as in the synthetic universe's factor model.

Implied vol (:class:`VolProxy`)
-------------------------------
Where the VIX (``arch.data.vix``, 2014-2019) has a close on the day before the window and
on its last day, the vol shock is the VIX's relative move over the window. Elsewhere it is
a proxy calibrated where the two series overlap (2014-2018): the elasticity of the VIX to
the S&P 500, ``ln(VIX_end / VIX_anchor) = b · r`` with ``r`` the S&P 500's log return over
the window and ``b`` fitted by least squares through the origin on non-overlapping windows
of the same length, one ``b`` for falls and one for rises (the VIX rises more on a fall
than it falls on a rise of the same size: the leverage effect). On one-day moves the fit is
``b`` ≈ -8.7 for falls and -7.3 for rises, R² ≈ 0.67 (measured; the stored set's
``params`` hold each horizon's figures).

The largest moves of the sample (5 Feb 2018: S&P 500 -4.1%, VIX +116%) are far below the
stress moves (-9% to -20.5%), so the fitted line is not extrapolated: the proxy is kept
within the range of the VIX's own log moves over the same horizon in the calibration
sample. A straight line would put the VIX up more than sevenfold on 19 Oct 1987; with the
cap the proxy gives +116% for every one-day fall beyond about 8.5%, and -26% for every
one-day rise beyond about 4%. For comparison (news reports, not used in any number here):
the VIX closed up about 43% on 16 Mar 2020, to a record 82.69 from a level already high;
the proxy, which knows no level, is the harsher there. Over the 23 trading days of the
2020 fall (-34%) the 23-day proxy gives +282%.

Published shocks (:func:`published_set`)
----------------------------------------
:data:`PUBLISHED_SHOCKS`: the S&P 500 moves of ``margin-worked-examples.md`` §5 as published
(19 Oct 1987 -20.5%, 16 Mar 2020 -12%, 15 Oct 2008 -9.03%, ...), the 2020 peak-to-trough fall
over its 23 trading days, and the CFTC's 2019 supervisory reverse stress test (25% in stock
index futures, taken as a fall) as a reference point. Their vol shocks are the proxy above
for the move's horizon.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError
from marginflow.scenarios.history import ArchSeries, load_arch_series
from marginflow.stress.scenarios import Shock, StressScenario, StressSet

Direction = Literal["fall", "rise"]
MARKET = "SPX"
"""The market the betas are to: the S&P 500 (``arch.data.sp500``)."""
SERIES = {"SPX": "S&P 500", "NDX": "NASDAQ Composite"}
"""The ``arch`` series, by the underlying id :func:`load_arch_series` gives them."""
HORIZONS = (1, 2, 5, 10)
COUNT = 10
DATA_SOURCE = "arch.data sp500 and nasdaq adjusted closes"
VIX_SOURCE = "arch.data.vix"
SECTION_5 = "margin-worked-examples.md §5"


def largest_moves(
    log_returns: FloatArray, *, horizon_days: int, count: int, direction: Direction
) -> list[tuple[int, float]]:
    """The ``count`` largest ``horizon_days``-day moves of a daily log-return series that
    share no day, most extreme first, as (index of the window's first return, log move).

    Greedy: the most extreme window, then the most extreme one overlapping none taken, and
    so on (ties in date order). Fewer than ``count`` if the series runs out of windows.
    """
    if horizon_days < 1 or count < 1:
        raise ValidationError("horizon_days", "horizon and count must be >= 1")
    x = np.asarray(log_returns, dtype=np.float64)
    if x.size < horizon_days:
        return []
    cum = np.concatenate([[0.0], np.cumsum(x)])
    move = cum[horizon_days:] - cum[:-horizon_days]  # move[i]: returns i .. i+h-1
    order = np.argsort(move if direction == "fall" else -move, kind="stable")
    taken = np.zeros(x.size, dtype=bool)
    out: list[tuple[int, float]] = []
    for i in order.tolist():
        if taken[i : i + horizon_days].any():
            continue
        taken[i : i + horizon_days] = True
        out.append((i, float(move[i])))
        if len(out) == count:
            break
    return out


@dataclass(frozen=True, slots=True)
class VolProxy:
    """The relative implied-vol move of an ``horizon_days``-day market move where no VIX
    is at hand (module docstring): ``exp(clip(b · r, low, high)) - 1`` with ``r`` the S&P
    500 log return, ``b`` = ``fall_elasticity`` if ``r`` < 0 else ``rise_elasticity``.

    ``observations`` non-overlapping windows from ``first`` to ``last`` fitted ``b`` with
    ``r_squared``; ``low`` and ``high`` are the least and greatest log move of the VIX over
    any window of the horizon in that span."""

    horizon_days: int
    fall_elasticity: float
    rise_elasticity: float
    low: float
    high: float
    observations: int
    r_squared: float
    first: dt.date
    last: dt.date

    def vol_shock(self, log_return: float) -> float:
        b = self.fall_elasticity if log_return < 0 else self.rise_elasticity
        return float(np.expm1(np.clip(b * log_return, self.low, self.high)))

    def describe(self) -> str:
        return (
            f"proxy: VIX elasticity to the S&P 500 log return over {self.horizon_days} "
            f"day(s), {self.fall_elasticity:.2f} on falls, {self.rise_elasticity:.2f} on "
            f"rises (R² {self.r_squared:.2f}, {self.first.year}-{self.last.year}), within "
            f"the VIX's own moves [{np.expm1(self.low):+.0%}, {np.expm1(self.high):+.0%}]"
        )

    @classmethod
    def from_document(cls, doc: Any) -> VolProxy:
        """The proxy :meth:`document` wrote (a stored set's ``params.vol_proxy.<h>``)."""
        try:
            return cls(
                horizon_days=int(doc["horizon_days"]),
                fall_elasticity=float(doc["fall_elasticity"]),
                rise_elasticity=float(doc["rise_elasticity"]),
                low=float(doc["log_low"]),
                high=float(doc["log_high"]),
                observations=int(doc["observations"]),
                r_squared=float(doc["r_squared"]),
                first=doc["first"],
                last=doc["last"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError("vol_proxy", f"not a stored vol proxy: {exc}") from None

    def document(self) -> dict[str, Any]:
        return {
            "horizon_days": self.horizon_days,
            "fall_elasticity": self.fall_elasticity,
            "rise_elasticity": self.rise_elasticity,
            "log_low": self.low,
            "log_high": self.high,
            "observations": self.observations,
            "r_squared": self.r_squared,
            "first": self.first,
            "last": self.last,
        }


def vix_at_closes(arch: ArchSeries) -> FloatArray:
    """The VIX close on each date of ``arch.history`` (NaN where it has none)."""
    dates = arch.history.dates
    pos = np.searchsorted(arch.vix_dates, dates)
    pos = np.minimum(pos, arch.vix_dates.size - 1)
    hit = arch.vix_dates[pos] == dates
    return np.where(hit, arch.vix[pos], np.nan)


def calibrate_vol_proxy(arch: ArchSeries, horizon_days: int) -> VolProxy:
    """Fit :class:`VolProxy` for ``horizon_days`` where the VIX and the S&P 500 overlap."""
    h = horizon_days
    spx = arch.history.column(MARKET)
    vix = vix_at_closes(arch)
    cum = np.concatenate([[0.0], np.cumsum(spx)])
    ends = np.arange(h, spx.size)  # last return of the window; its anchor close is ends - h
    r = cum[ends + 1] - cum[ends - h + 1]
    with np.errstate(invalid="ignore"):
        dv = np.log(vix[ends]) - np.log(vix[ends - h])
    ok = np.isfinite(dv)
    if np.count_nonzero(ok) < 10 * h:
        raise ValidationError("horizon_days", f"too few VIX windows of {h} days to calibrate")
    e = ends[ok]
    pick = (e - e[0]) % h == 0  # non-overlapping: the overlap has no gap in the VIX
    x, y = r[ok][pick], dv[ok][pick]
    X = np.column_stack([np.minimum(x, 0.0), np.maximum(x, 0.0)])
    b = np.linalg.lstsq(X, y, rcond=None)[0]
    resid = y - X @ b
    r2 = 1.0 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
    dates = arch.history.dates
    return VolProxy(
        horizon_days=h,
        fall_elasticity=round(float(b[0]), 4),
        rise_elasticity=round(float(b[1]), 4),
        low=round(float(dv[ok].min()), 4),
        high=round(float(dv[ok].max()), 4),
        observations=int(x.size),
        r_squared=round(r2, 4),
        first=dates[e[0] - h].astype(dt.date),
        last=dates[e[-1]].astype(dt.date),
    )


@dataclass(slots=True)
class _Window:
    first: int
    horizon: int
    ranks: list[str]


def historical_set(
    *,
    count: int = COUNT,
    horizons: Sequence[int] = HORIZONS,
    first: dt.date | None = None,
    last: dt.date | None = None,
    name: str = "historical",
    version: str = "1",
    arch: ArchSeries | None = None,
) -> StressSet:
    """The largest historical moves (module docstring) as a stress set, scaling ``"beta"``.

    Parameters
    ----------
    count : int
        Moves per series, horizon and direction (before windows found twice are merged).
    horizons : sequence of int
        Window lengths in trading days.
    first, last : date, optional
        Only windows within these dates (inclusive; default the whole series).
    arch : ArchSeries, optional
        The series (default :func:`load_arch_series`).
    """
    arch = arch or load_arch_series()
    hist = arch.history
    dates = hist.dates
    lo = 0 if first is None else int(np.searchsorted(dates, np.datetime64(first, "D")))
    hi = (
        dates.size
        if last is None
        else int(np.searchsorted(dates, np.datetime64(last, "D"), "right"))
    )
    if hi - lo < max(horizons, default=1):
        raise ValidationError("first", f"too few trading days from {first} to {last}")
    windows: dict[tuple[int, int], _Window] = {}
    for u, title in SERIES.items():
        x = hist.column(u)[lo:hi]
        for h in horizons:
            for direction in ("fall", "rise"):
                moves = largest_moves(x, horizon_days=h, count=count, direction=direction)
                for rank, (i, _) in enumerate(moves, start=1):
                    w = windows.setdefault((h, lo + i), _Window(lo + i, h, []))
                    w.ranks.append(f"{title} {h}-day {direction} #{rank}")
    proxies = {h: calibrate_vol_proxy(arch, h) for h in sorted(set(horizons))}
    vix = vix_at_closes(arch)
    scenarios = [_historical(w, arch, vix, proxies[w.horizon]) for w in windows.values()]
    scenarios.sort(key=_severity)
    span = (dates[lo].astype(dt.date), dates[hi - 1].astype(dt.date))
    return StressSet(
        name=name,
        version=version,
        scenarios=tuple(scenarios),
        scaling="beta",
        description=(
            f"The {count} largest non-overlapping S&P 500 and NASDAQ moves over "
            f"{', '.join(str(h) for h in horizons)} trading days, {span[0]} to {span[1]}"
        ),
        params={
            "data": DATA_SOURCE,
            "vix": VIX_SOURCE,
            "market": MARKET,
            "first": span[0],
            "last": span[1],
            "count": count,
            "horizons": list(horizons),
            "vol_proxy": {str(h): p.document() for h, p in proxies.items()},
        },
    )


def _historical(w: _Window, arch: ArchSeries, vix: FloatArray, proxy: VolProxy) -> StressScenario:
    hist = arch.history
    i, j = w.first, w.first + w.horizon - 1
    log_move = {u: float(hist.column(u)[i : j + 1].sum()) for u in SERIES}
    start, end = hist.dates[i].astype(dt.date), hist.dates[j].astype(dt.date)
    if i >= 1 and np.isfinite(vix[i - 1]) and np.isfinite(vix[j]):
        vol = float(vix[j] / vix[i - 1] - 1.0)
        anchor = hist.dates[i - 1].astype(dt.date)
        vol_source = f"VIX {vix[i - 1]:g} on {anchor} to {vix[j]:g} on {end}"
    else:
        vol = proxy.vol_shock(log_move[MARKET])
        vol_source = proxy.describe()
    shocks = {u: Shock(float(np.expm1(m)), vol) for u, m in log_move.items()}
    window = f"{start}" if start == end else f"{start}/{end}"
    return StressScenario(
        label=f"hist:{w.horizon}d:{window}",
        market=shocks[MARKET],
        named=shocks,
        start=start,
        end=end,
        horizon_days=w.horizon,
        source=f"{DATA_SOURCE}: close before {start} to close of {end}",
        vol_source=vol_source,
        note="; ".join(w.ranks),
    )


def _severity(s: StressScenario) -> tuple[int, bool, float]:
    """Horizon, then falls before rises, each largest first."""
    m = s.market.spot if s.market is not None else 0.0
    return (s.horizon_days, m >= 0, -abs(m))


@dataclass(frozen=True, slots=True)
class PublishedShock:
    """One published S&P 500 move: relative, close to close over ``start``..``end``."""

    label: str
    spot: float
    start: dt.date | None
    end: dt.date | None
    horizon_days: int
    note: str


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


PUBLISHED_SHOCKS: tuple[PublishedShock, ...] = (
    PublishedShock("pub:1987-10-19", -0.205, _day("1987-10-19"), _day("1987-10-19"), 1,
                   "Black Monday"),
    PublishedShock("pub:1987-10-26", -0.083, _day("1987-10-26"), _day("1987-10-26"), 1, ""),
    PublishedShock("pub:2008-09-29", -0.088, _day("2008-09-29"), _day("2008-09-29"), 1, ""),
    PublishedShock("pub:2008-10-13", 0.115, _day("2008-10-13"), _day("2008-10-13"), 1, ""),
    PublishedShock("pub:2008-10-15", -0.0903, _day("2008-10-15"), _day("2008-10-15"), 1, ""),
    PublishedShock("pub:2008-12-01", -0.089, _day("2008-12-01"), _day("2008-12-01"), 1, ""),
    PublishedShock("pub:2020-03-09", -0.076, _day("2020-03-09"), _day("2020-03-09"), 1, ""),
    PublishedShock("pub:2020-03-16", -0.12, _day("2020-03-16"), _day("2020-03-16"), 1, ""),
    PublishedShock("pub:2020-02-20/2020-03-23", -0.34, _day("2020-02-20"), _day("2020-03-23"),
                   23, "peak to trough: the close of 19 Feb to the close of 23 Mar 2020"),
    PublishedShock("pub:cftc-2019-reverse-stress", -0.25, None, None, 1,
                   "CFTC supervisory reverse stress test (2019): 5x the Lehman-day moves, 25% "
                   "in stock index futures; a reference point, not a day (taken as a fall)"),
)  # fmt: skip
"""The S&P 500 moves of ``margin-worked-examples.md`` §5, as published."""


def published_set(
    *, name: str = "published", version: str = "1", arch: ArchSeries | None = None
) -> StressSet:
    """:data:`PUBLISHED_SHOCKS` as a stress set, scaling ``"beta"``, vol shocks by the proxy
    (:class:`VolProxy`) for each shock's horizon, calibrated on ``arch``."""
    arch = arch or load_arch_series()
    proxies = {h: calibrate_vol_proxy(arch, h) for h in {p.horizon_days for p in PUBLISHED_SHOCKS}}
    scenarios = []
    for p in PUBLISHED_SHOCKS:
        proxy = proxies[p.horizon_days]
        vol = proxy.vol_shock(float(np.log1p(p.spot)))
        scenarios.append(
            StressScenario(
                label=p.label,
                market=Shock(p.spot, vol),
                start=p.start,
                end=p.end,
                horizon_days=p.horizon_days,
                source=f"{SECTION_5}: S&P 500",
                vol_source=proxy.describe(),
                note=p.note,
            )
        )
    return StressSet(
        name=name,
        version=version,
        scenarios=tuple(scenarios),
        scaling="beta",
        description=f"Published S&P 500 shocks ({SECTION_5}) and the CFTC 2019 reverse stress",
        params={
            "data": SECTION_5,
            "market": MARKET,
            "vol_proxy": {str(h): p.document() for h, p in sorted(proxies.items())},
        },
    )
