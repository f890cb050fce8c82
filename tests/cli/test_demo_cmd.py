"""``marginflow demo``: the README's run command, through the real console script."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

EXE = shutil.which("marginflow")


def demo(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run(
        [EXE, "demo", "--dir", str(tmp_path / "demo"), "--trades", "2000", *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_demo_json_covers_pricing_streaming_margin_and_simm(tmp_path: Path) -> None:
    res = demo(tmp_path, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["pricing"][0]["price"] == pytest.approx(2.1334, abs=5e-5)
    clearing = doc["clearing"]
    assert clearing["rejects"] == 0
    assert clearing["accounts"] > 0
    # The aggregator's firm total is the sum of the members it published.
    assert clearing["firm"] == pytest.approx(sum(m["margin"] for m in clearing["members"]))
    assert all(m["margin"] > 0 for m in clearing["members"])
    sides = {(r["portfolio"], r["side"]) for r in doc["simm"]}
    assert len(sides) == 6
    assert all(r["im"] > 0 for r in doc["simm"])


def test_demo_prints_three_tables(tmp_path: Path) -> None:
    res = demo(tmp_path)
    assert res.returncode == 0, res.stderr
    for title in ("1. Options priced", "2. Clearing-house margin", "3. ISDA SIMM"):
        assert title in res.stdout
    assert "2.13337" in res.stdout
    assert "Traceback" not in res.stderr
