"""Shared CLI output: rich tables for people, JSON for programs, errors without tracebacks."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from marginflow.core.errors import RowFailure

stderr = Console(stderr=True, highlight=False)

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on standard error and exit with status 2."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def report_failures(failures: Sequence[RowFailure], *, limit: int = 50) -> None:
    """Name each rejected row on standard error: ``source:line: field: reason``."""
    for f in failures[:limit]:
        stderr.print(f"[yellow]rejected[/] {escape(str(f))}", soft_wrap=True, highlight=False)
    if len(failures) > limit:
        stderr.print(f"... and {len(failures) - limit} more rejected rows")


def write_rejects(path: Path, failures: Iterable[RowFailure]) -> None:
    """Keep rejected rows with their reasons: CSV ``source,line,field,reason,raw``."""
    try:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["source", "line", "field", "reason", "raw"])
            for f in failures:
                writer.writerow([f.source, f.line, f.field, f.reason, f.raw])
    except OSError as exc:
        fail(f"--rejects {path}: {exc.strerror or exc}")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a title line and a readable table under it; numbers right-aligned."""
    t = Table()
    first = list(rows)
    for i, name in enumerate(columns):
        numeric = bool(first) and all(isinstance(r[i], int | float) for r in first)
        t.add_column(name, justify="right" if numeric else "left")
    for r in first:
        t.add_row(*(escape(_fmt(x)) for x in r))  # user text is data, never markup
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: don't squeeze into 80 columns
        console = Console(width=200, highlight=False)
    console.print(f"[bold]{escape(title)}[/]")
    console.print(t)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        # Amounts (>= 1,000) to the cent; prices, Greeks and ratios to six significant digits.
        return f"{x:,.2f}" if abs(x) >= 1000 else f"{x:,.6g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def print_json(document: Any, *, one_line: bool = False) -> None:
    """``document`` on standard output; ``one_line``: on one line, flushed (a stream of
    readings, one per line, for a reader that takes each as it comes)."""
    indent = None if one_line else 2
    sys.stdout.write(json.dumps(document, indent=indent, allow_nan=False, default=str) + "\n")
    if one_line:
        sys.stdout.flush()
