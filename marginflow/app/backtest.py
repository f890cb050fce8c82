"""Use case: back-test a book's margins (``marginflow backtest``): the window, the sample of
accounts, the positions (static, and dynamic from the store's position history), the
model parameters as the store's audit of risk-parameter changes set them, the run
(:mod:`marginflow.backtest.run`), the coverage table (:mod:`marginflow.backtest.coverage`),
the HTML report and the day × account export.

Store conventions: a day ``d`` ends at midnight UTC after it. The positions of ``d`` are
each (account, instrument)'s latest stored quantity with an event time before that; a
risk-parameter change is in force on ``d`` when its effective time is before it. Accounts
with no stored change by then hold nothing (margin 0, P&L 0).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import scipy.sparse as sp

from marginflow.app.report import Report
from marginflow.backtest.coverage import CoverageRow, coverage_table, worst_accounts
from marginflow.backtest.run import (
    REALISED_PNL,
    REALISED_VOLS,
    BacktestResult,
    Column,
    Mode,
    ParameterChange,
    PositionPath,
    Progress,
    RealisedPnl,
    RealisedVols,
    Window,
    choose_window,
    columns_of,
    run_backtest,
    sample_accounts,
    static_path,
)
from marginflow.core.book import Book
from marginflow.core.errors import ConfigurationError
from marginflow.engine.settings import MarginSettings
from marginflow.io.book import LoadedBook
from marginflow.store import Database

ModeChoice = Literal["auto", "static", "dynamic", "both"]
MODE_CHOICES: tuple[ModeChoice, ...] = ("auto", "static", "dynamic", "both")
DAY_NS = 86_400 * 1_000_000_000

MSG_DYNAMIC_NEEDS_DB = (
    "--mode {mode} needs --database: dynamic positions come from the stream's position "
    "history in the store"
)
MSG_NO_POSITION_HISTORY = "dynamic back-test unavailable: {url} holds no position history"
MSG_HISTORY_AFTER = (
    "dynamic back-test unavailable: the position history in {url} starts on {first}, after "
    "the window's last day {last}"
)


@dataclass
class Backtest:
    """A back-test done: the series, the coverage table and what the run left out."""

    result: BacktestResult
    rows: list[CoverageRow]
    book_name: str
    notes: list[str] = field(default_factory=list)

    def worst(self, top: int = 5) -> list[CoverageRow]:
        return worst_accounts(self.rows, top=top)

    def to_json(self, *, accounts: bool = True) -> dict[str, Any]:
        """The JSON document of ``marginflow backtest --json`` (schema in docs/backtest.md)."""
        r = self.result
        return {
            "book": self.book_name,
            "window": {
                "start": str(r.days[0]),
                "end": str(r.days[-1]),
                "days": int(r.days.size),
                "last_pnl_date": str(r.ends[-1]),
            },
            "horizon_days": r.horizon,
            "realised_vols": r.realised_vols,
            "realised_pnl": r.realised_pnl,
            "settings": r.settings.to_json(),
            "columns": [
                {"key": c.key, "model": c.model, "confidence": c.confidence, "label": c.label}
                for c in r.columns
            ],
            "modes": [m.mode for m in r.modes],
            "accounts": len(r.accounts),
            "instruments": r.instruments,
            "scenarios_per_day": r.scenarios,
            "coverage": [row.to_json() for row in self.rows if accounts or row.level != "account"],
            "worst_accounts": [row.to_json() for row in self.worst()],
            "timings": r.timings,
            "notes": self.notes,
        }


_C = TypeVar("_C", bound=str)


def _choice(option: str, name: str, choices: tuple[_C, ...]) -> _C:
    """``name`` as one of ``choices`` (narrowed to their literal type), or a one-line
    refusal naming ``option``."""
    for choice in choices:
        if name == choice:
            return choice
    raise ConfigurationError(f"{option} must be one of {', '.join(choices)}, got {name!r}")


def mode_choice(mode: str) -> ModeChoice:
    """``mode`` as one of :data:`MODE_CHOICES`, or a one-line refusal."""
    return _choice("--mode", mode, MODE_CHOICES)


REALISED_VOLS_TEXT: dict[RealisedVols, str] = {
    "model": "moved by the scenarios' vol map over the realised window",
    "held": "held (the realised P&L has no vega part)",
}


def realised_vols_choice(name: str) -> RealisedVols:
    """``name`` as one of :data:`REALISED_VOLS`, or a one-line refusal."""
    return _choice("--realised-vols", name, REALISED_VOLS)


REALISED_PNL_TEXT: dict[RealisedPnl, str] = {
    "full": "options aged over the horizon (time decay included)",
    "clean": "clean: times to expiry held (the move alone, as the scenarios model it)",
}


def realised_pnl_choice(name: str) -> RealisedPnl:
    """``name`` as one of :data:`REALISED_PNL`, or a one-line refusal."""
    return _choice("--pnl", name, REALISED_PNL)


def backtest_book(
    loaded: LoadedBook,
    *,
    settings: MarginSettings,
    models: Sequence[str] = ("es",),
    confidences: Sequence[float] = (),
    accounts: int | Sequence[str] | None = None,
    days: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    mode: ModeChoice = "auto",
    database: Database | None = None,
    realised_vols: str = "model",
    realised_pnl: str = "full",
    progress: Progress | None = None,
    test_level: float = 0.95,
    book_name: str = "",
    workers: int = 1,
) -> Backtest:
    """Back-test ``loaded``'s book (see the module docstring). ``mode``: ``static`` (the
    book's positions every day), ``dynamic`` (the store's, needs ``database``), ``both``,
    or ``auto``: static, and dynamic too when a database with a position history covering
    the window is given (otherwise a note says why not). ``realised_vols``: ``model`` or
    ``held`` (:data:`~marginflow.backtest.run.REALISED_VOLS`); ``realised_pnl``: ``full``
    or ``clean`` (:data:`~marginflow.backtest.run.REALISED_PNL`). ``workers``: processes
    the window's days are split across (:func:`~marginflow.backtest.run.run_backtest`)."""
    mode = mode_choice(mode)
    vols = realised_vols_choice(realised_vols)
    pnl = realised_pnl_choice(realised_pnl)
    if mode in ("dynamic", "both") and database is None:
        raise ConfigurationError(MSG_DYNAMIC_NEEDS_DB.format(mode=mode))
    columns = columns_of(models, confidences, settings.confidence)
    book = sample_accounts(loaded.book, accounts)
    window = choose_window(book, settings, days=days, start=start, end=end)
    notes: list[str] = []
    paths = _paths(book, window, mode, database, notes)
    changes = parameter_changes(database) if database is not None else []
    result = run_backtest(
        book,
        window=window,
        settings=settings,
        columns=columns,
        paths=paths,
        parameters=changes,
        fixed=frozenset({"confidence"}) if confidences else frozenset(),
        realised_vols=vols,
        realised_pnl=pnl,
        progress=progress,
        workers=workers,
    )
    notes.extend(result.notes)
    if changes and not confidences:
        notes.append(
            "the ES column is labelled by --confidence's default; stored confidence changes "
            "apply from their day on, the statistics test the label's level"
        )
    rows = coverage_table(result, test_level=test_level)
    return Backtest(result, rows, book_name, notes)


def _paths(
    book: Book, window: Window, mode: ModeChoice, db: Database | None, notes: list[str]
) -> list[PositionPath]:
    paths = [] if mode == "dynamic" else [static_path(book)]
    if db is None or mode == "static":
        return paths
    try:
        paths.append(dynamic_path(db, book, window, notes))
    except ConfigurationError as exc:
        if mode != "auto":
            raise
        notes.append(str(exc))
    return paths


def day_ends_ns(days: np.ndarray) -> np.ndarray:
    """The end of each day (``datetime64[D]``): midnight UTC after it, in ns."""
    return (days.astype("datetime64[D]").astype(np.int64) + 1) * DAY_NS


def dynamic_path(db: Database, book: Book, window: Window, notes: list[str]) -> PositionPath:
    """The book's accounts' positions at each day's end from the store's position history;
    positions of accounts or in series the book does not have are left out, and counted in
    ``notes``. Refused (one line) when the store has no history or it starts after the
    window."""
    assert book.history is not None
    days = book.history.dates[window.rows]
    changes = db.position_history()
    if not changes:
        raise ConfigurationError(MSG_NO_POSITION_HISTORY.format(url=db.url))
    ends = day_ends_ns(days)
    first = dt.datetime.fromtimestamp(changes[0][4] / 1e9, dt.UTC).date()
    if changes[0][4] >= ends[-1]:
        raise ConfigurationError(MSG_HISTORY_AFTER.format(url=db.url, first=first, last=days[-1]))
    acc = {a: i for i, a in enumerate(book.positions.accounts)}
    ins = book.instruments.index()
    shape = (len(acc), len(ins))
    held: dict[tuple[int, int], float] = {}
    other_accounts: set[str] = set()
    other_series: set[str] = set()
    matrices = []
    at = 0
    for end in ends.tolist():
        while at < len(changes) and changes[at][4] < end:
            account, _, instrument, quantity, _ = changes[at]
            at += 1
            a, j = acc.get(account), ins.get(instrument)
            if a is None:
                other_accounts.add(account)
            elif j is None:
                other_series.add(instrument)
            elif quantity == 0:
                held.pop((a, j), None)
            else:
                held[(a, j)] = float(quantity)
        matrices.append(_csr(held, shape))
    if first > days[0].astype(dt.date):
        notes.append(
            f"the store's position history starts on {first}: dynamic accounts hold nothing "
            "before it"
        )
    if other_accounts:
        notes.append(
            f"dynamic: {len(other_accounts)} stored accounts outside the back-tested accounts "
            "left out"
        )
    if other_series:
        notes.append(
            f"dynamic: positions in {len(other_series)} series the book does not list left "
            f"out (e.g. {sorted(other_series)[0]!r})"
        )
    return PositionPath("dynamic", tuple(matrices))


def _csr(held: dict[tuple[int, int], float], shape: tuple[int, int]) -> sp.csr_matrix:
    if not held:
        return sp.csr_matrix(shape)
    keys = np.array(list(held.keys()), dtype=np.int64)
    values = np.fromiter(held.values(), dtype=np.float64, count=len(held))
    m = sp.csr_matrix((values, (keys[:, 0], keys[:, 1])), shape=shape)
    m.sort_indices()
    return m


def parameter_changes(db: Database) -> list[ParameterChange]:
    """The ES parameter changes the store audited, each in force from the UTC day of its
    effective time, in log order."""
    out = []
    for c in db.risk_parameter_audit():
        if c.model != "es":
            continue
        day = dt.datetime.fromtimestamp(c.effective_time / 1e9, dt.UTC).date()
        out.append(ParameterChange(day, c.parameter, str(c.value)))
    return out


# -- export ----------------------------------------------------------------------------------


def export_header(result: BacktestResult) -> list[str]:
    cols = [c.key for c in result.columns]
    return [
        "mode",
        "day",
        "pnl_end",
        "account",
        "member",
        "held",
        "pnl",
        *(f"margin:{k}" for k in cols),
        *(f"breach:{k}" for k in cols),
    ]


def export_rows(result: BacktestResult) -> Iterator[list[Any]]:
    """One row per (mode, day, account): the realised P&L, each column's margin and
    whether it was breached (the order of :func:`export_header`)."""
    members = [result.members[int(k)] for k in result.account_member]
    for m in result.modes:
        for k in range(result.days.size):
            day, end = str(result.days[k]), str(result.ends[k])
            margins = [m.margin[c.key][k] for c in result.columns]
            for a, account in enumerate(result.accounts):
                pnl = float(m.pnl[k, a])
                values = [float(x[a]) for x in margins]
                yield [
                    m.mode,
                    day,
                    end,
                    account,
                    members[a],
                    bool(m.held[k, a]),
                    pnl,
                    *values,
                    *(bool(-pnl > v) for v in values),
                ]


def write_parquet(path: Path, result: BacktestResult) -> None:
    """The export as a Parquet file (the CSV's columns, typed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    header = export_header(result)
    rows = list(export_rows(result))
    columns = {name: [r[i] for r in rows] for i, name in enumerate(header)}
    pq.write_table(pa.table(columns), path)


# -- report ----------------------------------------------------------------------------------

_ZONE_ORDER = {"red": 0, "yellow": 1, "green": 2}


def backtest_report(bt: Backtest, *, worst: int = 3) -> Report:
    """The risk committee's report: coverage table (zones coloured), P&L against margin over
    time with breaches marked (firm and the worst accounts), the worst accounts' P&L
    distributions, and the models side by side."""
    r = bt.result
    s = r.settings
    report = Report(
        f"Margin back-test {r.days[0]} to {r.days[-1]}",
        meta=(
            ("book", bt.book_name or "(given in memory)"),
            ("window", f"{r.days.size} business days, {r.days[0]} to {r.days[-1]}"),
            ("horizon", f"{r.horizon} business days (P&L to {r.ends[-1]} at the latest)"),
            ("vols over the horizon", REALISED_VOLS_TEXT[r.realised_vols]),
            ("realised P&L", REALISED_PNL_TEXT[r.realised_pnl]),
            ("models", ", ".join(c.label for c in r.columns)),
            ("positions", ", ".join(m.mode for m in r.modes)),
            ("accounts", f"{len(r.accounts):,} ({r.instruments:,} series held)"),
            ("ES scenarios", s.describe()),
        ),
    )
    _coverage_section(report, bt)
    _firm_section(report, bt)
    _worst_section(report, bt, worst)
    _comparison_section(report, bt)
    report.section("Conventions")
    report.paragraph(
        "Breach: a loss over the horizon greater than the margin of the day it starts "
        "(-P&L > margin). Margin of day d: the market of d's close (spots from the price "
        "history; implied vols, dividends and rates as in the book), scenarios from the "
        "history up to d only, the model's parameters in force on d. Realised P&L: every "
        "position revalued at d+h's close, options aged by the h days. Tests: Kupiec "
        "proportion of failures (chi-squared, 1 dof), Christoffersen independence (1 dof) "
        "and conditional coverage (2 dof), at the 95% level; Basel traffic light from the "
        "binomial F(x | n, p): green below 95%, yellow below 99.99%, red above."
    )
    if bt.notes:
        report.section("Notes")
        for n in bt.notes:
            report.paragraph(n)
    return report


_COVERAGE_HEADER = (
    "level", "name", "positions", "model", "days", "breaches", "coverage", "expected",
    "Kupiec LR", "p", "independence LR", "p", "cond. coverage LR", "p", "zone",
)  # fmt: skip


def _coverage_cells(row: CoverageRow) -> list[str | int | float | None]:
    s = row.stats
    return [
        row.level, row.name, row.mode, row.column.label, s.n, s.breaches,
        f"{s.coverage:.2%}", f"{1 - s.expected_rate:.2%}",
        f"{s.lr_pof:.3f}", f"{s.p_pof:.3f}", f"{s.lr_ind:.3f}", f"{s.p_ind:.3f}",
        f"{s.lr_cc:.3f}", f"{s.p_cc:.3f}", s.zone,
    ]  # fmt: skip


def _coverage_section(report: Report, bt: Backtest) -> None:
    report.section("Coverage and tests")
    rows = [x for x in bt.rows if x.level != "account"]
    report.paragraph(
        "The firm and each member (margins and P&L summed over their back-tested "
        "accounts), per position mode and model. Rows are coloured by traffic-light zone."
    )
    report.table(
        _COVERAGE_HEADER,
        [_coverage_cells(x) for x in rows],
        row_class=[f"zone-{x.stats.zone}" for x in rows],
        table_id="coverage",
    )
    accounts = sorted(
        (x for x in bt.rows if x.level == "account"),
        key=lambda x: (_ZONE_ORDER[x.stats.zone], -x.stats.breaches, -x.worst_excess, x.name),
    )[:25]
    report.paragraph("Accounts, the most breached first (at most 25 rows):")
    report.table(
        _COVERAGE_HEADER,
        [_coverage_cells(x) for x in accounts],
        row_class=[f"zone-{x.stats.zone}" for x in accounts],
        table_id="accounts",
    )


def _dates(r: BacktestResult) -> Any:
    return r.days.astype("datetime64[D]").astype(object)


def _pnl_margin_chart(
    report: Report,
    caption: str,
    r: BacktestResult,
    loss: np.ndarray,
    margins: dict[str, Any],
    title: str = "",
) -> None:
    x = _dates(r)
    with report.figure(caption) as ax:
        if title:
            ax.set_title(title, fontsize=9)
        ax.plot(x, loss, color="#333", lw=0.9, label="loss over the horizon (-P&L)")
        for (label, margin), colour in zip(margins.items(), _COLOURS, strict=False):
            ax.plot(x, margin, color=colour, lw=1.2, label=f"margin {label}")
            hit = loss > margin
            if hit.any():
                ax.scatter(x[hit], loss[hit], color=colour, marker="x", s=30, zorder=3)
        ax.set_ylabel("currency")
        ax.legend(fontsize=7, loc="upper left")
        ax.figure.autofmt_xdate()


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _firm_section(report: Report, bt: Backtest) -> None:
    r = bt.result
    report.section("Firm: loss against margin over time")
    for m in r.modes:
        loss = -m.pnl.sum(axis=1)
        margins = {c.label: m.margin[c.key].sum(axis=1) for c in r.columns}
        _pnl_margin_chart(
            report,
            f"Firm ({m.mode} positions): loss over {r.horizon} days against each model's "
            "margin; crosses mark breaches",
            r,
            loss,
            margins,
        )


def _worst_section(report: Report, bt: Backtest, top: int) -> None:
    r = bt.result
    worst = bt.worst(top)
    report.section("The worst accounts")
    if not worst:
        report.paragraph("No account breached its margin on any day of the window.")
        return
    report.table(
        ("account", "member", "positions", "model", "breaches", "days",
         "largest loss beyond margin", "zone"),
        [
            (w.name, w.member, w.mode, w.column.label, w.stats.breaches, w.stats.n,
             round(w.worst_excess), w.stats.zone)
            for w in worst
        ],
        row_class=[f"zone-{w.stats.zone}" for w in worst],
        table_id="worst",
    )  # fmt: skip
    index = {a: i for i, a in enumerate(r.accounts)}
    for w in worst:
        a = index[w.name]
        m = r.mode(w.mode)
        margins = {c.label: m.margin[c.key][:, a] for c in r.columns}
        _pnl_margin_chart(
            report,
            f"Account {w.name} ({w.mode} positions): loss against margin; crosses mark breaches",
            r,
            -m.pnl[:, a],
            margins,
            title=f"{w.name} ({w.member}, {w.mode})",
        )
        pnl = m.pnl[:, a]
        with report.figure(
            f"Account {w.name} ({w.mode}): distribution of the realised {r.horizon}-day P&L; "
            "dashed lines at minus each model's median margin",
            height=3.0,
        ) as ax:
            ax.hist(pnl, bins=min(40, max(10, pnl.size // 5)), color="#8899aa")
            for (label, margin), colour in zip(margins.items(), _COLOURS, strict=False):
                ax.axvline(
                    -float(np.median(margin)), color=colour, ls="--", label=f"-margin {label}"
                )
            ax.set_xlabel("P&L (currency)")
            ax.set_ylabel("days")
            ax.legend(fontsize=7)


def _comparison_section(report: Report, bt: Backtest) -> None:
    r = bt.result
    report.section("Models side by side")
    rows = []
    for m in r.modes:
        for c in r.columns:
            acc = [
                x for x in bt.rows if x.level == "account" and x.mode == m.mode and x.column == c
            ]
            firm = next(
                x for x in bt.rows if x.level == "firm" and x.mode == m.mode and x.column == c
            )
            zones = {
                z: sum(1 for x in acc if x.stats.zone == z) for z in ("green", "yellow", "red")
            }
            rows.append(
                (
                    m.mode, c.label, round(float(m.margin[c.key].sum(axis=1).mean())),
                    firm.stats.breaches, sum(x.stats.breaches for x in acc),
                    zones["green"], zones["yellow"], zones["red"],
                )
            )  # fmt: skip
    report.table(
        ("positions", "model", "mean firm margin", "firm breaches", "account breaches",
         "accounts green", "accounts yellow", "accounts red"),
        rows,
        table_id="comparison",
    )  # fmt: skip
    with report.figure("Accounts per traffic-light zone, per model", height=3.0) as ax:
        labels = [f"{row[1]} ({row[0]})" for row in rows]
        x = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for k, (zone, colour) in enumerate(
            (("green", "#2e8b57"), ("yellow", "#d4a017"), ("red", "#c0392b"))
        ):
            heights = np.array([row[5 + k] for row in rows], dtype=float)
            ax.bar(x, heights, bottom=bottom, color=colour, label=zone)
            bottom += heights
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("accounts")
        ax.legend(fontsize=7)


__all__ = [
    "MODE_CHOICES",
    "Backtest",
    "Column",
    "Mode",
    "backtest_book",
    "backtest_report",
    "day_ends_ns",
    "dynamic_path",
    "export_header",
    "export_rows",
    "parameter_changes",
    "write_parquet",
]
