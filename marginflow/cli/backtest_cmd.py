"""``marginflow backtest``: a thin shell over :mod:`marginflow.app.backtest`.

Each day of a window of the book's price history: the margin as of that day against the P&L
its positions realised over the horizon; breaches, coverage, Kupiec and Christoffersen
tests and the Basel traffic light per account, member and the firm, for several models and
confidence levels side by side. Progress on standard error; tables, ``--json``, an HTML
``--report`` and a day × account ``--export`` (CSV or Parquet, by the file's extension).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from marginflow.cli.margin_cmd import (
    ApcOpt,
    DecayOpt,
    JsonOpt,
    LookbackOpt,
    McOpt,
    ParamOpt,
    RevalOpt,
    SeedOpt,
    SourceOpt,
    StressOpt,
    _settings,
    refuse_ignored_settings,
)
from marginflow.cli.options import refuse_ignored
from marginflow.cli.output import Progress, fail, output_file, print_json, table, write_csv_file
from marginflow.cli.trace_cmd import PrefixOpt, open_store
from marginflow.core.errors import MarginflowError

if TYPE_CHECKING:
    from marginflow.app.backtest import Backtest


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest_command)


def _date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r}: not a date (YYYY-MM-DD)")


def _accounts(text: str | None) -> int | list[str] | None:
    """``N`` (a sample of N accounts) or ``A1,A2,...`` (those accounts)."""
    if text is None:
        return None
    if text.strip().isdigit():
        n = int(text)
        if n < 1:
            fail(f"--accounts {text!r}: a sample needs at least 1 account")
        return n
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        fail(f"--accounts {text!r}: give a count or account ids separated by commas")
    return names


def backtest_command(
    ctx: typer.Context,
    book: Annotated[Path, typer.Option("--book", help="book folder with its history")],
    days: Annotated[
        int | None, typer.Option(help="business days back-tested (default 250)", min=1)
    ] = None,
    start: Annotated[str | None, typer.Option(help="first day (YYYY-MM-DD)")] = None,
    end: Annotated[str | None, typer.Option(help="last day (YYYY-MM-DD)")] = None,
    horizon: Annotated[
        int, typer.Option(help="margin period of risk = P&L horizon, business days", min=1)
    ] = 2,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="es, span or pm (repeatable)")
    ] = None,
    confidence: Annotated[
        list[float] | None,
        typer.Option("--confidence", help="ES confidence (repeatable), default 0.99"),
    ] = None,
    accounts: Annotated[
        str | None, typer.Option(help="a sample of N accounts, or ids A1,A2,... (default all)")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database", "--db", help="store URL: parameter history and dynamic positions"
        ),
    ] = None,
    db_prefix: PrefixOpt = "mf_",
    mode: Annotated[
        str,
        typer.Option(
            help="positions: static, dynamic (the store's), both, or auto (static, plus "
            "dynamic when --database has a position history)"
        ),
    ] = "auto",
    realised_vols: Annotated[
        str,
        typer.Option(
            help="implied vols over the horizon in the realised P&L: model (moved by the "
            "scenarios' vol map) or held"
        ),
    ] = "model",
    pnl: Annotated[
        str,
        typer.Option(
            help="realised P&L: full (options aged over the horizon) or clean (times to "
            "expiry held: the move alone, as the margin's scenarios model it)"
        ),
    ] = "full",
    workers: Annotated[
        int,
        typer.Option(
            help="processes splitting the window's days, each with its own engine and a "
            "share of the cores (same results; pays where the kernels leave cores idle; "
            "the book's memory again per worker)",
            min=1,
        ),
    ] = 1,
    report: Annotated[Path | None, typer.Option(help="write the HTML report here")] = None,
    export: Annotated[
        Path | None, typer.Option(help="day × account margins and P&L: .csv or .parquet")
    ] = None,
    limit: Annotated[int, typer.Option(help="accounts shown (0 = all)", min=0)] = 10,
    param: ParamOpt = None,
    apc: ApcOpt = "none",
    source: SourceOpt = "fhs",
    lookback: LookbackOpt = 1250,
    decay: DecayOpt = 0.97,
    stress: StressOpt = "default",
    mc_scenarios: McOpt = 10_000,
    seed: SeedOpt = 0,
    revaluation: RevalOpt = "grid",
    as_json: JsonOpt = False,
) -> None:
    """Back-test margins against realised P&L over a window of the book's history.

    Each day d: the margin from the market of d (scenarios from the history up to d only)
    against the loss of d's positions over the horizon (full revaluation, options aged). A
    breach is a loss above the margin. Reported per account, member and firm: breaches,
    coverage, Kupiec, Christoffersen, Basel traffic light.
    """
    models = model or ["es"]
    from marginflow.backtest.run import MODELS, MSG_UNKNOWN_MODEL

    for name in models:
        if name not in MODELS:
            fail(MSG_UNKNOWN_MODEL.format(model=name))
    if "es" not in models:
        refuse_ignored_settings(
            ctx, model=models[0], scenarios=None, source=source, apc=apc, param=param
        )
    else:
        refuse_ignored_settings(
            ctx, model="es", scenarios=None, source=source, apc=apc, param=param
        )
    if as_json:
        refuse_ignored(ctx, ["limit"], because="--json")
    output_file(report, "--report")
    output_file(export, "--export")
    if export is not None and export.suffix.lower() not in (".csv", ".parquet"):
        fail(f"--export {export}: the file must end in .csv or .parquet")
    first, last = _date(start, "--start"), _date(end, "--end")
    sample = _accounts(accounts)
    settings = _settings(
        confidence=(confidence or [0.99])[0], apc=apc, source=source, mpor=horizon,
        lookback=lookback, decay=decay, stress=stress, overlapping=True,
        mc_scenarios=mc_scenarios, seed=seed, param=param, revaluation=revaluation,
    )  # fmt: skip
    from marginflow.app.backtest import backtest_book, mode_choice
    from marginflow.io.book import load_book

    store = open_store(Path("."), database, db_prefix) if database is not None else None
    try:
        loaded = load_book(book)
        if loaded.failures:
            fail(f"{book}: {len(loaded.failures)} rejected rows, e.g. {loaded.failures[0]}")
        bt = backtest_book(
            loaded,
            settings=settings,
            models=models,
            confidences=confidence or (),
            accounts=sample,
            days=days,
            start=first,
            end=last,
            mode=mode_choice(mode),
            database=store,
            realised_vols=realised_vols,
            realised_pnl=pnl,
            progress=Progress("backtest", "days"),
            workers=workers,
            book_name=str(book),
        )
    except MarginflowError as exc:
        fail(str(exc))
    finally:
        if store is not None:
            store.close()
    if report is not None:
        from marginflow.app.backtest import backtest_report

        _write(report, "--report", backtest_report(bt).html())
    if export is not None:
        _export(bt, export)
    if as_json:
        print_json(bt.to_json())
    else:
        _print_tables(bt, limit)


def _write(path: Path, option: str, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{option} {path}: {exc.strerror or exc}")


def _export(bt: Backtest, path: Path) -> None:
    from marginflow.app.backtest import export_header, export_rows, write_parquet

    if path.suffix.lower() == ".csv":
        write_csv_file(path, "--export", export_header(bt.result), export_rows(bt.result))
        return
    try:
        write_parquet(path, bt.result)
    except OSError as exc:
        fail(f"--export {path}: {exc.strerror or exc}")


def _print_tables(bt: Backtest, limit: int) -> None:
    r = bt.result
    header = ("level", "name", "positions", "model", "days", "breaches", "coverage",
              "Kupiec LR", "p", "Chr. ind LR", "p", "cond. cov LR", "p", "zone")  # fmt: skip

    def cells(x: object) -> tuple[object, ...]:
        from marginflow.backtest.coverage import CoverageRow

        assert isinstance(x, CoverageRow)
        s = x.stats
        return (x.level, x.name, x.mode, x.column.label, s.n, s.breaches, f"{s.coverage:.2%}",
                round(s.lr_pof, 3), round(s.p_pof, 3), round(s.lr_ind, 3), round(s.p_ind, 3),
                round(s.lr_cc, 3), round(s.p_cc, 3), s.zone)  # fmt: skip

    title = (
        f"back-test {r.days[0]}..{r.days[-1]} ({r.days.size} days, {r.horizon}-day horizon, "
        f"{len(r.accounts):,} accounts, {', '.join(m.mode for m in r.modes)} positions, "
        f"{r.realised_vols} vols, {r.realised_pnl} P&L)"
    )
    aggregate = [x for x in bt.rows if x.level != "account"]
    table(title + ": firm and members", header, [cells(x) for x in aggregate])
    accounts = sorted(
        (x for x in bt.rows if x.level == "account"),
        key=lambda x: (-x.stats.breaches, -x.worst_excess, x.name),
    )
    shown = accounts if limit == 0 else accounts[:limit]
    which = "all" if len(shown) == len(accounts) else f"the {len(shown)} most breached"
    table(f"accounts ({which} of {len(accounts)} series)", header, [cells(x) for x in shown])
    for n in bt.notes:
        from marginflow.cli.output import note

        note(n)
