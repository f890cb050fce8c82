"""The user scenario file."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginflow.core.errors import ValidationError
from marginflow.io.scenario_file import read_scenario_file


def test_reads_groups_wildcards_and_rejects(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text(
        "scenario,underlying,spot_shock,vol_shock,group\n"
        "crash,*,-0.20,0.60,stressed\n"
        "crash,SPX,-0.15,0.80,stressed\n"
        "rally,*,0.10,,\n"
        "bad,SPX,-1.5,0,\n"
        "crash,SPX,-0.10,0.2,\n"
        "odd,SPX,0.1,0.1,sometimes\n"
        "fall,*,-0.1,0.1,stressed\n"
        "fall,SPY,-0.5,0.1,stressed\n"
        "dip,SPX,-0.05,0.1,\n"
        "dip,IBM,-0.05,0.1,stressed\n",
        encoding="utf-8",
    )
    sf = read_scenario_file(p, underlyings=["SPX", "IBM"])
    refused = "scenario {!r} is refused: its row on line {} was rejected"
    expected = [
        (2, "scenario", refused.format("crash", 6)),
        (3, "scenario", refused.format("crash", 6)),
        (5, "spot_shock", "must be > -1 (a relative move), got '-1.5'"),
        (6, "underlying", "duplicate shock for scenario 'crash', underlying 'SPX' (first on"),
        (7, "group", "must be one of current, stressed, got 'sometimes'"),
        (8, "scenario", refused.format("fall", 9)),
        (9, "underlying", "'SPY' is not an underlying of the book"),
    ]
    assert [(f.line, f.field) for f in sf.failures] == [(line, fld) for line, fld, _ in expected]
    for f, (_, _, reason) in zip(sf.failures, expected, strict=True):
        assert f.reason.startswith(reason), f.reason
    # rows in = rows kept + rows rejected: nothing is dropped on the way
    assert len(sf.rows) + len(sf.failures) == 11 - 1
    s = sf.scenario_set(underlyings=["SPX", "IBM"], horizon_days=2)
    assert s.labels == ("rally", "dip")
    assert s.group.tolist() == [0, 1]
    assert s.vol_shock[1, 0] == 0.0  # blank vol shock: 0


def test_a_file_whose_every_scenario_is_refused_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("scenario,underlying,spot_shock\ncrash,SPX,-1.5\ncrash,*,0\n")
    with pytest.raises(ValidationError, match=r"s\.csv has no valid rows \(line 2: spot_shock"):
        read_scenario_file(p, underlyings=["SPX"])


def test_a_reject_that_names_no_scenario_refuses_the_file(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("scenario,underlying,spot_shock\n,SPX,-0.1\nup,*,0.1\n")
    with pytest.raises(ValidationError, match=r"s\.csv:2: the row is rejected"):
        read_scenario_file(p, underlyings=["SPX"])


def test_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("scenario,underlying\nx,SPX\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="spot_shock"):
        read_scenario_file(p, underlyings=["SPX"])


def test_read_without_a_book_keeps_any_underlying_and_each_rows_line(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("scenario,underlying,spot_shock\n\ncrash,*,-0.2\ncrash,ANY,-0.3\n")
    sf = read_scenario_file(p, underlyings=None)
    assert [(r.underlying, r.spot_shock) for r in sf.rows] == [("*", -0.2), ("ANY", -0.3)]
    assert sf.lines == (3, 4)  # the blank line 2 is skipped, not renumbered
    assert sf.failures == []
