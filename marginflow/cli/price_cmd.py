"""``marginflow price``: price an option file."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import numpy as np
import typer

from marginflow.cli.output import fail, output_file, report_failures, write_csv_rows, write_rejects
from marginflow.core.errors import ValidationError
from marginflow.core.text import visible
from marginflow.io.option_csv import OptionFile, read_option_csv, read_option_file
from marginflow.io.source import read_stream_text
from marginflow.pricing.api import greeks, price

GREEK_COLUMNS = ("delta", "gamma", "vega", "theta", "rho")


def register(app: typer.Typer) -> None:
    app.command("price")(price_command)


def price_command(
    file: Annotated[Path, typer.Argument(help="CSV of options ('-' for standard input)")],
    with_greeks: Annotated[
        bool, typer.Option("--greeks", help="add delta, gamma, vega, theta, rho")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of CSV")] = False,
    rejects: Annotated[
        Path | None, typer.Option(help="also write rejected rows with their reasons here")
    ] = None,
) -> None:
    """Price every option of FILE and write the rows back with a price column.

    Columns: kind (call|put), style (european|american), spot, strike, expiry_years,
    rate, dividend_yield, vol (annualised). Invalid rows are named on standard error with
    line, field and reason; the others are still priced; the exit status is then 2.
    Units: vega per 1.00 vol, theta per year (-dV/dT), rho per 1.00 rate.
    """
    output_file(rejects, "--rejects")
    options = load_option_file(file)
    result = _price_columns(options, with_greeks)
    try:
        if as_json:
            _write_json_lines(sys.stdout, options, result)
        else:
            _write_csv(sys.stdout, options, result)
        sys.stdout.flush()
    except BrokenPipeError:  # a reader such as `head` stopped early: not an error
        sys.stderr.close()
        return
    if rejects is not None:
        write_rejects(rejects, options.failures)
    if options.failures:
        report_failures(options.failures)
        raise typer.Exit(2)


def load_option_file(path: Path) -> OptionFile:
    """Read an option file ('-' for standard input); whole-file errors exit with status 2."""
    try:
        if str(path) == "-":
            text = read_stream_text(sys.stdin.buffer, source="<stdin>")
            return read_option_csv(io.StringIO(text, newline=""), source="<stdin>")
        return read_option_file(path)
    except ValidationError as exc:
        fail(str(exc))


def _price_columns(options: OptionFile, with_greeks: bool) -> dict[str, np.ndarray]:
    if not with_greeks:
        return {"price": price(options.batch)}
    g = greeks(options.batch)
    return {"price": g.price, **{name: getattr(g, name) for name in GREEK_COLUMNS}}


def _write_csv(out: TextIO, options: OptionFile, cols: dict[str, np.ndarray]) -> None:
    header = options.rows.header + [c for c in cols if c not in options.rows.header]

    def rows() -> Iterator[list[str]]:
        for i, raw in enumerate(options.rows.raw):
            row = {**raw, **{name: repr(float(values[i])) for name, values in cols.items()}}
            yield [visible(row.get(h, "")) for h in header]

    write_csv_rows(out, [visible(h) for h in header], rows())


def _write_json_lines(out: TextIO, options: OptionFile, cols: dict[str, np.ndarray]) -> None:
    parsed = options.rows.values
    for i, raw in enumerate(options.rows.raw):
        record: dict[str, object] = dict(raw)
        record.update({name: values[i] for name, values in parsed.items()})
        record["line"] = options.rows.lines[i]
        record.update({name: float(values[i]) for name, values in cols.items()})
        out.write(json.dumps(record, allow_nan=False) + "\n")
