"""``marginflow price`` and ``marginflow demo`` through the real console script."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

EXE = shutil.which("marginflow")
HEADER = "kind,style,spot,strike,expiry_years,rate,dividend_yield,vol"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run(
        [EXE, *args], input=stdin, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def option_file(tmp_path: Path) -> Path:
    path = tmp_path / "opts.csv"
    path.write_text(
        f"{HEADER},id\n"
        "call,european,60,65,0.25,0.08,0,0.30,a\n"
        "put,american,100,95,1,0.075,0.05,0.25,b\n"
        "call,european,60,-65,0.25,0.08,0,0.30,c\n"
        "put,american,40,40,0.5833333333,0.0488,0,0.20,d\n"
    )
    return path


def test_price_writes_csv_names_bad_row_and_exits_2(option_file: Path, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    res = run("price", str(option_file), "--rejects", str(rejects))
    assert res.returncode == 2
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["id"] for r in rows] == ["a", "b", "d"]
    assert float(rows[0]["price"]) == pytest.approx(2.1334, abs=5e-5)
    assert float(rows[2]["price"]) == pytest.approx(1.9908, abs=5e-4)
    assert "opts.csv:4: strike: must be > 0, got '-65'" in res.stderr.replace("\n", "")
    assert "Traceback" not in res.stderr
    kept = list(csv.DictReader(rejects.open()))
    assert kept[0]["line"] == "4"
    assert kept[0]["raw"].startswith("call,european,60,-65")


def test_price_json_lines_with_greeks(option_file: Path) -> None:
    res = run("price", str(option_file), "--json", "--greeks")
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["line"] for r in records] == [2, 3, 5]
    assert {"price", "delta", "gamma", "vega", "theta", "rho"} <= set(records[0])
    assert records[1]["delta"] < 0 < records[1]["gamma"]


def test_price_reads_stdin_and_all_good_exits_0() -> None:
    res = run("price", "-", stdin=f"{HEADER}\ncall,european,60,65,0.25,0.08,0,0.30\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].endswith(",price")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("kind,style\ncall,european\n", "spot: column is missing"),
    ],
)
def test_whole_file_errors_are_one_clear_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "x.csv"
    if content is not None:
        path.write_text(content)
    res = run("price", str(path))
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
