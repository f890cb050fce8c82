"""The default-fund file: contributions within [0, CONTRIBUTION_MAX], for exactly the book's
members, refused whole with the file, line and field (hostile files: tests/hostile/corpus/
stress-fund; any bytes: test_file_properties)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginflow.core.errors import ValidationError
from marginflow.core.limits import CONTRIBUTION_MAX
from marginflow.stress.default_fund import read_default_fund


def _fund(tmp_path: Path, *rows: str) -> Path:
    p = tmp_path / "fund.csv"
    p.write_text("member,contribution\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return p


def test_contributions_read_as_written(tmp_path: Path) -> None:
    p = _fund(tmp_path, "M2,2500.5", "M1,0", "M3,1e15")
    assert read_default_fund(p, ["M1", "M2", "M3"]) == {"M1": 0.0, "M2": 2500.5, "M3": 1e15}
    assert CONTRIBUTION_MAX == 1e15


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("M2,1.0000001e15", "must be within [0, 1e+15] (currency), got '1.0000001e15'"),
        ("M2,1e308", "must be within [0, 1e+15] (currency), got '1e308'"),
        ("M2,-1", "must be >= 0, got '-1'"),
        ("M2,nan", "must be finite, got 'nan'"),
    ],
)
def test_a_contribution_out_of_bounds_refuses_the_file(
    tmp_path: Path, row: str, reason: str
) -> None:
    p = _fund(tmp_path, "M1,1", row)
    with pytest.raises(ValidationError) as exc:
        read_default_fund(p, ["M1", "M2"])
    assert str(exc.value) == f"contribution: {p}:3: {reason}"


def test_a_long_member_name_is_cut_in_the_message(tmp_path: Path) -> None:
    p = _fund(tmp_path, "M1,1", "M" * 100_000 + ",2")
    with pytest.raises(ValidationError) as exc:
        read_default_fund(p, ["M1"])
    assert (
        str(exc.value) == f"member: {p}:3: {repr('M' * 100_000)[:80]} is not a member of the book"
    )
