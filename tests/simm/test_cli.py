"""``marginflow simm`` through the real console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from marginflow.sim.synthetic_crif import CrifSpec, generate, write_crif_csv
from tests.reference import reference_path

EXE = shutil.which("marginflow")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300, check=False)


def test_json_document_for_every_portfolio_and_side() -> None:
    crif = reference_path("simm-unit-tests/v2.5/crif_10d.csv")
    res = run("simm", str(crif), "--version", "2.5", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["version"], doc["mpor_days"], doc["currency"]) == ("2.5", 10, "USD")
    results = {(r["portfolio"], r["side"]): r for r in doc["results"]}
    assert len(results) == 2 * 481
    c1 = results[("C1", "call")]
    assert c1["im"] == pytest.approx(460_000_000, abs=0.5)  # ISDA case C1 (IR 2w risk weight)
    assert c1["regulation"] == "Unspecified"
    assert c1["breakdown"]["children"][0]["name"] == "SIMM"
    assert results[("C1", "post")]["im"] == pytest.approx(460_000_000, abs=0.5)


def test_one_day_and_table_output() -> None:
    crif = reference_path("simm-unit-tests/v2.5/crif_1d.csv")
    res = run("simm", str(crif), "--version", "2.5", "--mpor", "1", "--depth", "2")
    assert res.returncode == 0, res.stderr
    assert "SIMM 2.5 (1-day), USD" in res.stdout
    assert "76,000,000.00" in res.stdout  # ISDA case C1 at the 1-day horizon


def test_rejected_rows_are_named_kept_and_exit_2(tmp_path: Path) -> None:
    rows = generate(CrifSpec(rows=50, portfolios=1, seed=1))
    rows[3]["Bucket"] = "99"
    rows[3]["RiskType"] = "Risk_Equity"
    rows[7]["Amount"] = "12,5"
    rows[7]["AmountUSD"] = ""
    path = write_crif_csv(rows, tmp_path / "crif.csv")
    rejects = tmp_path / "rejects.csv"
    res = run("simm", str(path), "--version", "2.6", "--json", "--rejects", str(rejects))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert f"{path}:5: Bucket: bucket '99' is outside the buckets of SIMM 2.6" in res.stderr
    assert f"{path}:9: Amount: is not a number: '12,5'" in res.stderr
    doc = json.loads(res.stdout)  # the valid rows are still computed
    assert {r["side"] for r in doc["results"]} == {"call", "post"}
    assert [r["line"] for r in doc["rejected"]] == [5, 9]
    kept = rejects.read_text().splitlines()
    assert kept[0] == "source,line,field,reason,raw"
    assert len(kept) == 3


def test_regulations_and_currency(tmp_path: Path) -> None:
    rows = generate(CrifSpec(rows=300, portfolios=2, regulations=("ESA", "USPR"), seed=3))
    path = write_crif_csv(rows, tmp_path / "crif.csv", ore_names=True)
    res = run("simm", str(path), "--version", "2.8+2506", "--currency", "EUR", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["currency"] == "EUR"
    for r in doc["results"]:
        assert r["regulation"] in ("ESA", "USPR")
        by_reg = {tuple(x["regulations"]): x["simm"] for x in r["by_regulation"]}
        assert r["im"] == pytest.approx(max(by_reg.values()), rel=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--version", "9.9"), "unknown SIMM version '9.9'; available: 2.2, 2.3"),
        (("--version", "2.6", "--mpor", "5"), "--mpor must be 10 or 1"),
        (("--version", "2.6", "--currency", "EURO"), "currency: calculation currency must be"),
        (("--version", "2.6", "--model", "P000"), "--model must be PORTFOLIO=simm"),
    ],
)
def test_bad_options_give_a_message_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    path = write_crif_csv(generate(CrifSpec(rows=20, seed=1)), tmp_path / "crif.csv")
    res = run("simm", str(path), *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_file(tmp_path: Path) -> None:
    res = run("simm", str(tmp_path / "nope.csv"), "--version", "2.6")
    assert res.returncode == 2
    assert "no such file" in res.stderr
    assert "Traceback" not in res.stderr


def test_huge_amount_is_a_rejected_row_not_a_crash(tmp_path: Path) -> None:
    rows = generate(CrifSpec(rows=20, portfolios=1, seed=1))
    rows[4]["Amount"] = "1e300"
    rows[4]["AmountUSD"] = "1e300"
    path = write_crif_csv(rows, tmp_path / "crif.csv")
    res = run("simm", str(path), "--version", "2.6", "--json")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert f"{path}:6: Amount: magnitude must be at most 1e+20" in res.stderr
    doc = json.loads(res.stdout)
    assert all(r["im"] >= 0 for r in doc["results"])


def test_bad_as_of_date_names_the_option(tmp_path: Path) -> None:
    path = write_crif_csv(generate(CrifSpec(rows=20, seed=1)), tmp_path / "crif.csv")
    res = run("simm", str(path), "--version", "2.6", "--as-of", "2025-13-01")
    assert res.returncode == 2
    assert "--as-of: is not a date (YYYY-MM-DD): '2025-13-01'" in res.stderr
    assert "Traceback" not in res.stderr


def test_table_amounts_are_to_the_cent(tmp_path: Path) -> None:
    # 1,234.5678 x RW 30 (2.6, equity bucket 1) = 37,037.034: every amount column shows
    # cents, whatever its size (not six significant digits).
    path = tmp_path / "crif.csv"
    path.write_text(
        "RiskType,ProductClass,Qualifier,Bucket,AmountUSD\nRisk_Equity,Equity,ACME,1,1234.5678\n"
    )
    res = run("simm", str(path), "--version", "2.6")
    assert res.returncode == 0, res.stderr
    assert "37,037.03" in res.stdout
    assert "0.00" in res.stdout  # the Schedule column of a SIMM-only portfolio


def test_a_side_with_no_calculation_is_noted_not_silent(tmp_path: Path) -> None:
    # Every row Excluded on the post side, or only an explicit 'Unspecified' regulation
    # (which ORE, too, leaves out when regulations are enforced): the IM is 0 because no
    # calculation applies, and the user is told so.
    path = tmp_path / "crif.csv"
    path.write_text(
        "PortfolioID,RiskType,ProductClass,Qualifier,Bucket,AmountUSD,"
        "CollectRegulation,PostRegulation\n"
        "P1,Risk_Equity,Equity,ACME,1,1000000,ESA,Excluded\n"
        "P2,Risk_Equity,Equity,ACME,1,1000000,Unspecified,Unspecified\n"
    )
    res = run("simm", str(path), "--version", "2.6", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    ims = {(r["portfolio"], r["side"]): (r["regulation"], r["im"]) for r in doc["results"]}
    assert ims[("P1", "call")] == ("ESA", pytest.approx(30e6, rel=1e-12))
    assert ims[("P1", "post")] == (None, 0.0)
    assert ims[("P2", "call")] == (None, 0.0)
    assert "P1 post: no calculation applies" in " ".join(doc["notes"])
    assert "P2 call: no calculation applies" in " ".join(doc["notes"])
