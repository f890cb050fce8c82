"""Properties of the stress command's file readers over hostile input (Hypothesis): a stress
set in TOML (:func:`load_stress_set`), a stress set as a scenario CSV
(:func:`stress_set_from_scenario_file`) and the default-fund file (:func:`read_default_fund`).

Whatever the bytes, each either returns a valid value or raises a
:class:`~marginflow.core.errors.ValidationError` whose message is one printable line
``field: ...file[:line]...: reason`` (a line it names lies within the file); never any other
exception. What it returns holds what the docstrings promise: a set that covers the book's
underlyings with finite shocks in (-1, 10], contributions for exactly the book's members in
[0, CONTRIBUTION_MAX]."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from marginflow.core.errors import ValidationError
from marginflow.core.limits import CONTRIBUTION_MAX
from marginflow.stress.default_fund import read_default_fund
from marginflow.stress.scenarios import (
    FORMAT,
    StressSet,
    load_stress_set,
    stress_set_from_scenario_file,
    stress_set_toml,
)

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
UNDERLYINGS = ("SPX", "NDX")
MEMBERS = ("M1", "M2")


def _result_or_refusal(read: Callable[[Path], Any], path: Path) -> Any:
    """What ``read(path)`` returns, or its refusal checked to be one located line."""
    try:
        return read(path)
    except ValidationError as exc:
        refusal = exc
    text = str(refusal)
    assert text.isprintable(), text  # one line, no control or format character
    assert refusal.field, text
    assert text.startswith(f"{refusal.field}: "), text
    assert str(path) in text, text
    assert text.replace(str(path), "").strip(" :"), text  # a reason beyond the file name
    # lines end as the readers count them (csv_rows.numbered): at \n, \r\n or a lone \r
    n_lines = len(re.findall(rb"\r\n|\r|\n", path.read_bytes())) + 1
    for named in re.findall(rf"{re.escape(str(path))}:(\d+)", text):
        assert 1 <= int(named) <= n_lines, text
    return refusal


def _file(factory: pytest.TempPathFactory, name: str, data: bytes) -> Path:
    path = factory.mktemp("f") / name
    path.write_bytes(data)
    return path


def _check_set(result: Any) -> None:
    if isinstance(result, ValidationError):
        return
    assert isinstance(result, StressSet)
    assert len(set(result.labels)) == len(result.labels)
    scen = result.scenario_set(UNDERLYINGS)  # the loaders refused every gap
    for shocks in (scen.spot_shock, scen.vol_shock):
        assert np.isfinite(shocks).all()
        assert (shocks > -1).all()
        assert (shocks <= 10).all()


# --- TOML stress sets ---------------------------------------------------------------------

GOOD_TOML = f"""\
format = "{FORMAT}"
name = "props"
version = "1"
scaling = "none"

[[scenario]]
label = "crash"
spot_shock = -0.2
vol_shock = 0.5

[scenario.shocks]
NDX = {{ spot_shock = -0.3, vol_shock = 0.8 }}
"""


def _load_toml(path: Path) -> StressSet:
    return load_stress_set(path, underlyings=UNDERLYINGS)


def _toml_value(value: Any) -> str:
    """``value`` as TOML text (any type TOML has, good or not for the key it is given to)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{_toml_str(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"


def _toml_str(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but JSON leaves DEL raw (TOML does not
    take it) and writes characters beyond the BMP as surrogate pairs (TOML does not take
    those either); a lone surrogate stays, to be refused as not UTF-8."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


KEYS = [
    "format", "name", "version", "description", "scaling", "params", "scenario", "label",
    "spot_shock", "vol_shock", "start", "end", "horizon_days", "source", "vol_source", "note",
    "shocks", "SPX", "NDX", "NOPE", "*", "", "[/x]", "<script>", "\x1b[2J", "\u202e", "k" * 300,
]  # fmt: skip
TEXTS = ["crash", "props", "1", "none", "beta", FORMAT, "", " a ", "[/x]", "<script>", "\x1b[2J",
         "\u202e", "\n", "\x00", "L" * 201, "\udcff"]  # fmt: skip
NUMBERS = [-0.2, 0.5, 0.0, -1.0, 10.0, 10.5, 1e308, -1e308, 5e-324, math.nan, math.inf,
           -math.inf, 1, 0, -1, 2520, 2521, 2**63, -(2**70)]  # fmt: skip
scalar = st.one_of(
    st.sampled_from(TEXTS),
    st.text(max_size=12),
    st.sampled_from(NUMBERS),
    st.floats(),
    st.integers(),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
)
toml_value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4),
    ),
    max_leaves=12,
)
key = st.sampled_from(KEYS) | st.text(max_size=8)
GOOD = {
    "format": st.just(FORMAT), "name": st.just("props"), "version": st.just("1"),
    "scaling": st.sampled_from(["none", "beta"]), "description": st.just("hostile"),
    "label": st.text("abcxyz:-/ 019", min_size=1, max_size=8).map(lambda t: t.strip() or "x"),
    "spot_shock": st.floats(-0.99, 10.0), "vol_shock": st.floats(-0.99, 10.0),
    "horizon_days": st.integers(1, 2520),
}  # fmt: skip


@st.composite
def assignments(draw: st.DrawFn, keys: list[str]) -> list[str]:
    """``key = value`` lines: each of ``keys`` with a good value (mostly: a document must
    often be good throughout to reach the checks after parsing) or any value, or left out,
    now and then a key of any name."""
    lines = []
    for k in keys:
        kind = draw(st.sampled_from(["good"] * 8 + ["any", "absent"]))
        if kind == "absent":
            continue
        good = GOOD.get(k)
        value = draw(good if kind == "good" and good is not None else toml_value)
        lines.append(f"{k} = {_toml_value(value)}")
    for extra in draw(st.lists(key, max_size=1)) if draw(st.integers(0, 5)) == 0 else []:
        lines.append(f"{_toml_str(extra)} = {_toml_value(draw(toml_value))}")
    return lines


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    top = draw(assignments(["format", "name", "version", "scaling", "description"]))
    out = list(dict.fromkeys(top))
    if draw(st.booleans()):
        out += ["[params]", *draw(assignments(["source"]))]
    for _ in range(draw(st.integers(1, 4))):
        market = ["spot_shock", "vol_shock"] if draw(st.booleans()) else []  # or named only
        out += ["", "[[scenario]]", *draw(assignments(["label", *market]))]
        if draw(st.booleans()):
            out.append("[scenario.shocks]")
            for u in draw(st.lists(st.sampled_from([*UNDERLYINGS, "NOPE"]) | key, max_size=3)):
                shock = draw(assignments(["spot_shock", "vol_shock"]))
                out.append(f"{_toml_str(u)} = {{ {', '.join(shock)} }}")
    return "\n".join(out) + "\n"


@st.composite
def mostly_good_toml(draw: st.DrawFn) -> str:
    """A good header and scenarios with market moves or named shocks only (a gap when they
    leave out an underlying of the book), now and then a shock of any number."""
    out = [f'format = "{FORMAT}"', 'name = "props"', 'version = "1"', 'scaling = "none"']
    shock = st.floats(-0.99, 10.0) | st.sampled_from(NUMBERS)
    for k in range(draw(st.integers(1, 3))):
        out += ["", "[[scenario]]", f'label = "s{k}"']
        if draw(st.booleans()):
            out.append(f"spot_shock = {_toml_value(draw(shock))}")
        named = draw(st.lists(st.sampled_from([*UNDERLYINGS, "NOPE"]), max_size=3, unique=True))
        if named:
            out.append("[scenario.shocks]")
            out += [f"{u} = {{ spot_shock = {_toml_value(draw(shock))} }}" for u in named]
    return "\n".join(out) + "\n"


@SETTINGS
@given(text=mostly_good_toml())
def test_toml_mostly_good_documents(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    _check_set(_result_or_refusal(_load_toml, _file(tmp_path_factory, "s.toml", text.encode())))


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_toml_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _check_set(_result_or_refusal(_load_toml, _file(tmp_path_factory, "s.toml", data)))


@SETTINGS
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(GOOD_TOML)), st.integers(0, 3), st.binary(max_size=3)),
        max_size=4,
    )
)
def test_toml_damaged_good_file(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, int, bytes]]
) -> None:
    data = GOOD_TOML.encode()
    for at, cut, insert in edits:
        data = data[:at] + insert + data[at + cut :]
    _check_set(_result_or_refusal(_load_toml, _file(tmp_path_factory, "s.toml", data)))


@SETTINGS
@given(text=toml_documents())
def test_toml_documents_of_any_shape(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    _check_set(_result_or_refusal(_load_toml, _file(tmp_path_factory, "s.toml", data)))


def test_the_generated_documents_reach_good_sets(tmp_path: Path) -> None:
    """The grammar above is not all refusals: the good file loads (so the properties see
    both sides), and its file form reads back the same set."""
    good = _load_toml(_file_at(tmp_path / "good.toml", GOOD_TOML.encode()))
    again = _load_toml(_file_at(tmp_path / "again.toml", stress_set_toml(good).encode()))
    assert again.fingerprint == good.fingerprint


def _file_at(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- scenario CSVs as stress sets ---------------------------------------------------------


def _load_csv(path: Path) -> StressSet:
    return stress_set_from_scenario_file(path, name="p", version="1", underlyings=UNDERLYINGS)


CELLS = ["crash", "up", "*", "SPX", "NDX", "NOPE", "-0.2", "0.5", "0", "-1", "10", "10.5",
         "1e308", "nan", "inf", "-0", "0x10", "", " ", "[/x]", "<script>", "\x1b[2J", "\u202e",
         "\n", "\r", '"', ",", "\x00", "current", "stressed", "L" * 201]  # fmt: skip
cell = st.sampled_from(CELLS) | st.text(max_size=6)
HEADERS = [["scenario", "underlying", "spot_shock", "vol_shock"],
           ["scenario", "underlying", "spot_shock"],
           ["scenario", "underlying", "spot_shock", "vol_shock", "group"],
           ["underlying", "scenario", "vol_shock", "spot_shock"]]  # fmt: skip


@st.composite
def csv_files(draw: st.DrawFn, headers: list[list[str]], cells: st.SearchStrategy[str]) -> bytes:
    header = draw(st.sampled_from(headers) | st.lists(cells, max_size=5))
    width = st.integers(max(len(header) - 1, 0), len(header) + 1)
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(cells, min_size=n, max_size=n)),
                         max_size=8))  # fmt: skip
    out = io.StringIO()
    csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows([header, *rows])
    return out.getvalue().encode("utf-8", "surrogatepass")


@st.composite
def shock_files(draw: st.DrawFn) -> bytes:
    """Mostly good shock rows: a few scenarios, each of market and named rows or named rows
    only (a gap when they leave out an underlying of the book), now and then a bad cell."""
    rows = [["scenario", "underlying", "spot_shock", "vol_shock"]]
    shock = st.floats(-0.99, 10.0).map(repr) | st.sampled_from(CELLS)
    for label in draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6)):
        under = draw(st.sampled_from(["*", *UNDERLYINGS, "NOPE"]))
        rows.append([label, under, draw(shock), draw(shock)])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


@SETTINGS
@given(data=shock_files())
def test_scenario_csv_mostly_good_rows(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    _check_set(_result_or_refusal(_load_csv, _file(tmp_path_factory, "s.csv", data)))


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_scenario_csv_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _check_set(_result_or_refusal(_load_csv, _file(tmp_path_factory, "s.csv", data)))


@SETTINGS
@given(data=csv_files(HEADERS, cell))
def test_scenario_csv_rows_of_any_cells(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    _check_set(_result_or_refusal(_load_csv, _file(tmp_path_factory, "s.csv", data)))


# --- default-fund files -------------------------------------------------------------------


def _read_fund(path: Path) -> dict[str, float]:
    return read_default_fund(path, MEMBERS)


def _check_fund(result: Any) -> None:
    if isinstance(result, ValidationError):
        return
    assert set(result) == set(MEMBERS)
    for value in result.values():
        assert math.isfinite(value)
        assert 0 <= value <= CONTRIBUTION_MAX


FUND_CELLS = ["M1", "M2", "M3", "m1", " M1 ", "", "1000", "0", "-0", "-1", "1e15", "1e16",
              "1e308", "nan", "inf", "5e-324", "1_000", "1,000", "[/x]", "<script>",
              "\x1b[31mM1", "M1\n", "\u202eM2", "\x00", '"']  # fmt: skip
FUND_HEADERS = [["member", "contribution"], ["contribution", "member"],
                ["member", "contribution", "note"], ["member"]]  # fmt: skip


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_fund_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _check_fund(_result_or_refusal(_read_fund, _file(tmp_path_factory, "f.csv", data)))


@SETTINGS
@given(data=csv_files(FUND_HEADERS, st.sampled_from(FUND_CELLS) | st.text(max_size=6)))
def test_fund_rows_of_any_cells(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _check_fund(_result_or_refusal(_read_fund, _file(tmp_path_factory, "f.csv", data)))


@SETTINGS
@given(values=st.lists(st.floats(0, CONTRIBUTION_MAX), min_size=2, max_size=2))
def test_fund_good_files_read_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, values: list[float]
) -> None:
    text = "member,contribution\n" + "".join(
        f"{m},{v!r}\n" for m, v in zip(MEMBERS, values, strict=True)
    )
    got = _read_fund(_file(tmp_path_factory, "f.csv", text.encode()))
    assert got == dict(zip(MEMBERS, values, strict=True))
