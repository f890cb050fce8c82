"""``marginflow generate-book``, ``margin`` and ``what-if`` through the console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

EXE = shutil.which("marginflow")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("book")
    res = run(
        "generate-book",
        str(folder),
        "--accounts",
        "12",
        "--members",
        "3",
        "--underlyings",
        "6",
        "--series",
        "60",
        "--positions",
        "150",
        "--seed",
        "4",
    )
    assert res.returncode == 0, res.stderr
    assert "positions.csv" in res.stdout
    return folder


def test_margin_json_document(book: Path) -> None:
    res = run("margin", str(book), "--json", "--apc", "buffer")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    accounts, members = doc["accounts"], doc["members"]
    assert len(accounts) == 12
    assert len(members) == 3
    for a in accounts:
        assert {"account", "member", "margin", "breakdown"} <= a.keys()
        assert a["margin"] >= 0
        c = a["breakdown"]["components"]
        assert a["margin"] == pytest.approx(max(c["es"] + c["apc"], 0) + c["concentration"])
    for m in members:
        own = sum(a["margin"] for a in accounts if a["member"] == m["member"])
        assert m["margin"] == pytest.approx(own)
    assert doc["model"]["name"] == "es"
    assert doc["model"]["params"]["apc"] == "buffer"
    assert doc["model"]["params"]["scenarios"]["source"] == "fhs"


def test_margin_table_and_monte_carlo(book: Path) -> None:
    res = run("margin", str(book), "--source", "mc", "--mc-scenarios", "500", "--limit", "3")
    assert res.returncode == 0, res.stderr
    assert "500 mc scenarios" in res.stdout.replace("\n", " ")
    assert "member margins" in res.stdout


def _tiny(folder: Path) -> None:
    (folder / "market.csv").write_text("underlying,date,spot,atm_vol\nXYZ,2018-12-31,100,0.3\n")
    (folder / "accounts.csv").write_text("account,member\nA1,M1\nA2,M1\n")
    (folder / "instruments.csv").write_text("instrument,underlying,type\nXYZ,XYZ,stock\n")
    (folder / "positions.csv").write_text("account,instrument,quantity\nA1,XYZ,100\nA2,XYZ,-50\n")
    (folder / "scen.csv").write_text(
        "scenario,underlying,spot_shock\ncrash,*,-0.2\nrally,XYZ,0.1\n"
    )


def test_hand_computed_margins_from_a_scenario_file(tmp_path: Path) -> None:
    _tiny(tmp_path)
    res = run("margin", str(tmp_path), "--scenarios", str(tmp_path / "scen.csv"), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    got = {a["account"]: a["margin"] for a in doc["accounts"]}
    # Two scenarios, k = 0.02 < 1: ES is the worst loss. Long 100 × 100 × 20% = 2,000;
    # short 50 × 100 × 10% = 500. Member M1: 2,500.
    assert got == {"A1": pytest.approx(2000.0, rel=1e-6), "A2": pytest.approx(500.0, rel=1e-6)}
    assert doc["members"] == [
        {"member": "M1", "margin": pytest.approx(2500.0, rel=1e-6), "accounts": 2}
    ]
    assert doc["accounts"][0]["breakdown"]["driving_scenario"] == "crash"


def test_bad_rows_exit_2_and_are_kept(tmp_path: Path) -> None:
    _tiny(tmp_path)
    (tmp_path / "positions.csv").write_text(
        "account,instrument,quantity\nA1,XYZ,100\nA2,XYZ,lots\nA3,XYZ,1\n"
    )
    rejects = tmp_path / "rejects.csv"
    res = run(
        "margin",
        str(tmp_path),
        "--scenarios",
        str(tmp_path / "scen.csv"),
        "--json",
        "--rejects",
        str(rejects),
    )
    assert res.returncode == 2
    assert "positions.csv:3: quantity: is not a number: 'lots'" in res.stderr
    assert "positions.csv:4: account: unknown or rejected account 'A3'" in res.stderr
    assert "Traceback" not in res.stderr
    doc = json.loads(res.stdout)  # the good rows are still margined
    assert doc["rejected_rows"] == 2
    lines = rejects.read_text().splitlines()
    assert lines[0] == "source,line,field,reason,raw"
    assert len(lines) == 3


def test_errors_without_traceback(tmp_path: Path) -> None:
    _tiny(tmp_path)
    res = run("margin", str(tmp_path))  # no history and no scenario file
    assert res.returncode == 2
    assert "no price history" in res.stderr
    assert "Traceback" not in res.stderr
    res = run(
        "margin",
        str(tmp_path),
        "--scenarios",
        str(tmp_path / "scen.csv"),
        "--param",
        "confidence=2",
    )
    assert res.returncode == 2
    assert "confidence" in res.stderr
    res = run("margin", str(tmp_path / "nowhere"))
    assert res.returncode == 2
    assert "missing" in res.stderr


def test_what_if_changes_nothing(book: Path) -> None:
    positions = (book / "positions.csv").read_text()
    first = positions.splitlines()[1].split(",")
    account, instrument = first[0], first[1]
    res = run("what-if", str(book), "--account", account, "--trade", f"{instrument}=5", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["change"] == pytest.approx(doc["margin_after"] - doc["margin_before"])
    base = json.loads(run("margin", str(book), "--json").stdout)
    before = {a["account"]: a["margin"] for a in base["accounts"]}[account]
    assert doc["margin_before"] == pytest.approx(before, rel=1e-12)
    assert (book / "positions.csv").read_text() == positions
    assert np.isfinite(doc["margin_after"])
    res = run("what-if", str(book), "--account", account, "--trade", "nonsense")
    assert res.returncode == 2
    assert "INSTRUMENT=QUANTITY" in res.stderr


def test_grid_models_from_the_command_line(tmp_path: Path) -> None:
    _tiny(tmp_path)
    res = run("margin", str(tmp_path), "--model", "pm", "--json")
    assert res.returncode == 0, res.stderr
    got = {a["account"]: a["margin"] for a in json.loads(res.stdout)["accounts"]}
    # ±15% for an equity: long 100 × $100 → 1,500; short 50 → 750.
    assert got == {"A1": pytest.approx(1500.0), "A2": pytest.approx(750.0)}
    res = run("margin", str(tmp_path), "--model", "span", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["model"]["name"] == "span"
    assert doc["accounts"][0]["breakdown"]["components"]["scan_risk"] == pytest.approx(1070.0)
    res = run(
        "what-if",
        str(tmp_path),
        "--model",
        "pm",
        "--account",
        "A1",
        "--trade",
        "XYZ=-100",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["margin_after"] == 0.0
    res = run("margin", str(tmp_path), "--model", "pm", "--param", "participation=0.2")
    assert res.returncode == 2
    assert "--param does not apply with --model pm" in res.stderr
    # options that would do nothing are refused, naming them (more in test_options.py)
    for args, message in (
        (("--model", "span", "--apc", "buffer"), "--apc does not apply with --model span"),
        (("--model", "pm", "--confidence", "0.95"), "--confidence does not apply with --model"),
        (("--confidence", "0.9", "--param", "confidence=0.95"), "give it once"),
        (("--source", "mc", "--scenarios", str(tmp_path / "s.csv")), "--source does not apply"),
    ):
        (tmp_path / "s.csv").write_text("scenario,underlying,spot_shock,vol_shock\nx,*,-0.1,0\n")
        res = run("margin", str(tmp_path), *args)
        assert res.returncode == 2, args
        assert message in res.stderr, (args, res.stderr)


def test_revaluation_method_is_an_option(book: Path) -> None:
    margins = {}
    for method in ("grid", "exact"):
        res = run("margin", str(book), "--json", "--revaluation", method)
        assert res.returncode == 0, res.stderr
        margins[method] = np.array([a["margin"] for a in json.loads(res.stdout)["accounts"]])
    # The grids are within 1e-3 per unit of underlying at spot 100 of exact pricing.
    np.testing.assert_allclose(margins["grid"], margins["exact"], rtol=1e-4, atol=1.0)
    bad = run("margin", str(book), "--revaluation", "fast")
    assert bad.returncode != 0
    assert "revaluation must be grid or exact" in bad.stderr
    assert "Traceback" not in bad.stderr
