"""The back-test run: each day's margin against the P&L its positions realised over the
margin period of risk, for several models side by side, on one incremental engine.

Conventions
-----------
* **Days.** The window is a run of business days ``d`` of the book's price history (the
  dates its returns end on). The horizon ``h`` (the margin period of risk, business days)
  is counted in history rows: the realised P&L of day ``d`` runs from ``d``'s close to the
  close ``h`` rows later, so every day of the window needs ``h`` closes after it.
* **Market of day d.** Spots are the history's closes, rebuilt from its returns and
  anchored at the book's spots on the history's last date
  (:meth:`~marginflow.core.history.ReturnHistory.closes`). The history holds no implied
  vols, dividends or rates: the book's ATM vols, skews, dividend yields and rates are the
  market of every day d (the smile sticky in moneyness, as the revaluation takes it).
* **Implied vols over the horizon** (``realised_vols``). ``model`` (the default): the
  underlying's whole smile at d+h is d's scaled by ``1 + v``, with ``v`` the vol shock the
  scenario generator's own vol map gives the realised window of returns d+1..d+h
  (:func:`~marginflow.scenarios.fhs.realised_vol_shocks`: the EWMA's log change and the
  standardised return, the fitted :class:`~marginflow.scenarios.ewma.VolResponse`). A
  scenario drawn from that very window moves vols identically, so margin and realised P&L
  move vols by one rule and the back-test tests the spot moves and that rule. ``held``:
  vols do not move over the horizon, the realised P&L has no vega part, and a long-vega
  account's loss in a fall (when the margin's scenarios raise vols) is overstated against
  its margin.
* **Margin of day d** (no look-ahead). Instruments are resolved on ``d`` (times to expiry
  from ``d``), scenarios are generated from the history up to and including ``d`` only
  (:meth:`~marginflow.engine.settings.MarginSettings.scenarios` on the history cut at ``d``,
  to the bit; made by :meth:`~marginflow.engine.settings.MarginSettings.daily_scenarios`,
  which filters the history once for the whole window),
  and the model's parameters are those in force on ``d`` (:class:`ParameterChange`). A
  price after ``d`` cannot reach ``d``'s margin (tested by shocking one).
* **Realised P&L of day d.** Full revaluation of the day's positions:
  ``P&L_a(d) = Σ_j q_aj(d) · (V_j(d+h) − V_j(d))`` with ``V_j(t)`` instrument ``j``'s value
  (multiplier included) at the market of ``t`` (vols at d+h as above) with its time to
  expiry from ``t`` (``realised_pnl="full"``, the default) or from d (``"clean"``, the
  hypothetical P&L of the move alone). The margin's scenarios are instantaneous (times to
  expiry held), so a full P&L holds the time decay over the horizon that the margin does
  not, and a clean one tests the scenarios on their own terms: options age by the
  ``h`` days (calendar days between the two dates, ACT/365). European options at
  Black-Scholes-Merton, American ones at the pricing core's American pricer (ALO), stocks at
  spot. An option that expires inside the period is worth its intrinsic value at ``d+h``'s
  close (its time to expiry floored at 0, as :class:`~marginflow.core.book.Instruments`
  resolves it). Series expired by ``d`` are not held on ``d``. One pricing per date for every
  instrument held at the book's smile (each ``V(t)`` serves ``t`` as a start and, with held
  vols, as an end), and one per window end at its moved vols.
* **Breach** (:func:`~marginflow.backtest.statistics.exceptions`): ``−P&L > margin``.
  Accounts and aggregates: a member's margin and P&L are the sums of its accounts', the
  firm's the sums of every account's; each aggregate is a breach series of its own.
* **Static** positions are the book's on every day; **dynamic** ones are given per day
  (the store's position history, read by :mod:`marginflow.app.backtest`).
* **Models.** ``es`` at each confidence given (one revaluation serves them all:
  :meth:`~marginflow.engine.state.MarginEngine.margins_under`), ``span`` and ``pm`` (the
  scenario-grid models of :mod:`marginflow.engine.grid_margins` on the day's market). The
  grid models state no confidence; their statistics use :data:`GRID_CONFIDENCE`. SPAN is
  tested on its risk requirement before the net option value credit (:func:`_grid_cover`).

Speed: one :class:`~marginflow.engine.state.MarginEngine` serves the whole window; each day
one :meth:`~marginflow.engine.state.MarginEngine.roll` moves it to the day's date, market and
scenarios in a single revaluation whose premium grids come from the engine's cache (they
depend on the option's expiry, rate, dividend and ATM vol octave, not on the spot or the
scenarios). The book is cut to the instruments and underlyings the positions hold.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp

from marginflow.core.batch import FloatArray
from marginflow.core.book import Book, InstrumentKind, Instruments, Market, Positions
from marginflow.core.errors import ConfigurationError, ValidationError
from marginflow.core.history import DateArray
from marginflow.engine.grid_margins import grid_margin_book
from marginflow.engine.revaluation import GridCache, option_batch
from marginflow.engine.settings import MarginSettings, build_engine
from marginflow.engine.state import MarginEngine
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.margin.models import parse_params
from marginflow.margin.portfolio_margin import PortfolioMarginResult
from marginflow.margin.span import SpanResult
from marginflow.pricing.api import price
from marginflow.scenarios.build import DailyScenarios
from marginflow.scenarios.ewma import DEFAULT_WARMUP
from marginflow.scenarios.fhs import realised_vol_shocks
from marginflow.scenarios.scenario_set import ScenarioSet

Mode = Literal["static", "dynamic"]
RealisedVols = Literal["model", "held"]
RealisedPnl = Literal["full", "clean"]
REALISED_PNL: tuple[RealisedPnl, ...] = ("full", "clean")
"""What the realised P&L holds: ``full`` (the default) options aged by the horizon, the
P&L a liquidation over it would see; ``clean`` (hypothetical) times to expiry held at the
day's, the instantaneous move the margin's scenarios model: no time decay."""
REALISED_VOLS: tuple[RealisedVols, ...] = ("model", "held")
"""How implied vols move in the realised P&L: ``model`` by the scenarios' own vol map applied
to the realised window (the default), ``held`` not at all (the book's smile every day)."""
MODELS = ("es", "span", "pm")
GRID_CONFIDENCE = 0.99
"""The coverage the scenario-grid models are tested against: their scan ranges are set for
about 99% of moves (NSE's 3-3.5 σ, the TIMS ranges), and they state no level of their own."""

DEFAULT_DAYS = 250

MSG_UNKNOWN_MODEL = "unknown model {model!r}; known: es, span, pm"
MSG_NO_HISTORY = "the book has no price history (history.csv) to back-test over"
MSG_WINDOW_TOO_LONG = (
    "{days} days do not fit: the history ({source}: {count} returns, {first} to {last}) leaves "
    "room for at most {room} days with a {h}-day horizon after {need} returns of look-back"
)
MSG_DAY_OUTSIDE = (
    "{option} {day}: {reason} (back-testable days: {first} to {last}, with a {h}-day horizon "
    "and {need} returns of look-back)"
)
MSG_START_AFTER_END = "--start {start} is after --end {end}"
MSG_NO_DAYS = "no business day of the history lies in {start} to {end}"


@dataclass(frozen=True, slots=True)
class Column:
    """One model of the comparison: ``model`` (es, span or pm) at ``confidence`` (ES: its
    confidence level; grid models: :data:`GRID_CONFIDENCE`, the level tested)."""

    model: str
    confidence: float

    @property
    def key(self) -> str:
        """``es@0.99``, ``span``, ``pm``: the column's name in JSON and exports."""
        return f"es@{self.confidence:g}" if self.model == "es" else self.model

    @property
    def label(self) -> str:
        """``ES 99%``, ``ES 99.5%``, ``SPAN``, ``PM``: the column's name in tables."""
        if self.model == "es":
            return "ES " + f"{self.confidence * 100:.10g}%"
        return self.model.upper()


def columns_of(models: Sequence[str], confidences: Sequence[float], default: float) -> list[Column]:
    """The comparison's columns: ``es`` once per confidence (``default`` when none is
    given), each grid model once; in the order given, repeats dropped. Unknown models and
    confidences outside (0.5, 1) are refused, naming them."""
    out: list[Column] = []
    for model in models or ("es",):
        if model not in MODELS:
            raise ConfigurationError(MSG_UNKNOWN_MODEL.format(model=model))
        if model == "es":
            for c in confidences or (default,):
                if not 0.5 < c < 1.0:
                    raise ConfigurationError(f"confidence must be in (0.5, 1), got {c!r}")
                out.append(Column("es", float(c)))
        else:
            out.append(Column(model, GRID_CONFIDENCE))
    unique: list[Column] = []
    for col in out:
        if col not in unique:
            unique.append(col)
    return unique


@dataclass(frozen=True, slots=True)
class ParameterChange:
    """An expected-shortfall parameter set to ``value`` from ``day`` on (inclusive): one
    approved change from the store's audit of risk-parameter changes."""

    day: dt.date
    parameter: str
    value: str


@dataclass(frozen=True, slots=True)
class PositionPath:
    """Positions of the book's accounts through the window: ``matrices[k]`` is the
    accounts × instruments holdings (the book's instruments) at the close of day ``k``;
    a single matrix holds on every day (static)."""

    mode: Mode
    matrices: tuple[sp.csr_matrix, ...]

    def on(self, k: int) -> sp.csr_matrix:
        return self.matrices[0 if len(self.matrices) == 1 else k]


@dataclass(frozen=True, slots=True)
class Window:
    """History row indices of the window's days (``rows``) and the horizon h: day ``k`` is
    ``history.dates[rows[k]]`` and its P&L ends at ``history.dates[rows[k] + h]``."""

    rows: np.ndarray
    horizon: int


def choose_window(
    book: Book,
    settings: MarginSettings,
    *,
    days: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> Window:
    """The window: the last ``days`` (default :data:`DEFAULT_DAYS`) business days of the
    history that leave ``h = settings.mpor`` closes after them, or the business days from
    ``start`` to ``end`` (either may be left out: the first / last back-testable day).

    Refused with one line naming the option and the back-testable range: a window longer
    than the history allows, a day whose scenarios would need history before its start
    (``lookback`` + the EWMA's warm-up), a day without ``h`` closes after it.
    """
    hist = book.history
    if hist is None:
        raise ConfigurationError(MSG_NO_HISTORY)
    h, count = settings.mpor, len(hist)
    need = settings.lookback + DEFAULT_WARMUP
    first_row, last_row = need - 1, count - 1 - h
    dates = hist.dates
    words = {"h": h, "need": need}
    if days is not None and (start is not None or end is not None):
        raise ConfigurationError("--days and --start/--end both choose the window: give one")
    if start is None and end is None:
        n = DEFAULT_DAYS if days is None else days
        room = max(last_row - first_row + 1, 0)
        if n < 1 or n > room:
            raise ConfigurationError(
                MSG_WINDOW_TOO_LONG.format(
                    days=n, source=hist.source, count=count, first=dates[0] if count else "-",
                    last=dates[-1] if count else "-", room=room, **words,
                )
            )  # fmt: skip
        return Window(np.arange(last_row - n + 1, last_row + 1, dtype=np.intp), h)
    if last_row < first_row:
        raise ConfigurationError(
            MSG_WINDOW_TOO_LONG.format(
                days=1, source=hist.source, count=count, first=dates[0], last=dates[-1],
                room=0, **words,
            )
        )  # fmt: skip
    lo, hi = dates[first_row], dates[last_row]
    if start is not None and end is not None and start > end:
        raise ConfigurationError(MSG_START_AFTER_END.format(start=start, end=end))
    for option, day in (("--start", start), ("--end", end)):
        if day is None:
            continue
        d = np.datetime64(day, "D")
        if d < lo:
            reason = f"its scenarios need {need} returns of history up to it"
        elif d > hi:
            reason = f"its {h}-day P&L needs closes after the history's last ({dates[-1]})"
        else:
            continue
        raise ConfigurationError(
            MSG_DAY_OUTSIDE.format(
                option=option, day=day, reason=reason, first=lo, last=hi, **words
            )
        )
    s = np.datetime64(start, "D") if start is not None else lo
    e = np.datetime64(end, "D") if end is not None else hi
    rows = np.flatnonzero((dates >= s) & (dates <= e)).astype(np.intp)
    if rows.size == 0:
        raise ConfigurationError(MSG_NO_DAYS.format(start=s, end=e))
    return Window(rows, h)


@dataclass
class ModeResult:
    """One position mode's series: ``pnl[k, a]`` the realised P&L of account ``a`` on day
    ``k`` and ``margin[column.key][k, a]`` its margin under each column (currency)."""

    mode: Mode
    pnl: FloatArray
    margin: dict[str, FloatArray]
    held: np.ndarray
    """``held[k, a]``: whether account ``a`` held any position on day ``k``."""


@dataclass
class BacktestResult:
    """The series of a back-test: days, accounts, columns and one :class:`ModeResult` per
    position mode; ``timings`` by stage (seconds); ``notes`` say what was left out."""

    days: DateArray
    ends: DateArray
    horizon: int
    accounts: tuple[str, ...]
    members: tuple[str, ...]
    account_member: np.ndarray
    columns: tuple[Column, ...]
    modes: tuple[ModeResult, ...]
    settings: MarginSettings
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    instruments: int = 0
    scenarios: int = 0
    realised_vols: RealisedVols = "model"
    realised_pnl: RealisedPnl = "full"

    def mode(self, mode: Mode) -> ModeResult:
        for m in self.modes:
            if m.mode == mode:
                return m
        raise KeyError(mode)


Progress = Callable[[int, int], None]


def run_backtest(
    book: Book,
    *,
    window: Window,
    settings: MarginSettings,
    columns: Sequence[Column],
    paths: Sequence[PositionPath],
    parameters: Sequence[ParameterChange] = (),
    fixed: frozenset[str] = frozenset(),
    realised_vols: RealisedVols = "model",
    realised_pnl: RealisedPnl = "full",
    progress: Progress | None = None,
    workers: int = 1,
) -> BacktestResult:
    """Back-test ``book``'s accounts over ``window`` (see the module docstring).

    ``settings`` are the ES model and scenario settings (``settings.mpor`` is the horizon);
    ``parameters`` the ES parameter changes in force from their day on, applied over each ES
    column's model except the parameters in ``fixed`` (``{"confidence"}`` when the columns'
    confidences were given: a column's confidence then holds on every day). ``paths`` hold
    the positions per mode. ``realised_vols`` (:data:`REALISED_VOLS`) says how implied vols
    move in the realised P&L, ``realised_pnl`` (:data:`REALISED_PNL`) whether options age
    over the horizon. ``progress(done, total)`` is called after each day. ``workers`` > 1
    back-tests that many contiguous blocks of the window's days in processes of their own
    and concatenates them (:mod:`marginflow.backtest.parallel`: the same series; stage
    timings are then summed over the workers).
    """
    if book.history is None:
        raise ConfigurationError(MSG_NO_HISTORY)
    if window.horizon != settings.mpor:
        raise ConfigurationError("the window's horizon differs from the margin period of risk")
    if not paths:
        raise ConfigurationError("no positions to back-test")
    if workers < 1:
        raise ConfigurationError(f"workers must be >= 1, got {workers}")
    if workers > 1 and window.rows.size > 1:
        from marginflow.backtest.parallel import run_in_workers

        return run_in_workers(
            run_backtest, window=window, paths=list(paths), workers=workers,
            progress=progress, book=book, settings=settings, columns=columns,
            parameters=parameters, fixed=fixed, realised_vols=realised_vols,
            realised_pnl=realised_pnl,
        )  # fmt: skip
    timings: dict[str, float] = {}
    cut, paths = _held_only(book, paths)
    hist = cut.history
    assert hist is not None  # kept by _held_only
    dates, h, rows = hist.dates, window.horizon, window.rows
    closes = hist.closes(cut.market.spot)  # row t + 1 is the close of dates[t]
    n_days, n_acc = rows.size, len(cut.positions.accounts)
    modes = tuple(
        ModeResult(
            p.mode,
            np.zeros((n_days, n_acc)),
            {c.key: np.zeros((n_days, n_acc)) for c in columns},
            np.zeros((n_days, n_acc), dtype=bool),
        )
        for p in paths
    )
    es_models = _EsModels(settings, columns, parameters, fixed)
    values = _Values(cut, closes, dates, settings.revaluation_settings().vol_floor)
    # rounded to float32 as a scenario set stores its shocks, so that a scenario drawn from
    # a window and that window's realised P&L move vols by the same factor to the bit
    vol_scale = (
        1.0
        + realised_vol_shocks(hist, rows + h, horizon_days=h, decay=settings.decay)
        .astype(np.float32)
        .astype(np.float64)
        if realised_vols == "model"
        else None
    )
    engine: MarginEngine | None = None
    scenarios_count = 0
    static = all(len(p.matrices) == 1 for p in paths)
    daily = settings.daily_scenarios(cut) if any(c.model == "es" for c in columns) else None
    for k, t in enumerate(rows.tolist()):
        day = dates[t].astype(dt.date)
        market = replace(cut.market, valuation_date=day, spot=closes[t + 1].copy())
        held = [_unexpired(p.on(k), cut.instruments, day) for p in paths]
        stacked = sp.csr_matrix(sp.vstack(held, format="csr"))
        if daily is not None:
            with _timed(timings, "scenarios"):
                scen = _scenarios(daily, day, t)
            scenarios_count = scen.n_scenarios
            with _timed(timings, "margin"):
                if engine is None:
                    first = _day_book(cut, market, stacked, len(paths))
                    engine = build_engine(first, settings, scenarios=scen)
                    # a day's grids serve no other day (times to expiry move with the
                    # date): none kept, no nodes priced ahead for moves within the day
                    engine.grids = GridCache(max_nodes=0, margin_nodes=0)
                else:
                    engine.roll(day, market=market, scenarios=scen)
                    if not static:  # static holdings change only by expiry, as the roll's
                        _set_positions(engine, stacked)
                for c in columns:
                    if c.model == "es":
                        margin = engine.margins_under(es_models.model(c, day))
                        for i, m in enumerate(modes):
                            m.margin[c.key][k] = margin[i * n_acc : (i + 1) * n_acc]
        for c in columns:
            if c.model == "es":
                continue
            with _timed(timings, "grid models"):
                for i, m in enumerate(modes):
                    g = _day_book(cut, market, held[i], 1)
                    m.margin[c.key][k] = _grid_cover(grid_margin_book(c.model, g))
        with _timed(timings, "realised P&L"):
            end = values.at(
                t + h,
                None if vol_scale is None else vol_scale[k],
                expiry_from=t if realised_pnl == "clean" else None,
            )
            change = end - values.at(t)
            for i, m in enumerate(modes):
                m.pnl[k] = held[i] @ change
                m.held[k] = np.asarray(abs(held[i]).sum(axis=1)).ravel() > 0
        if progress is not None:
            progress(k + 1, n_days)
    if engine is not None:
        timings["premium grids"] = engine.timings.get("eep_grid", 0.0)
        timings["kernel"] = engine.timings.get("kernel", 0.0)
        timings["revaluation"] = timings["premium grids"] + timings["kernel"]
        timings["margin"] = timings.get("margin", 0.0) - timings["revaluation"]
    timings["pricing"] = values.seconds
    p = cut.positions
    return BacktestResult(
        days=dates[rows],
        ends=dates[rows + h],
        horizon=h,
        accounts=p.accounts,
        members=p.members,
        account_member=p.account_member,
        columns=tuple(columns),
        modes=modes,
        settings=settings,
        timings=timings,
        notes=list(es_models.notes),
        instruments=len(cut.instruments),
        scenarios=scenarios_count,
        realised_vols=realised_vols,
        realised_pnl=realised_pnl,
    )


def _grid_cover(result: SpanResult | PortfolioMarginResult) -> FloatArray:
    """What a grid model holds against a loss: portfolio margin's requirement; SPAN's risk
    before the net option value is taken off (the long options' value is the position's
    own, whose fall the realised P&L already counts: netting it would count it twice)."""
    cover: FloatArray = result.risk if isinstance(result, SpanResult) else result.margin
    return cover


@contextmanager
def _timed(sink: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        sink[stage] = sink.get(stage, 0.0) + time.perf_counter() - t0


def _scenarios(daily: DailyScenarios, day: dt.date, t: int) -> ScenarioSet:
    """Day ``t``'s scenarios from the history up to and including it (no look-ahead); a
    refusal names the day."""
    try:
        return daily.on(t)
    except (ValidationError, ConfigurationError) as exc:
        raise ConfigurationError(f"scenarios of {day}: {exc}") from None


def _day_book(book: Book, market: Market, matrix: sp.csr_matrix, copies: int) -> Book:
    """``book`` on ``market``'s day holding ``matrix`` (``copies`` blocks of the accounts:
    one per position mode, so one engine margins every mode)."""
    p = book.positions
    positions = Positions(
        accounts=tuple(f"{i}:{a}" for i in range(copies) for a in p.accounts)
        if copies > 1
        else p.accounts,
        members=p.members,
        account_member=np.tile(p.account_member, copies).astype(np.int32),
        matrix=matrix,
        account_type=p.account_type * copies,
        member_names=p.member_names,
    )
    return replace(
        book,
        instruments=book.instruments.resolved(market.valuation_date),
        market=market,
        positions=positions,
    )


def _set_positions(engine: MarginEngine, target: sp.csr_matrix) -> None:
    """Bring the engine's holdings to ``target`` (accounts × instruments) by trades."""
    current = engine.current_book().positions.matrix
    delta = sp.csr_matrix(target - current)
    delta.eliminate_zeros()
    if delta.nnz == 0:
        return
    accounts, ids = engine.book.positions.accounts, engine.book.instruments.ids
    changes: dict[str, dict[str, float]] = {}
    for a in np.flatnonzero(np.diff(delta.indptr)).tolist():
        lo, hi = delta.indptr[a], delta.indptr[a + 1]
        changes[accounts[a]] = {
            ids[j]: float(q)
            for j, q in zip(delta.indices[lo:hi].tolist(), delta.data[lo:hi].tolist(), strict=True)
        }
    engine.apply_trades(changes)


def _unexpired(matrix: sp.csr_matrix, instruments: Instruments, day: dt.date) -> sp.csr_matrix:
    """``matrix`` without positions in series expired before ``day`` (they are not held)."""
    gone = instruments.resolved(day).expired()
    if not gone[matrix.indices].any():
        return matrix
    out = matrix.copy()
    out.data[gone[out.indices]] = 0.0
    out.eliminate_zeros()
    return sp.csr_matrix(out)


def _held_only(book: Book, paths: Sequence[PositionPath]) -> tuple[Book, list[PositionPath]]:
    """The book cut to the instruments some path holds on some day (and their underlyings),
    and the paths on the cut book's columns."""
    n = len(book.instruments)
    used = np.zeros(n, dtype=bool)
    for p in paths:
        for m in p.matrices:
            if m.shape != (len(book.positions.accounts), n):
                raise ValidationError("positions", f"{p.mode} positions have shape {m.shape}")
            used[m.indices[m.data != 0]] = True
    keep_u = np.unique(book.instruments.underlying[used])
    if keep_u.size == 0:  # nothing held at all: keep one underlying so the engine has one
        keep_u = np.zeros(1, dtype=np.int64)
    cut = book.restricted([book.underlyings.ids[u] for u in keep_u.tolist()])
    # restricted keeps every instrument of those underlyings in book order: map old columns
    old_of_cut = np.flatnonzero(np.isin(book.instruments.underlying, keep_u))
    in_cut = used[old_of_cut]
    cols = np.flatnonzero(in_cut).astype(np.intp)
    ins = cut.instruments.take(cols)
    select = old_of_cut[cols]
    new_paths = [
        PositionPath(p.mode, tuple(sp.csr_matrix(m[:, select]) for m in p.matrices)) for p in paths
    ]
    cut = replace(
        cut,
        instruments=ins,
        positions=cut.positions.with_matrix(new_paths[0].matrices[0]),
    )
    return cut, new_paths


class _Values:
    """Every instrument's value (multiplier included) at the close of history row ``t``: the
    market of that day, times to expiry from it. With the book's smile, priced once per row
    (it serves the row as a window's start and as one's end); with vols scaled per underlying
    (a window's realised vol move), priced for that window alone."""

    def __init__(self, book: Book, closes: FloatArray, dates: DateArray, vol_floor: float) -> None:
        self.book, self.closes, self.dates, self.vol_floor = book, closes, dates, vol_floor
        self._cache: dict[int, FloatArray] = {}
        self.seconds = 0.0

    def at(
        self, t: int, vol_scale: FloatArray | None = None, *, expiry_from: int | None = None
    ) -> FloatArray:
        """Values at row ``t``; ``vol_scale[u]`` multiplies underlying ``u``'s whole smile,
        floor included, as a scenario's vol shock does (``1 + vol_shock``); times to expiry
        from row ``expiry_from``'s date (default ``t``'s: a clean P&L holds them)."""
        own = vol_scale is None and expiry_from is None  # the row's own market: cached
        found = self._cache.get(t) if own else None
        if found is not None:
            return found
        t0 = time.perf_counter()
        day = self.dates[t if expiry_from is None else expiry_from].astype(dt.date)
        ins = self.book.instruments.resolved(day)
        market = replace(self.book.market, valuation_date=day, spot=self.closes[t + 1])
        out = market.spot[ins.underlying] * ins.multiplier
        opt = np.flatnonzero(ins.kind != InstrumentKind.STOCK).astype(np.intp)
        if opt.size:
            batch = option_batch(ins, market, opt, self.vol_floor)
            if vol_scale is not None:
                batch = replace(batch, vol=batch.vol * vol_scale[ins.underlying[opt]])
            out[opt] = price(batch) * ins.multiplier[opt]
        if own:
            self._cache = {k: v for k, v in self._cache.items() if k > t - 64}  # bounded
            self._cache[t] = out
        self.seconds += time.perf_counter() - t0
        return out


class _EsModels:
    """Each ES column's model on a day: the settings' model at the column's confidence,
    with the parameter changes in force that day (except the ``fixed`` ones)."""

    def __init__(
        self,
        settings: MarginSettings,
        columns: Sequence[Column],
        changes: Sequence[ParameterChange],
        fixed: frozenset[str],
    ) -> None:
        self.base = {"apc": settings.apc, **parse_params(settings.params)}
        self.changes = sorted(changes, key=lambda c: c.day)
        self.fixed = fixed
        self.notes: list[str] = []
        self._cache: dict[tuple[Column, tuple[tuple[str, str], ...]], ExpectedShortfallModel] = {}
        self._refused: set[ParameterChange] = set()

    def model(self, column: Column, day: dt.date) -> ExpectedShortfallModel:
        values = {**self.base, "confidence": repr(column.confidence)}
        for change in self.changes:
            if change.day > day or change.parameter in self.fixed or change in self._refused:
                continue
            trial = {**values, change.parameter: change.value}
            try:
                ExpectedShortfallModel.from_params(trial)
            except (ConfigurationError, ValueError, TypeError) as exc:
                # as the stream's calculator refuses it: not applied, and said
                self._refused.add(change)
                self.notes.append(
                    f"parameter change {change.parameter}={change.value} of {change.day} not "
                    f"applied: {exc}"
                )
                continue
            values = trial
        key = (column, tuple(sorted(values.items())))
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = ExpectedShortfallModel.from_params(values)
        return found


def sample_accounts(book: Book, accounts: int | Sequence[str] | None, *, seed: int = 0) -> Book:
    """The book of some of its accounts: ``None`` all, a count ``n`` a random sample of n
    (the same for a seed, in book order), or the accounts named (unknown ones refused,
    naming the first). Instruments, market and history are kept whole."""
    p = book.positions
    if accounts is None:
        return book
    if isinstance(accounts, int):
        if accounts < 1:
            raise ConfigurationError(f"--accounts must be >= 1, got {accounts}")
        if accounts >= len(p.accounts):
            return book
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(p.accounts), accounts, replace=False)).astype(np.intp)
    else:
        index = {a: i for i, a in enumerate(p.accounts)}
        missing = [a for a in accounts if a not in index]
        if missing:
            raise ConfigurationError(f"--accounts: unknown account {missing[0]!r}")
        rows = np.array(sorted({index[a] for a in accounts}), dtype=np.intp)
    positions = Positions(
        accounts=tuple(p.accounts[i] for i in rows),
        members=p.members,
        account_member=p.account_member[rows],
        matrix=sp.csr_matrix(p.matrix[rows]),
        account_type=tuple(p.account_type[i] for i in rows),
        member_names=p.member_names,
    )
    return replace(book, positions=positions)


def static_path(book: Book) -> PositionPath:
    """The book's positions held on every day."""
    return PositionPath("static", (sp.csr_matrix(book.positions.matrix),))


__all__ = [
    "DEFAULT_DAYS",
    "GRID_CONFIDENCE",
    "MODELS",
    "REALISED_PNL",
    "REALISED_VOLS",
    "BacktestResult",
    "Column",
    "ModeResult",
    "ParameterChange",
    "PositionPath",
    "RealisedPnl",
    "RealisedVols",
    "Window",
    "choose_window",
    "columns_of",
    "run_backtest",
    "sample_accounts",
    "static_path",
]
