"""Every input parser, fed arbitrary text or bytes, either returns rows and failures that
account for every row read (rows in = rows kept + rows rejected) or raises a
:class:`~marginflow.core.errors.MarginflowError`; never anything else (issue 11).

The CSV strategies mix a parser's own column names with hostile cells (huge, tiny, NaN,
negative, fractional numbers, dates out of range, markup, ESC, bidi, quotes and newlines),
so most examples get past the header and exercise the row checks, not only the file checks.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.core.errors import MarginflowError
from marginflow.engine.settings import MarginSettings
from marginflow.io import book as bk
from marginflow.io.csv_rows import Column, ParsedRows
from marginflow.io.option_csv import COLUMNS as OPTION_COLUMNS
from marginflow.io.option_csv import read_option_file
from marginflow.io.scenario_file import COLUMNS as SCENARIO_COLUMNS
from marginflow.io.scenario_file import read_scenario_file
from marginflow.io.source import read_json, read_toml
from marginflow.stream.cluster import ClusterConfig
from marginflow.stream.events import PriceUpdate
from marginflow.stream.sources import MARKET_COLUMNS as MARKET_EVENT_COLUMNS
from marginflow.stream.sources import TRADE_COLUMNS, read_market, read_trades

HOSTILE_CELLS = [
    "", " ", "0", "-0", "1", "-1", "0.5", "100", "2400", "1e308", "-1e308", "1e-308", "5e-324",
    "nan", "NaN", "inf", "-inf", "1e9", "1e10", "999999999999999999999", "0x10", "1_000",
    "2019-01-02", "2019-02-30", "0001-01-01", "9999-12-31", "2019-01-02T09:30:00Z",
    "call", "put", "stock", "european", "american", "house", "client", "*", "SPX", "A1", "M1",
    "SPXP", "current", "stressed", "[/x]", "[bold red]x[/]", ":100:", "=cmd|' /C calc'!A0",
    "\x1b[31mred", "\u202etxt", "\u00e9", "\ufeff", "a\"b", "\"", "\n", "\r\n", "\x00",
]  # fmt: skip
_cell = st.sampled_from(HOSTILE_CELLS) | st.text(max_size=8)


def csv_text(columns: Sequence[Column]) -> st.SearchStrategy[str]:
    """CSV text whose header is mostly the parser's own columns, and hostile rows."""
    names = [c.name for c in columns]
    header = st.lists(st.sampled_from(names) | st.text(max_size=6), min_size=1, max_size=9)
    header = st.one_of(st.permutations(names).map(list), header)

    def table(head: list[str]) -> st.SearchStrategy[str]:
        width = st.integers(min_value=max(len(head) - 1, 0), max_value=len(head) + 1)
        row = width.flatmap(lambda n: st.lists(_cell, min_size=n, max_size=n))
        return st.lists(row, max_size=8).map(lambda rows: _write([head, *rows]))

    return st.one_of(header.flatmap(table), st.text(max_size=200))


def _write(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def records(text: str) -> int:
    """Rows a CSV reader sees after the header (blank rows are not rows)."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    n, first = 0, True
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return n
        except csv.Error:
            n += 0 if first else 1
            first = False
            continue
        if first:
            first = False
            continue
        n += any(c.strip() for c in cells)


@contextmanager
def written(text: str | bytes, name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8", newline="")
        else:
            path.write_bytes(text)
        yield path


def accounts_for_every_row(text: str, parsed: ParsedRows) -> None:
    lines = set(parsed.lines)
    failed = [f.line for f in parsed.failures]
    assert not lines & set(failed), "a row is both kept and rejected"
    assert len(parsed.lines) + len(parsed.failures) == records(text)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BOOK_TABLES = {
    "market": bk.MARKET_COLUMNS,
    "underlyings": bk.UNDERLYING_COLUMNS,
    "members": bk.MEMBER_COLUMNS,
    "accounts": bk.ACCOUNT_COLUMNS,
    "instruments": bk.INSTRUMENT_COLUMNS,
    "positions": bk.POSITION_COLUMNS,
    "trades": TRADE_COLUMNS,
    "market-events": MARKET_EVENT_COLUMNS,
    "options": OPTION_COLUMNS,
    "scenarios": SCENARIO_COLUMNS,
}


@pytest.mark.parametrize("name", sorted(BOOK_TABLES))
def test_a_table_reader_keeps_or_rejects_every_row(name: str) -> None:
    columns = BOOK_TABLES[name]

    @FAST
    @given(csv_text(columns))
    def check(text: str) -> None:
        with written(text, f"{name}.csv") as path:
            try:
                parsed = bk.read_table(path, columns)
            except MarginflowError:
                return
            accounts_for_every_row(text, parsed)

    check()


def _outcome(read: Callable[[Path], Any], text: str | bytes, name: str) -> Any:
    with written(text, name) as path:
        try:
            return read(path)
        except MarginflowError as exc:
            error = exc
    assert "\n" not in str(error).strip(), "an error is one line"
    return error


@FAST
@given(csv_text(OPTION_COLUMNS))
def test_the_option_file(text: str) -> None:
    got = _outcome(read_option_file, text, "o.csv")
    if not isinstance(got, MarginflowError):
        assert len(got.batch) == len(got.rows.lines)
        accounts_for_every_row(text, got.rows)


@FAST
@given(csv_text(SCENARIO_COLUMNS), st.lists(st.sampled_from(["SPX", "IBM", "*"]), max_size=3))
def test_the_scenario_file(text: str, underlyings: list[str]) -> None:
    got = _outcome(lambda p: read_scenario_file(p, underlyings=underlyings), text, "s.csv")
    if not isinstance(got, MarginflowError):
        assert len(got.rows) + len(got.failures) == records(text)


@FAST
@given(csv_text([Column("date", str), Column("SPX", str), Column("NDX", str)]))
def test_the_history_file(text: str) -> None:
    _outcome(bk.read_history, text, "history.csv")


@FAST
@given(csv_text(TRADE_COLUMNS))
def test_the_trades_file(text: str) -> None:
    got = _outcome(read_trades, text, "trades.csv")
    if not isinstance(got, MarginflowError):
        assert len(got.trades) + len(got.failures) == records(text)


@FAST
@given(csv_text(MARKET_EVENT_COLUMNS))
def test_the_market_events_file(text: str) -> None:
    got = _outcome(read_market, text, "market.csv")
    if not isinstance(got, MarginflowError):
        prices = [e for e in got.market if isinstance(e, PriceUpdate)]  # one per row kept
        assert len(prices) + len(got.failures) == records(text)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_parquet(data: bytes) -> None:
    got = _outcome(lambda p: bk.read_table(p, bk.POSITION_COLUMNS), b"PAR1" + data, "p.parquet")
    assert isinstance(got, MarginflowError | ParsedRows)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
_settings_doc = st.dictionaries(
    st.sampled_from([*MarginSettings.__dataclass_fields__, "other"]), _json, max_size=5
)


@FAST
@given(st.one_of(_json, _settings_doc).map(json.dumps) | st.text(max_size=80))
def test_the_margin_settings_file(text: str) -> None:
    got = _outcome(lambda p: MarginSettings.from_json(read_json(p)), text, "margin.json")
    assert isinstance(got, MarginflowError | MarginSettings)


_toml_value = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.floats(allow_nan=False).map(repr),
    st.text(max_size=8).map(json.dumps),
    st.sampled_from(["true", "[]", "[1, 2]", "{}", "{ a = 1 }", "inf", "nan"]),
)
_toml_key = st.sampled_from(
    ["partitions", "accounts", "log", "mpor", "rate", "speed", "db", "margin", "x", "trades"]
)


@FAST
@given(
    st.lists(st.tuples(_toml_key, _toml_value), max_size=5).map(
        lambda kv: "[cluster]\n" + "".join(f"{k} = {v}\n" for k, v in kv)
    )
    | st.text(max_size=80)
)
def test_the_cluster_toml(text: str) -> None:
    got = _outcome(lambda p: ClusterConfig.load(p, {}), text, "cluster.toml")
    assert isinstance(got, MarginflowError | ClusterConfig)


def test_deep_nesting_in_configuration_is_one_line() -> None:
    for text, name, read in (
        ("[" * 100_000, "a.json", read_json),
        ("a = " + "[" * 100_000, "a.toml", read_toml),
    ):
        got = _outcome(read, text, name)
        assert isinstance(got, MarginflowError)
