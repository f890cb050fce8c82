"""``marginflow backtest`` as a user types it: tables, --json schema, --export round trip
(CSV and Parquet), --report, and bad input in one line with exit status 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from marginflow.io.book import write_book
from tests.backtest.conftest import one_equity_book
from tests.cli_runner import invoke

HOSTILE = "<script>alert(1)</script>"
WINDOW = ["--start", "2022-08-01", "--end", "2022-09-12"]  # rows 150..180
COMMON = ["--lookback", "60", "--stress", "none"]


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("btbook")
    write_book(folder, one_equity_book(calls=2.0, accounts=("ACC", HOSTILE)), fmt="csv")
    return folder


def backtest(book: Path, *args: str) -> object:
    return invoke(["backtest", "--book", str(book), *COMMON, *args])


def test_tables_and_progress(book: Path) -> None:
    res = backtest(book, *WINDOW, "--model", "es", "--model", "pm")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    out = res.stdout  # type: ignore[attr-defined]
    assert "firm and members" in out
    assert HOSTILE in out  # shown literally
    assert "ES 99%" in out
    assert "PM" in out
    assert "backtest: 31/31 days" in res.stderr  # type: ignore[attr-defined]


def test_json_schema(book: Path) -> None:
    res = backtest(book, *WINDOW, "--confidence", "0.99", "--confidence", "0.975", "--json")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    doc = json.loads(res.stdout)  # type: ignore[attr-defined]
    assert set(doc) == {
        "book", "window", "horizon_days", "realised_vols", "realised_pnl", "settings", "columns",
        "modes",
        "accounts", "instruments", "scenarios_per_day", "coverage", "worst_accounts", "timings",
        "notes",
    }  # fmt: skip
    assert doc["window"] == {
        "start": "2022-08-01", "end": "2022-09-12", "days": 31, "last_pnl_date": "2022-09-14",
    }  # fmt: skip
    assert [c["key"] for c in doc["columns"]] == ["es@0.99", "es@0.975"]
    assert doc["modes"] == ["static"]
    assert doc["realised_vols"] == "model"
    assert doc["realised_pnl"] == "full"
    row = next(r for r in doc["coverage"] if r["name"] == "ACC" and r["column"] == "es@0.99")
    assert set(row) == {
        "level", "name", "member", "mode", "model", "column", "confidence", "days", "breaches",
        "coverage", "expected_rate", "kupiec", "independence", "conditional_coverage",
        "test_level", "zone", "zone_probability", "transitions", "worst_excess",
    }  # fmt: skip
    assert row["breaches"] == 2  # the two days before the crash
    assert row["expected_rate"] == 0.01
    assert set(row["kupiec"]) == {"lr", "p_value", "reject"}
    assert {r["level"] for r in doc["coverage"]} == {"firm", "member", "account"}
    assert any(r["name"] == HOSTILE for r in doc["coverage"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trip(book: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"export{suffix}"
    res = backtest(book, *WINDOW, "--model", "es", "--model", "span", "--export", str(out),
                   "--json")  # fmt: skip
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    doc = json.loads(res.stdout)  # type: ignore[attr-defined]
    if suffix == ".csv":
        with open(out, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = pq.read_table(out).to_pylist()
    assert len(rows) == 31 * 2
    accounts = {r["account"] for r in rows}
    # the CSV neutralises a cell a spreadsheet would run (none here: < is not a formula)
    assert accounts == {"ACC", HOSTILE}
    acc = [r for r in rows if r["account"] == "ACC"]
    breaches = [r["day"] for r in acc if str(r["breach:es@0.99"]) == "True"]
    assert breaches == ["2022-08-25", "2022-08-26"]
    # the export's breaches are the JSON's counts
    row = next(r for r in doc["coverage"] if r["name"] == "ACC" and r["column"] == "span")
    assert sum(str(r["breach:span"]) == "True" for r in acc) == row["breaches"]
    pnl = np.array([float(r["pnl"]) for r in acc])
    margin = np.array([float(r["margin:es@0.99"]) for r in acc])
    assert [r["day"] for r in acc if -float(r["pnl"]) > float(r["margin:es@0.99"])] == breaches
    assert np.isfinite(pnl).all()
    assert (margin >= 0).all()


def test_report_written(book: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = backtest(book, *WINDOW, "--report", str(out))
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    html = out.read_text(encoding="utf-8")
    assert "<svg" in html
    assert HOSTILE not in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "5000"], "error: 5000 days do not fit: the history"),
        (["--model", "var"], "error: unknown model 'var'; known: es, span, pm"),
        (["--start", "2022-13-01"], "error: --start '2022-13-01': not a date (YYYY-MM-DD)"),
        (["--start", "2022-01-10"], "error: --start 2022-01-10: its scenarios need 110 returns"),
        (["--end", "2031-01-01"], "error: --end 2031-01-01: its 2-day P&L needs closes after"),
        (["--start", "2022-09-01", "--end", "2022-08-02"], "is after --end 2022-08-02"),
        (["--accounts", "NOBODY"], "error: --accounts: unknown account 'NOBODY'"),
        (["--mode", "dynamic"], "error: --mode dynamic needs --database"),
        (["--mode", "sideways"], "error: --mode must be one of auto, static, dynamic, both"),
        (["--realised-vols", "implied"], "error: --realised-vols must be one of model, held"),
        (["--pnl", "dirty"], "error: --pnl must be one of full, clean"),
        (["--export", "x.xlsx"], "error: --export x.xlsx: the file must end in .csv or .parquet"),
        (["--model", "span", "--confidence", "0.99"], "--confidence"),
        (["--json", "--limit", "3"], "--limit"),
    ],
)
def test_bad_input_is_one_line(book: Path, args: list[str], message: str) -> None:
    res = backtest(book, *args)
    assert res.exit_code == 2, res.output  # type: ignore[attr-defined]
    err = res.stderr.strip()  # type: ignore[attr-defined]
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in res.output  # type: ignore[attr-defined]


def test_missing_history(tmp_path: Path, book: Path) -> None:
    folder = tmp_path / "nohist"
    folder.mkdir()
    for f in book.iterdir():
        if f.stem != "history":
            (folder / f.name).write_bytes(f.read_bytes())
    res = backtest(folder)
    assert res.exit_code == 2  # type: ignore[attr-defined]
    assert "no price history" in res.stderr  # type: ignore[attr-defined]
