"""User text is shown literally by every command: never read as rich markup or emoji, and
never able to act on the terminal (ESC sequences, carriage returns, bidi overrides, NUL).

The structure that guarantees it is checked on the source (one output module); each
command that echoes user text is then fed hostile strings through the console script."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import marginflow
from marginflow.cli import output
from marginflow.core.errors import RowFailure
from marginflow.core.text import spreadsheet_cell, visible

EXE = shutil.which("marginflow")
ROOT = Path(marginflow.__file__).parent

MARKUP = ("[/x]", "[bold red]x[/]", ":100:")
CONTROL = ("\x1b[31m", "\r", "\u202e", "\x00")
HOSTILE = MARKUP + CONTROL
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run(
        [EXE, *args], input=stdin, capture_output=True, text=True, timeout=600, check=False
    )


def assert_literal(text: str, *expected: str) -> None:
    """``text`` (a command's whole output) holds each expected string as the characters a
    user reads, and no character that would act on a terminal."""
    assert "Traceback" not in text
    assert not RAW.search(text), repr(RAW.search(text))
    for e in expected:
        assert visible(e) in text, (e, text)


# -- the structure ------------------------------------------------------------------------


def test_only_the_output_module_writes_to_the_terminal() -> None:
    forbidden = re.compile(
        r"\bprint\(|\bConsole\(|typer\.echo|click\.echo|^\s*(from|import) rich\b|"
        r"sys\.(stdout|stderr)\.write",
        re.MULTILINE,
    )
    found = [
        f"{path.relative_to(ROOT.parent)}: {m.group(0).strip()}"
        for folder in ("cli", "sim")
        for path in sorted((ROOT / folder).glob("*.py"))
        if path.name != "output.py"
        for m in forbidden.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == []


@given(st.text())
def test_visible_leaves_nothing_that_acts_on_a_terminal(text: str) -> None:
    shown = visible(text)
    assert not RAW.search(shown)
    assert "\u2028" not in shown
    assert "\u2029" not in shown
    if text.isprintable():
        assert shown == text


def test_visible_escapes_as_python_does() -> None:
    assert visible("a\x1b[31mb\r\x00\u202ec\n") == "a\\x1b[31mb\\r\\x00\\u202ec\\n"
    assert visible("[/x] :100: é 日本") == "[/x] :100: é 日本"


def test_spreadsheet_cells_never_run_as_formulas() -> None:
    for text in ("=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_cell(text) == "'" + text
    for kept in ("-5", "+1.5e3", "-.5", "abc", "", 12, -3.5, None):
        assert spreadsheet_cell(kept) == kept


# -- the output functions -----------------------------------------------------------------


def test_every_output_function_shows_text_literally(capsys: pytest.CaptureFixture[str]) -> None:
    for h in HOSTILE:
        output.say("said", h)
        output.say(h, err=True, style="red")
        output.note(h)
        output.say_fields(h, h)
        output.table(h, [h, "n"], [[h, 1.5], [h, 2]])
        output.report_failures([RowFailure(h, 3, h, h, h)])
        with output.status(h):
            pass
        with pytest.raises(output.typer.Exit) as exit_info:
            output.fail(h)
        assert exit_info.value.exit_code == 2
    out, err = capsys.readouterr()
    assert_literal(out, *HOSTILE)
    assert_literal(err, *HOSTILE)


def test_csv_outputs_guard_against_formulas(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    output.write_rejects(path, [RowFailure("=f.csv", 2, "@q", "-x-", "=cmd|' /C calc'!A0,-5")])
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[1] == ["'=f.csv", "2", "'@q", "'-x-", "'=cmd|' /C calc'!A0,-5"]


# -- the commands ---------------------------------------------------------------------------


def test_price_echoes_hostile_fields_literally(tmp_path: Path) -> None:
    header = "kind,style,spot,strike,expiry_years,rate,dividend_yield,vol,note"
    good = "call,european,100,100,1,0.05,0,0.2"
    lines = [header]
    lines += [f'{good},"{h}"' for h in HOSTILE]
    lines += [f'put,"{h}",100,100,1,0,0,0.2,x' for h in HOSTILE]
    file = tmp_path / "options.csv"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = run("price", str(file), "--rejects", str(tmp_path / "rejects.csv"))
    assert res.returncode == 2
    assert_literal(res.stdout, *MARKUP, "\\x1b[31m", "\\u202e")
    assert_literal(res.stderr, *MARKUP)
    assert len(res.stderr.strip().splitlines()) == len(HOSTILE)  # one line per rejected row


def test_simm_echoes_hostile_portfolios_and_trades_literally(tmp_path: Path) -> None:
    head = "TradeID,PortfolioID,ProductClass,RiskType,Qualifier,Bucket,Label1,Label2,"
    head += "AmountCurrency,Amount,AmountUSD"
    rows = [
        f'"T{i}{h}","P{i}{h}",RatesFX,Risk_IRCurve,USD,1,2w,OIS,USD,{i + 1}000,{i + 1}000'
        for i, h in enumerate(HOSTILE)
    ]
    rows.append(f"bad,P{HOSTILE[0]},RatesFX,Risk_IRCurve,USD,1,2w,OIS,USD,lots{HOSTILE[1]},1")
    crif = tmp_path / "crif.csv"
    crif.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    res = run("simm", str(crif), "--version", "2.5", "--contributions")
    assert res.returncode == 2, res.stderr
    assert_literal(res.stdout, *(f"P{i}{h}" for i, h in enumerate(MARKUP)))
    assert_literal(res.stderr)
    assert "lots[bold red]x[/]" in res.stderr


def test_margin_and_what_if_echo_hostile_names_literally(tmp_path: Path) -> None:
    (tmp_path / "market.csv").write_text("underlying,date,spot,atm_vol\nXYZ,2018-12-31,100,0.3\n")
    (tmp_path / "instruments.csv").write_text("instrument,underlying,type\nXYZ,XYZ,stock\n")
    accounts = "".join(f"A{i}{h},M{h}\n" for i, h in enumerate(MARKUP))
    (tmp_path / "accounts.csv").write_text("account,member\n" + accounts, encoding="utf-8")
    positions = "".join(f"A{i}{h},XYZ,{10 * (i + 1)}\n" for i, h in enumerate(MARKUP))
    positions += f'A0{MARKUP[0]},XYZ,"x{CONTROL[0]}{CONTROL[2]}"\n'
    (tmp_path / "positions.csv").write_text(
        "account,instrument,quantity\n" + positions, encoding="utf-8"
    )
    scen = tmp_path / "scen.csv"
    scen.write_text(
        "scenario,underlying,spot_shock\n"
        + "".join(f'"s{i}{h}",*,-0.{i + 1}\n' for i, h in enumerate(HOSTILE)),
        encoding="utf-8",
    )
    res = run("margin", str(tmp_path), "--scenarios", str(scen))
    assert res.returncode == 2, res.stderr
    assert_literal(res.stdout, *(f"A{i}{h}" for i, h in enumerate(MARKUP)), f"M{MARKUP[1]}")
    assert_literal(res.stderr)
    res = run(
        "what-if", str(tmp_path), "--scenarios", str(scen), "--account", f"A2{MARKUP[2]}",
        "--trade", "XYZ=5",
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert_literal(res.stdout, f"A2{MARKUP[2]}", f"M{MARKUP[2]}")
    res = run("what-if", str(tmp_path), "--scenarios", str(scen), "--account",
              "".join(HOSTILE[:-1]), "--trade", "XYZ=5")  # fmt: skip
    assert res.returncode == 2
    assert_literal(res.stderr, *MARKUP)


def test_errors_show_hostile_paths_and_values_literally(tmp_path: Path) -> None:
    name = "".join(HOSTILE).replace("\x00", "")  # neither a path nor an argument holds NUL
    res = run("margin", str(tmp_path / name))
    assert res.returncode == 2
    assert_literal(res.stderr, *MARKUP)
    res = run("simm", str(tmp_path / name), "--version", "2.5")
    assert res.returncode == 2
    assert_literal(res.stderr, *MARKUP)
    res = run("what-if", str(tmp_path), "--account", "a", "--trade", name)
    assert res.returncode == 2
    assert_literal(res.stderr)
    res = run("reproduce", name, "--db", f"sqlite:///{tmp_path / name}")
    assert res.returncode == 2
    assert_literal(res.stderr, *MARKUP)


def test_json_output_escapes_control_characters(tmp_path: Path) -> None:
    header = "kind,style,spot,strike,expiry_years,rate,dividend_yield,vol,note"
    file = tmp_path / "options.csv"
    rows = "".join(f'call,european,100,100,1,0.05,0,0.2,"{h}"\n' for h in HOSTILE)
    file.write_text(header + "\n" + rows, encoding="utf-8")
    res = run("price", str(file), "--json")
    assert res.returncode == 0, res.stderr
    assert_literal(res.stdout)
    notes = [json.loads(line)["note"] for line in res.stdout.splitlines()]
    assert notes == list(HOSTILE)
