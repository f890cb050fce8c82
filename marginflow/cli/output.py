"""Everything the CLI shows passes here: rich tables for people, JSON and CSV for programs,
one-line errors without tracebacks.

User text is data, never markup. The consoles read no markup and no emoji codes, every
string is printed as a :class:`rich.text.Text` (which rich never parses), and every piece of
text goes through :func:`marginflow.core.text.visible` first, so ``[/x]``, ``:100:``, an ESC
sequence, a carriage return or a bidi override come out literally, as the characters a user
can read. Styles (``error:`` in red) are set on our own words only. CSV files get
:func:`marginflow.core.text.spreadsheet_cell` on every cell. JSON escapes control characters
itself (``ensure_ascii``).

No other module of ``marginflow.cli`` or ``marginflow.sim`` makes a console, calls ``print``
or ``typer.echo`` (``tests/cli/test_output.py`` checks the source).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from marginflow.core.errors import MSG_OUTPUT_IS_FOLDER, RowFailure
from marginflow.core.text import spreadsheet_cell, visible

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): a bug of ours, not the user's input


def _console(*, err: bool = False) -> Console:
    """A console that reads no markup and no emoji, on the current stdout or stderr (not
    squeezed into 80 columns when piped or captured)."""
    console = Console(stderr=err, markup=False, emoji=False, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=err, markup=False, emoji=False, highlight=False, width=200)
    return console


def literal(text: object, style: str = "") -> Text:
    """``text`` as rich text that is shown as it is (see the module docstring)."""
    return Text(visible(str(text)), style=style)


def say(*parts: object, err: bool = False, style: str = "") -> None:
    """One line of text (each part shown literally), never wrapped."""
    line = Text(" ").join(literal(p) for p in parts)
    if style:
        line.stylize(style)
    _console(err=err).print(line, soft_wrap=True)


def say_fields(*fields: object) -> None:
    """One tab-separated line on standard output, for programs (``user<TAB>password``)."""
    # written as is: rich would expand the tab into spaces; a tab inside a field is escaped
    sys.stdout.write("\t".join(visible(str(f)) for f in fields) + "\n")
    sys.stdout.flush()


def note(message: str, *, label: str = "note:", style: str = "yellow") -> None:
    """``note: message`` (or another label) on standard error."""
    _console(err=True).print(Text.assemble((label, style), " ", literal(message)), soft_wrap=True)


def error_line(message: str) -> None:
    """``error: message`` on standard error (without exiting)."""
    note(message, label="error:", style="bold red")


def fail(message: str, status: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: message`` on standard error and exit with status 2."""
    error_line(message)
    raise typer.Exit(status)


def report_failures(failures: Sequence[RowFailure], *, limit: int = 50) -> None:
    """Name each rejected row on standard error: ``source:line: field: reason``."""
    for f in failures[:limit]:
        note(str(f), label="rejected", style="yellow")
    if len(failures) > limit:
        say(f"... and {len(failures) - limit} more rejected rows", err=True)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner with ``message`` on standard error while the block runs."""
    with _console(err=True).status(literal(message)):
        yield


class Progress:
    """``label: done/total unit, elapsed, ETA`` on standard error while a long run goes: on
    a terminal one line redrawn in place, otherwise a line at most every ``every`` seconds
    (and at the end), so a log shows it without flooding. Call it with (done, total)."""

    def __init__(self, label: str, unit: str, *, every: float = 10.0) -> None:
        import time

        self._clock = time.monotonic
        self.label, self.unit, self.every = label, unit, every
        self.t0 = self._clock()
        self._last = -math.inf
        self._console = _console(err=True)

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        final = done >= total
        live = self._console.is_terminal
        if not final and not live and now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.t0
        eta = elapsed / done * (total - done) if done else math.nan
        text = f"{self.label}: {done:,}/{total:,} {self.unit}, {_duration(elapsed)} elapsed"
        if not final:
            text += f", ETA {_duration(eta)}"
        if live:
            self._console.file.write("\r\x1b[2K" + visible(text) + ("\n" if final else ""))
            self._console.file.flush()
        else:
            self._console.print(literal(text), soft_wrap=True)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def write_csv_rows(out: TextIO, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV document on ``out``: every cell through :func:`spreadsheet_cell`."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([spreadsheet_cell(h) for h in header])
    writer.writerows([spreadsheet_cell(x) for x in row] for row in rows)


def output_file(path: Path | None, option: str) -> None:
    """Refuse, before any work is done, an output option naming a folder."""
    if path is not None and path.is_dir():
        fail(MSG_OUTPUT_IS_FOLDER.format(option=option, path=path))


def write_csv_file(
    path: Path, option: str, header: Sequence[Any], rows: Iterable[Sequence[Any]]
) -> None:
    """Write a CSV file given by ``option`` (``--rejects``); a folder or a failed write
    exits with status 2 naming the option and the path."""
    output_file(path, option)
    try:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            write_csv_rows(fh, header, rows)
    except OSError as exc:
        fail(f"{option} {path}: {exc.strerror or exc}")


def write_rejects(path: Path, failures: Iterable[RowFailure]) -> None:
    """Keep rejected rows with their reasons: CSV ``source,line,field,reason,raw``."""
    write_csv_file(
        path,
        "--rejects",
        ["source", "line", "field", "reason", "raw"],
        ([f.source, f.line, f.field, f.reason, f.raw] for f in failures),
    )


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Sequence[str] = (),
) -> None:
    """Print a title line and a readable table under it; numbers (and the ``right``
    columns) right-aligned."""
    t = Table()
    first = list(rows)
    for i, name in enumerate(columns):
        numeric = bool(first) and all(isinstance(r[i], int | float) for r in first)
        t.add_column(literal(name), justify="right" if numeric or name in right else "left")
    for r in first:
        t.add_row(*(literal(_fmt(x)) for x in r))
    console = _console()
    console.print(literal(title, "bold"), soft_wrap=True)
    console.print(t)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        # Amounts (>= 1,000) to the cent; prices, Greeks and ratios to six significant digits.
        return f"{x:,.2f}" if abs(x) >= 1000 else f"{x:,.6g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def print_json(document: Any, *, one_line: bool = False) -> None:
    """One JSON document on standard output (non-ASCII and control characters escaped).

    ``one_line`` writes it on a single line (JSON Lines), for commands that keep printing
    readings, so a reader can take one document per line.
    """
    indent = None if one_line else 2
    sys.stdout.write(json.dumps(document, indent=indent, allow_nan=False, default=str) + "\n")
    if one_line:
        sys.stdout.flush()
