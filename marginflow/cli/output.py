"""Shared CLI output: rich tables for people, JSON for programs, errors without tracebacks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from marginflow.core.errors import RowFailure

stderr = Console(stderr=True, highlight=False)

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on standard error and exit with status 2."""
    stderr.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def report_failures(failures: Sequence[RowFailure], *, limit: int = 50) -> None:
    """Name each rejected row on standard error: ``source:line: field: reason``."""
    for f in failures[:limit]:
        stderr.print(f"[yellow]rejected[/] {f}", soft_wrap=True, markup=True, highlight=False)
    if len(failures) > limit:
        stderr.print(f"... and {len(failures) - limit} more rejected rows")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a title line and a readable table under it; numbers right-aligned."""
    t = Table()
    first = list(rows)
    for i, name in enumerate(columns):
        numeric = bool(first) and all(isinstance(r[i], int | float) for r in first)
        t.add_column(name, justify="right" if numeric else "left")
    for r in first:
        t.add_row(*(_fmt(x) for x in r))
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: don't squeeze into 80 columns
        console = Console(width=200, highlight=False)
    console.print(f"[bold]{title}[/]")
    console.print(t)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        # Amounts (>= 1,000) to the cent; prices, Greeks and ratios to six significant digits.
        return f"{x:,.2f}" if abs(x) >= 1000 else f"{x:,.6g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False, default=str) + "\n")
