"""``marginflow stress`` as a user types it: tables and JSON naming each set, the export's
round trip, the report file, and one-line refusals of bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from marginflow.app.stress import run_stress
from marginflow.engine.settings import MarginSettings
from marginflow.io.book import load_book
from marginflow.stress.library import builtin_set
from marginflow.stress.scenarios import save_stress_set, stress_set_toml
from tests.cli_runner import invoke
from tests.stress.books import HOSTILE_ACCOUNT, HOSTILE_MEMBER, stress_book


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stress_book(tmp_path_factory.mktemp("stress-book"))


def stress(book: Path, *args: str | Path) -> tuple[int, str, str]:
    res = invoke(["stress", "--book", book, "--margin-scenarios", book / "margin.csv", *args])
    return res.exit_code, res.stdout, res.stderr


def test_json_document_names_the_sets_and_holds_every_part(book: Path) -> None:
    code, out, err = stress(book, "--json", "--history-days", "2")
    assert code == 0, err
    doc = json.loads(out)
    want = [builtin_set("historical"), builtin_set("published")]
    assert [
        (s["name"], s["version"], s["fingerprint"], s["scenarios"]) for s in doc["stress_sets"]
    ] == [(s.name, s.version, s.fingerprint, len(s.scenarios)) for s in want]
    assert set(doc) >= {
        "valuation_date", "margin_model", "betas", "conventions", "firm", "members",
        "accounts", "cover1", "cover2", "default_fund", "reverse_stress", "history",
        "scenarios", "rejected_rows",
    }  # fmt: skip
    assert len(doc["scenarios"]) == 137
    assert len(doc["accounts"]) == 9
    members = {m["member"] for m in doc["members"]}
    assert HOSTILE_MEMBER in members
    assert HOSTILE_ACCOUNT in {a["account"] for a in doc["accounts"]}
    for m in doc["members"]:
        assert {"margin", "contribution", "gross_loss", "gross_loss_scenario", "uncovered",
                "uncovered_scenario", "uncovered_netted"} <= m.keys()  # fmt: skip
        assert m["uncovered"] >= m["uncovered_netted"] - 1e-6  # netting never adds
    fund = doc["default_fund"]
    assert fund["cover"] == 2
    assert fund["fund"] == pytest.approx(doc["cover2"]["fund"])
    assert sum(fund["contributions"].values()) == pytest.approx(fund["fund"])
    assert doc["cover2"]["fund"] >= doc["cover1"]["fund"]
    assert len(doc["cover2"]["members"]) <= 2
    assert len(doc["reverse_stress"]) == 2 * len(members)
    for r in doc["reverse_stress"]:
        assert r["direction"] in ("down", "up")
        assert (r["move"] is not None) == r["exhausted"]
        if r["move"] is not None:
            assert 0 < abs(r["move"]) <= 0.5
            assert (r["move"] < 0) == (r["direction"] == "down")
    days = doc["history"]["days"]
    assert len(days) == 2
    assert "positions" in doc["history"]["held_constant"]
    assert all(len(d["cover2_members"]) <= 2 for d in days)
    assert doc["rejected_rows"] == 0


def test_tables_name_set_version_and_fingerprint(book: Path) -> None:
    code, out, err = stress(book, "--set", "published", "--version", "1", "--top", "3")
    assert code == 0, err
    fp = builtin_set("published", "1").fingerprint
    assert f"published version 1 (fingerprint {fp}, 10 scenarios)" in out
    for title in ("firm", "members:", "default fund", "reverse stress", "worst scenarios"):
        assert title in out
    assert HOSTILE_ACCOUNT in out  # shown literally, not as markup
    assert HOSTILE_MEMBER in out
    assert "reverse stress: " in err  # progress on standard error
    assert "brackets refined" in err


def test_export_csv_and_parquet_read_back_equal_the_matrix(book: Path, tmp_path: Path) -> None:
    loaded = load_book(book)
    expected = run_stress(
        loaded,
        builtin_set("published"),
        settings=MarginSettings(),
        margin_scenarios_file=book / "margin.csv",
        reverse=False,
    )
    for name in ("pnl.csv", "pnl.parquet"):
        path = tmp_path / name
        code, _, err = stress(book, "--set", "published", "--no-reverse", "--export", path)
        assert code == 0, err
        frame = pd.read_csv(path) if name.endswith(".csv") else pq.read_table(path).to_pandas()
        assert list(frame.columns) == ["account", "member", *expected.labels]
        assert list(frame["account"]) == list(expected.accounts)
        members = [expected.members[m] for m in expected.account_member]
        # the CSV guards a formula-like cell for spreadsheets: '=cmd...' becomes "'=..."
        shown = [("'" + m if m.startswith("=") else m) for m in members]
        assert list(frame["member"]) == shown
        if name.endswith(".parquet"):  # the file names the set it came from
            meta = pq.read_schema(path).metadata
            assert builtin_set("published").fingerprint.encode() in meta[b"stress_sets"]
        got = frame[list(expected.labels)].to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(got, expected.pnl)  # bit for bit: shortest repr


def test_report_file_escapes_names(book: Path, tmp_path: Path) -> None:
    out = tmp_path / "stress.html"
    code, _, err = stress(book, "--set", "published", "--report", out)
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert builtin_set("published").fingerprint in page
    assert page.count("<svg") == 4  # members, three worst accounts


def test_a_scenario_csv_and_a_toml_file_are_sets(book: Path, tmp_path: Path) -> None:
    shocks = tmp_path / "My Shocks.csv"
    shocks.write_text(
        "scenario,underlying,spot_shock,vol_shock\ncrash,*,-0.25,0.9\ncrash,SPX,-0.2,0.8\n"
        "melt-up,*,0.2,-0.2\n"
    )
    code, out, err = stress(book, "--set", shocks, "--version", "7", "--json", "--no-reverse")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["stress_sets"][0]["name"] == "my-shocks"
    assert doc["stress_sets"][0]["version"] == "7"
    assert [s["scenario"] for s in doc["scenarios"]] == ["crash", "melt-up"]
    toml = tmp_path / "published.toml"
    save_stress_set(builtin_set("published"), toml)
    code, out, err = stress(book, "--set", toml, "--json", "--no-reverse")
    assert code == 0, err
    assert json.loads(out)["stress_sets"][0]["fingerprint"] == builtin_set("published").fingerprint


def test_default_fund_file_replaces_the_contributions(book: Path, tmp_path: Path) -> None:
    members = load_book(book).book.positions.members
    fund = tmp_path / "fund.csv"
    fund.write_text(
        "member,contribution\n" + "".join(f"{m},{1000 * (i + 1)}\n" for i, m in enumerate(members))
    )
    code, out, err = stress(book, "--set", "published", "--default-fund", fund, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["default_fund"]["contributions"] == {
        m: 1000.0 * (i + 1) for i, m in enumerate(members)
    }
    assert doc["default_fund"]["source"] == f"file {fund}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "nonesuch"], "--set 'nonesuch': not a built-in set"),
        (["--set", "published", "--version", "9"], "stress set 'published' has no version '9'"),
        (["--version", "1"], "--version applies to one --set"),
        (["--export", "pnl.txt"], "name a .csv or .parquet file"),
        (["--history-days", "999999"], "history_days: must be in 1.."),
        (["--min-contribution", "1e308"], "'--min-contribution': Input should be less than"),
        (["--min-contribution", "nan"], "'--min-contribution': Input should be less than"),
    ],
)
def test_bad_options_are_one_line(book: Path, args: list[str], message: str) -> None:
    code, _, err = stress(book, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_bad_files_name_file_line_and_field(book: Path, tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    text = stress_set_toml(builtin_set("published")).replace(
        "spot_shock = -0.205", "spot_shock = -1.5", 1
    )
    toml.write_text(text)
    line = text.splitlines().index("spot_shock = -1.5") + 1
    code, _, err = stress(book, "--set", toml)
    assert code == 2
    assert f"spot_shock: {toml}:{line}: scenario 'pub:1987-10-19': must be > -1" in err
    csv = tmp_path / "bad.csv"
    csv.write_text("scenario,underlying,spot_shock\ncrash,*,-0.2\ncrash,SPX,lots\nup,*,0.1\n")
    code, _, err = stress(book, "--set", csv)
    assert code == 2
    assert f"spot_shock: {csv}:3: is not a number: 'lots'" in err
    fund = tmp_path / "fund.csv"
    fund.write_text("member,contribution\nM000,-3\n")
    code, _, err = stress(book, "--default-fund", fund)
    assert code == 2
    assert f"contribution: {fund}:2: must be >= 0" in err
    code, _, err = stress(book, "--default-fund", tmp_path / "absent.csv")
    assert code == 2
    assert "absent.csv" in err
    assert "Traceback" not in err


def test_a_set_that_leaves_a_book_underlying_unmoved_is_refused_before_the_run(
    book: Path, tmp_path: Path
) -> None:
    first = load_book(book).book.underlyings.ids[0]
    csv = tmp_path / "gap.csv"
    csv.write_text("scenario,underlying,spot_shock\nup,*,0.1\nodd,NOPE,-0.1\n")
    code, _, err = stress(book, "--set", csv)
    assert code == 2
    assert err.splitlines() == [  # no progress line: the run never started
        f"error: underlying: {csv}:3: scenario 'odd' has no row for {first!r} of the book "
        f"and no '*' row ({len(load_book(book).book.underlyings.ids)} such gaps in the set)"
    ]


def test_two_sets_sharing_a_label_are_refused_before_the_run(book: Path) -> None:
    code, _, err = stress(book, "--set", "published", "--set", "published")
    assert code == 2
    assert err.splitlines() == [
        "error: stress sets 'published' and 'published' both have a scenario labelled "
        f"{builtin_set('published').labels[0]!r}"
    ]


def test_markup_in_a_set_file_is_shown_as_text(book: Path, tmp_path: Path) -> None:
    published = builtin_set("published")
    label = "[bold red]crash[/] <script>alert(1)</script>"
    first = dataclasses.replace(published.scenarios[0], label=label)
    toml = tmp_path / "markup.toml"
    save_stress_set(
        dataclasses.replace(published, scenarios=(first, *published.scenarios[1:])), toml
    )
    report = tmp_path / "r.html"
    code, out, err = stress(book, "--set", toml, "--no-reverse", "--top", "20", "--report", report)
    assert code == 0, err
    assert label in out
    html = report.read_text()
    assert "<script>" not in html
    assert "[bold red]crash[/] &lt;script&gt;" in html


def test_rejected_book_rows_exit_2_after_the_run(book: Path, tmp_path: Path) -> None:
    folder = stress_book(tmp_path / "b", hostile=False)
    pos = folder / "positions.csv"
    pos.write_text(pos.read_text() + "A0001,SPX,lots\n")
    rejects = tmp_path / "rejects.csv"
    res = invoke(
        ["stress", "--book", folder, "--margin-scenarios", folder / "margin.csv",
         "--set", "published", "--no-reverse", "--json", "--rejects", rejects]
    )  # fmt: skip
    assert res.exit_code == 2
    assert "quantity: is not a number: 'lots'" in res.stderr
    assert json.loads(res.stdout)["rejected_rows"] == 1
    assert len(rejects.read_text().splitlines()) == 2


def test_rejected_book_rows_are_kept_when_a_set_refuses_the_run(tmp_path: Path) -> None:
    folder = stress_book(tmp_path / "b", hostile=False)
    pos = folder / "positions.csv"
    pos.write_text(pos.read_text() + "A0001,SPX,lots\n")
    bad_set = tmp_path / "bad.toml"
    bad_set.write_text('name = "bad"\nversion = "1"\n[[scenario]]\nlabel = "x"\n')
    rejects = tmp_path / "rejects.csv"
    res = invoke(
        ["stress", "--book", folder, "--margin-scenarios", folder / "margin.csv",
         "--set", bad_set, "--no-reverse", "--rejects", rejects]
    )  # fmt: skip
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1, res.stderr
    assert str(bad_set) in res.stderr
    kept = rejects.read_text().splitlines()
    assert len(kept) == 2
    assert "lots" in kept[1]
