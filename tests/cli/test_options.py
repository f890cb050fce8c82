"""Options that would do nothing are refused: exit status 2 and one line naming both
options (:mod:`marginflow.cli.options`), never accepted without a word. Out-of-range
numbers are refused the same way, in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from marginflow.core.errors import MSG_OPTION_IGNORED, MSG_OPTION_TWICE
from tests import cli_runner

EXE = shutil.which("marginflow")


def invoke(*args: str) -> tuple[int, str]:
    """Run a command in this process: (exit status, standard error)."""
    res = cli_runner.invoke(args)
    return res.exit_code, res.stderr


def ignored(option: str, other: str) -> str:
    return "error: " + MSG_OPTION_IGNORED.format(option=option, other=other) + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("files")
    (folder / "s.csv").write_text("scenario,underlying,spot_shock\nx,*,-0.1\n")
    return folder


MARGIN_CASES = [
    # the grid models take none of the ES model's settings, even at their default values
    (("--model", "span", "--confidence", "0.99"), ignored("--confidence", "--model span")),
    (("--model", "pm", "--apc", "none"), ignored("--apc", "--model pm")),
    (("--model", "pm", "--scenarios", "{f}/s.csv"), ignored("--scenarios", "--model pm")),
    (("--model", "span", "--mpor", "5"), ignored("--mpor", "--model span")),
    (("--model", "span", "--source", "mc"), ignored("--source", "--model span")),
    (("--model", "pm", "--param", "participation=0.2"), ignored("--param", "--model pm")),
    # a scenario file replaces every setting of the generated scenarios but the MPOR
    (("--scenarios", "{f}/s.csv", "--source", "mc"), ignored("--source", "--scenarios")),
    (("--scenarios", "{f}/s.csv", "--lookback", "500"), ignored("--lookback", "--scenarios")),
    (("--scenarios", "{f}/s.csv", "--no-overlapping"), ignored("--overlapping", "--scenarios")),
    (("--scenarios", "{f}/s.csv", "--decay", "0.9"), ignored("--decay", "--scenarios")),
    # Monte Carlo settings under filtered history, and the reverse
    (("--mc-scenarios", "500"), ignored("--mc-scenarios", "--source fhs")),
    (("--seed", "3"), ignored("--seed", "--source fhs")),
    (("--source", "mc", "--stress", "none"), ignored("--stress", "--source mc")),
    # a setting given twice, as its option and as --param
    (
        ("--confidence", "0.9", "--param", "confidence=0.95"),
        "error: "
        + MSG_OPTION_TWICE.format(
            option="--confidence", other="--param confidence=0.95", setting="confidence"
        )
        + "\n",
    ),
    (
        ("--apc", "buffer", "--param", "apc=none"),
        "error: "
        + MSG_OPTION_TWICE.format(option="--apc", other="--param apc=none", setting="apc")
        + "\n",
    ),
    # a parameter of another anti-procyclicality tool than the one chosen
    (("--param", "apc_buffer=0.5"), ignored("--param apc_buffer=0.5", "--apc none")),
    (
        ("--apc", "buffer", "--param", "stressed_weight=0.3"),
        ignored("--param stressed_weight=0.3", "--apc buffer"),
    ),
    (("--json", "--limit", "3"), ignored("--limit", "--json")),
]


@pytest.mark.parametrize(("args", "message"), MARGIN_CASES)
def test_margin_refuses_what_it_would_ignore(
    files: Path, args: tuple[str, ...], message: str
) -> None:
    argv = [a.format(f=files) for a in args]
    assert invoke("margin", str(files / "no-book"), *argv) == (2, message)


def test_what_if_refuses_what_it_would_ignore(files: Path) -> None:
    status, err = invoke(
        "what-if", str(files), "--account", "A", "--trade", "X=1", "--model", "pm", "--mpor", "3"
    )
    assert (status, err) == (2, ignored("--mpor", "--model pm"))


def test_simm_depth_applies_to_the_table_only(files: Path) -> None:
    status, err = invoke("simm", str(files / "c.csv"), "-v", "2.5", "--json", "--depth", "2")
    assert (status, err) == (2, ignored("--depth", "--json"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("publish", "roll", "2019-01-02", "--log", "embedded:///x", "--speed", "2"),
         ignored("--speed", "KIND roll")),
        (("publish", "trades", "t.csv", "--log", "embedded:///x", "--party", "A"),
         ignored("--party", "KIND trades")),
        (("publish", "trades", "t.csv", "--partitions", "2"),
         ignored("--partitions", "--dir (its cluster's own)")),
        (("publish", "trades", "t.csv", "--log", "embedded:///x", "--dir", "d"),
         ignored("--dir", "--log")),
        (("lag", "--log", "embedded:///x", "--dir", "d"), ignored("--dir", "--log")),
        (("lag", "--prefix", "x."), ignored("--prefix", "--dir (its cluster's own)")),
        (("lag", "--log", "embedded:///x", "--metrics-port", "9999"),
         ignored("--metrics-port", "--watch 0 (one reading)")),
        (("reproduce", "A1", "--db", "sqlite:///x.db", "--dir", "d"), ignored("--dir", "--db")),
        (("explain", "A1", "--from", "now", "--db", "sqlite:///x.db", "--dir", "d"),
         ignored("--dir", "--db")),
        (("demo", "--trades", "100", "--market", "m.csv"),
         ignored("--trades", "--market (give a trades file, or none)")),
        (("cluster", "up", "--book", "b", "--accounts", "5"), ignored("--accounts", "--book")),
        (("cluster", "up", "--speed", "2"),
         ignored("--speed", "a generated day (no --trades FILE or --market)")),
        (("cluster", "up", "--market", "m.csv", "--rate", "5"),
         ignored("--rate", "--trades FILE or --market (replayed files)")),
        (("cluster", "up", "--lookback", "300", "--margin", "lookback=400"),
         "error: " + MSG_OPTION_TWICE.format(
             option="--lookback", other="--margin lookback=...", setting="lookback") + "\n"),
    ],
)  # fmt: skip
def test_other_commands_refuse_what_they_would_ignore(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    assert invoke(*args) == (2, message)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("simm", "c.csv", "-v", "2.5", "--depth", "-1"), "--depth"),
        (("margin", "b", "--mpor", "0"), "--mpor"),
        (("margin", "b", "--confidence", "1.5"), "--confidence"),
        (("margin", "b", "--mc-scenarios", "-5", "--source", "mc"), "--mc-scenarios"),
        (("margin", "b", "--limit", "-1"), "--limit"),
        (("generate-book", "b", "--accounts", "0"), "--accounts"),
        (("publish", "trades", "t.csv", "--log", "embedded:///x", "--partitions", "0"),
         "--partitions"),
        (("lag", "--watch", "-1"), "--watch"),
        (("cluster", "up", "--keepers", "0"), "--keepers"),
        (("reproduce", "A1", "--version", "-1"), "--version"),
    ],
)  # fmt: skip
def test_out_of_range_numbers_are_one_line(
    tmp_path: Path, args: tuple[str, ...], option: str
) -> None:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    res = subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path
    )
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: Invalid value for '{option}'"), lines[0]
    assert "--help" in lines[0]
