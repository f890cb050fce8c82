"""Self-contained HTML reports for a risk committee: one file, no scripts, no network.

Every text a user supplied (account, member, scenario and set names) is escaped, so a
name such as ``<script>`` reads as itself. Charts are drawn by matplotlib and inlined as
SVG, so the page opens offline and prints. :func:`stress` and :func:`backtest` (in their
use-case modules) build a :class:`Report` and write :meth:`Report.html`.
"""

from __future__ import annotations

import datetime as dt
import html
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from marginflow import __version__

Cell = str | int | float | None

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1b1f24}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:.6em 0}th,td{padding:.25em .7em;text-align:right}
th{background:#eef1f5}td.t,th.t{text-align:left}tr:nth-child(even) td{background:#f7f8fa}
.meta{color:#556}.zone-green{color:#176d2c}.zone-amber,.zone-yellow{color:#9a6a00}.zone-red{color:#b0201b}
figure{margin:.8em 0}figcaption{color:#556;font-size:.9em}
"""


def _cell(value: Cell, digits: int) -> tuple[str, str]:
    """The escaped text of ``value`` and its cell class (``t`` for text, left-aligned)."""
    if value is None:
        return "", ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), "t"
    if isinstance(value, int):
        return f"{value:,}", ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}", ""
    return html.escape(value), "t"


def chart_text(text: str) -> str:
    """``text`` as a matplotlib label shows it: a ``$`` would start mathtext (``$x^2$`` set
    as a formula), so it is escaped; nothing else in a label is interpreted."""
    return text.replace("$", r"\$")


@dataclass
class Report:
    """An HTML report being built: a title, a line of provenance, then sections of
    paragraphs, tables and figures in the order added."""

    title: str
    meta: Sequence[tuple[str, str]] = ()
    _parts: list[str] = field(default_factory=list)

    def section(self, heading: str) -> None:
        """Start a section (``<h2>``); ``heading`` is escaped."""
        self._parts.append(f"<h2>{html.escape(heading)}</h2>")

    def paragraph(self, text: str) -> None:
        """A paragraph of plain text (escaped)."""
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[Cell]],
        *,
        digits: int = 0,
        row_class: Sequence[str] | None = None,
        table_id: str | None = None,
    ) -> None:
        """A table: text cells left-aligned, numbers right-aligned with thousands separators
        (floats to ``digits`` places). ``row_class`` (one CSS class a row, e.g. a zone) is
        taken from our own vocabulary, never from user text."""
        out = [f'<table id="{html.escape(table_id)}">' if table_id else "<table>", "<tr>"]
        out += [f"<th>{html.escape(h)}</th>" for h in header]
        out.append("</tr>")
        for k, row in enumerate(rows):
            cls = f' class="{html.escape(row_class[k])}"' if row_class else ""
            out.append(f"<tr{cls}>")
            for value in row:
                text, c = _cell(value, digits)
                out.append(f'<td class="{c}">{text}</td>' if c else f"<td>{text}</td>")
            out.append("</tr>")
        out.append("</table>")
        self._parts.append("".join(out))

    @contextmanager
    def figure(self, caption: str, *, width: float = 9.0, height: float = 3.6) -> Iterator[Any]:
        """``with report.figure("...") as ax:`` draws on a matplotlib axes and inlines the
        result as SVG with its caption (escaped)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        # user text in labels and legends is plain text: a "$" must not start mathtext
        with matplotlib.rc_context({"text.parse_math": False}):
            fig, ax = plt.subplots(figsize=(width, height))
        try:
            with matplotlib.rc_context({"text.parse_math": False}):
                yield ax
            ax.grid(True, alpha=0.3)
            fig.tight_layout()
            buf = io.StringIO()
            # svg.hashsalt keeps element ids stable, so a report's bytes depend on its data
            with matplotlib.rc_context({"svg.hashsalt": "marginflow", "svg.fonttype": "none"}):
                fig.savefig(buf, format="svg", metadata={"Date": None})
        finally:
            plt.close(fig)
        svg = buf.getvalue()
        svg = svg[svg.index("<svg") :]
        self._parts.append(f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>")

    def html(self) -> str:
        """The whole document."""
        meta = "".join(
            f"<div><b>{html.escape(k)}</b>: {html.escape(v)}</div>" for k, v in self.meta
        )
        made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f'<h1>{html.escape(self.title)}</h1><div class="meta">{meta}'
            f"<div>made by marginflow {html.escape(__version__)} at {made}</div></div>"
            + "".join(self._parts)
            + "</body></html>"
        )
