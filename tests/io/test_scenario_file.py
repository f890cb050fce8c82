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
        "odd,SPX,0.1,0.1,sometimes\n",
        encoding="utf-8",
    )
    sf = read_scenario_file(p)
    got = [(f.line, f.field, f.reason) for f in sf.failures]
    assert got == [
        (5, "spot_shock", "must be > -1 (a relative move), got '-1.5'"),
        (
            6,
            "underlying",
            "duplicate shock for scenario 'crash', underlying 'SPX' (first on line 3)",
        ),
        (7, "group", "must be one of current, stressed, got 'sometimes'"),
    ]
    s = sf.scenario_set(underlyings=["SPX", "IBM"], horizon_days=2)
    assert s.labels == ("crash", "rally")
    assert s.group.tolist() == [1, 0]
    assert s.vol_shock[1, 1] == 0.0  # blank vol shock: 0


def test_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("scenario,underlying\nx,SPX\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="spot_shock"):
        read_scenario_file(p)
