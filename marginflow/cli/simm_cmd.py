"""``marginflow simm CRIF_FILE --version V``: ISDA SIMM (and Schedule IM) of every portfolio
in a CRIF file, both sides.

*call* is SIMM on the sensitivities as given (the margin the file's owner collects), *post*
is SIMM on the negated sensitivities (the margin it posts). With regulation columns, each
side's winning regulation is named. Rejected rows are named on standard error
(``file:line: field: reason``) and can be kept with ``--rejects``; the valid rows are still
computed and the exit status is then 2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from marginflow.app.simm import simm_of_crif
from marginflow.cli.options import refuse_ignored
from marginflow.cli.output import (
    fail,
    note,
    output_file,
    print_json,
    report_failures,
    say,
    table,
    write_rejects,
)
from marginflow.core.errors import MarginflowError
from marginflow.simm.calibration import available_versions
from marginflow.simm.report import MODELS, Model
from marginflow.simm.results import SimmReport

EXIT_REJECTED = 2


def register(app: typer.Typer) -> None:
    app.command("simm")(simm_command)


def simm_command(
    ctx: typer.Context,
    crif_file: Annotated[Path, typer.Argument(help="CRIF file (.csv, or .parquet)")],
    version: Annotated[
        str,
        typer.Option(
            "--version",
            "-v",
            help=f"SIMM version by ISDA name (required): {', '.join(available_versions())}",
        ),
    ],
    mpor: Annotated[int, typer.Option(help="margin period of risk in days: 10 or 1")] = 10,
    currency: Annotated[str, typer.Option(help="calculation and result currency")] = "USD",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    fx_rates: Annotated[
        Path | None,
        typer.Option(help="CSV of Currency,USDPerUnit (else implied from Amount/AmountUSD)"),
    ] = None,
    regulations: Annotated[
        bool,
        typer.Option(
            "--regulations/--no-regulations",
            help="honour CollectRegulation/PostRegulation (strongest regime per side)",
        ),
    ] = True,
    detail: Annotated[bool, typer.Option(help="break buckets down by qualifier")] = False,
    depth: Annotated[
        int,
        typer.Option(help="breakdown levels shown in the table (JSON has all)", min=0, max=20),
    ] = 4,
    model: Annotated[
        list[str] | None,
        typer.Option(help="PORTFOLIO=simm|schedule|mixed (repeatable); default: mixed"),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="date Schedule maturities run from (YYYY-MM-DD)")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="write rejected rows (line, field, reason, raw) here")
    ] = None,
    contributions: Annotated[
        bool,
        typer.Option(help="Euler contribution of each trade (TradeID) to its SIMM"),
    ] = False,
) -> None:
    """ISDA SIMM and Schedule IM from a CRIF file, per portfolio and side, with the
    breakdown (product class, risk class, margin type, bucket)."""
    if mpor not in (10, 1):
        fail(f"--mpor must be 10 or 1, got {mpor}")
    if as_json:
        refuse_ignored(ctx, ["depth"], because="--json")
    output_file(rejects, "--rejects")
    as_of_date = _as_of(as_of)
    try:
        run = simm_of_crif(
            crif_file,
            version=version,
            mpor=mpor,
            currency=currency,
            fx_rates=fx_rates,
            regulations=regulations,
            detail=detail,
            as_of=as_of_date,
            models=_models(model or []),
            contributions=contributions,
        )
    except MarginflowError as exc:
        fail(str(exc))
    if rejects is not None:
        write_rejects(rejects, run.failures)
    if as_json:
        document = run.report.to_dict()
        document["source"] = str(crif_file)
        print_json(document)
    else:
        _print_report(run.report, depth)
    if run.failures:
        report_failures(run.failures)
        say(f"{run.rejected_lines} rejected row(s); {run.valid_rows} valid rows computed", err=True)
        raise typer.Exit(EXIT_REJECTED)


def _as_of(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail(f"--as-of: is not a date (YYYY-MM-DD): {text!r}")


def _models(specs: list[str]) -> dict[str, Model]:
    out: dict[str, Model] = {}
    for spec in specs:
        portfolio, sep, name = spec.rpartition("=")
        if not sep or name.lower() not in MODELS:
            fail(f"--model must be PORTFOLIO=simm|schedule|mixed, got {spec!r}")
        out[portfolio] = next(m for m in MODELS if m == name.lower())
    return out


def _print_report(report: SimmReport, depth: int) -> None:
    title = (
        f"SIMM {report.version} ({report.mpor_days}-day), {report.currency}: "
        "call = margin collected, post = margin posted"
    )
    _money_table(
        title,
        ["portfolio", "side", "regulation"],
        ["IM", "SIMM", "Schedule"],
        [
            ((r.portfolio, r.side, r.regulation or "-"), (r.im, r.simm, r.schedule))
            for r in report.results
        ],
    )
    for r in report.results:
        rows = [
            (("  " * d + node.name, node.level), (node.margin,))
            for d, node in r.breakdown.walk()
            if 0 < d <= depth
        ]
        if rows:
            _money_table(
                f"{r.portfolio} {r.side} ({r.regulation or 'no regulation'})",
                ["line", "level"],
                [f"margin ({report.currency})"],
                rows,
            )
        if r.contributions:
            top = sorted(r.contributions.items(), key=lambda kv: -abs(kv[1]))[:10]
            _money_table(
                f"{r.portfolio} {r.side}: largest trade contributions (Euler)",
                ["trade"],
                [f"contribution ({report.currency})"],
                [((trade,), (value,)) for trade, value in top],
            )
    for text in report.notes:
        note(text)


def _money_table(
    title: str,
    labels: Sequence[str],
    amounts: Sequence[str],
    rows: Sequence[tuple[Sequence[str], Sequence[float]]],
) -> None:
    """A table of label columns then amount columns, amounts to the cent (right-aligned)."""
    table(
        title,
        [*labels, *amounts],
        [[*text, *(f"{v:,.2f}" for v in values)] for text, values in rows],
        right=amounts,
    )
