"""User text made safe to show and to export, without changing what it says.

* :func:`visible`: for a terminal. Control characters (C0, DEL, C1), line and paragraph
  separators and the bidirectional overrides are written as escapes (``\\x1b``, ``\\r``,
  ``\\u202e``), so a field can neither move the cursor, recolour the screen, nor reorder
  what is printed after it. Everything else, ``[/x]`` and ``:100:`` included, is left as it is:
  the consoles that print it do not read markup (:mod:`marginflow.cli.output`).
* :func:`spreadsheet_cell`: for a CSV cell. Text that a spreadsheet would run as a formula
  (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed with ``'``;
  numbers, and text that is a plain number such as ``-5`` or ``+1.5e3``, are left as they are.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Format characters that change the order or direction of what follows them (Trojan Source).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _shown(ch: str) -> str:
    if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
        if ch in _SHORT:
            return _SHORT[ch]
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def visible(text: str) -> str:
    """``text`` with every character that could act on a terminal written as an escape."""
    if text.isprintable():  # the usual case: nothing to do (no Cc, Zl, Zp or Cf in it)
        return text
    return "".join(_shown(ch) for ch in text)


def spreadsheet_cell(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet shows as text and never runs as a formula."""
    if (
        isinstance(value, str)
        and value.startswith(_FORMULA_START)
        and not _PLAIN_NUMBER.fullmatch(value)
    ):
        return "'" + value
    return value
