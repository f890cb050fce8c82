"""Inputs that used to give a silent zero, a stack trace or an endless read (issue 11).

Each case runs the CLI in-process (``catch_exceptions=False``: a stack trace fails the test)
on a small hand-written book, so the fault is shown as a user meets it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import Result

from tests.cli_runner import invoke

MARKET = "underlying,date,spot,atm_vol\nSPX,2019-01-02,2500,0.2\n"
INSTRUMENTS = (
    "instrument,underlying,type,strike,expiry,multiplier\n"
    "SPXP,SPX,put,2400,2019-06-21,100\n"
    "SPXS,SPX,stock,,,1\n"
)
ACCOUNTS = "account,member\nA1,M1\n"
POSITIONS = "account,instrument,quantity\nA1,SPXP,-10\n"
OPTIONS = "kind,style,spot,strike,expiry_years,rate,dividend_yield,vol\n"


def cli(*args: str | Path) -> Result:
    return invoke([str(a) for a in args], catch_exceptions=False)


def one_error_line(res: Result, *needles: str) -> None:
    """Exit 2 with one ``error:`` line on standard error that holds every needle."""
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def book(tmp_path: Path) -> Path:
    folder = tmp_path / "book"
    folder.mkdir()
    for name, text in (
        ("market", MARKET),
        ("instruments", INSTRUMENTS),
        ("accounts", ACCOUNTS),
        ("positions", POSITIONS),
    ):
        (folder / f"{name}.csv").write_text(text, encoding="utf-8")
    return folder


# -- scenario files: a gap is an error, never a silent zero ------------------------------


def test_a_shock_for_an_underlying_not_in_the_book_is_not_ignored(
    book: Path, tmp_path: Path
) -> None:
    shocks = tmp_path / "s.csv"
    shocks.write_text("scenario,underlying,spot_shock,vol_shock\ncrash,SPY,-0.5,2\n")
    res = cli("margin", book, "--scenarios", shocks)
    one_error_line(res, "s.csv", "no valid rows")
    shocks.write_text("scenario,underlying,spot_shock\ncrash,SPY,-0.5\ncrash,*,0\n")
    rejects = tmp_path / "rejects.csv"
    res = cli("margin", book, "--scenarios", shocks, "--rejects", rejects)
    one_error_line(res, "s.csv", "no valid rows")


def test_a_rejected_row_does_not_fall_back_to_the_wildcard(book: Path, tmp_path: Path) -> None:
    shocks = tmp_path / "s.csv"
    shocks.write_text(
        "scenario,underlying,spot_shock\ncrash,SPX,-1.5\ncrash,*,0\nfall,*,-0.1\n",
    )
    rejects = tmp_path / "rejects.csv"
    res = cli("margin", book, "--scenarios", shocks, "--rejects", rejects, "--json")
    assert res.exit_code == 2
    kept = rejects.read_text().splitlines()
    # both rows of 'crash' are kept with their reasons; 'fall' is margined
    assert len(kept) == 3, kept
    assert "must be > -1" in kept[1]
    assert "scenario 'crash' is refused" in kept[2]
    assert '"n_scenarios": 1' in res.stdout


# -- duplicated columns ------------------------------------------------------------------


def test_a_quantity_column_twice_in_parquet_is_one_line(book: Path, tmp_path: Path) -> None:
    path = tmp_path / "positions.parquet"
    cols = [pa.array(["A1"]), pa.array(["SPXP"]), pa.array([-10.0]), pa.array([0.0])]
    pq.write_table(pa.table(cols, names=["account", "instrument", "quantity", "quantity"]), path)
    one_error_line(cli("margin", book, "--positions", path), "positions.parquet", "twice")


def test_a_history_column_twice_is_one_line(book: Path) -> None:
    (book / "history.csv").write_text("date,SPX,SPX\n2019-01-01,1,2\n2019-01-02,1,2\n")
    one_error_line(cli("margin", book), "history.csv", "twice")


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ('date,"0\n",date', "twice"),  # a quoted line break: the header goes on past it
        ('"date' + "a" * 200_000, "cannot be read as CSV"),  # an unclosed quote, too long
    ],
    ids=["quoted-line-break", "unclosed-quote"],
)
def test_a_history_header_past_its_first_line_is_one_line(
    book: Path, header: str, needle: str
) -> None:
    """Found by Hypothesis: the header was read up to the first line break only, so a
    column named twice after a quoted line break reached pyarrow (a KeyError), and an
    unclosed quote past the csv field limit was a csv.Error (both stack traces)."""
    (book / "history.csv").write_text(header + "\n2019-01-01,1,2\n2019-01-02,1,2\n")
    one_error_line(cli("margin", book), "history.csv", needle)


# -- a directory or a device where a file is expected -------------------------------------


def test_price_of_a_directory_is_one_line(tmp_path: Path) -> None:
    one_error_line(cli("price", tmp_path), str(tmp_path), "is a directory")


def test_price_of_dev_zero_is_refused_without_reading(tmp_path: Path) -> None:
    one_error_line(cli("price", "/dev/zero"), "/dev/zero", "not a regular file")


def test_a_scenarios_directory_is_one_line(book: Path, tmp_path: Path) -> None:
    one_error_line(cli("margin", book, "--scenarios", tmp_path), "is a directory")


# -- magnitudes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("positions", "account,instrument,quantity\nA1,SPXP,1e308\n", "quantity"),
        ("positions", "account,instrument,quantity\nA1,SPXP,0.5\n", "quantity"),
        ("instruments", INSTRUMENTS.replace(",100\n", ",1e308\n", 1), "multiplier"),
        ("instruments", INSTRUMENTS.replace("2400", "1e308"), "strike"),
        ("market", MARKET.replace("2500", "1e308"), "spot"),
        ("market", MARKET.replace("0.2\n", "1e6\n"), "atm_vol"),
        ("market", "underlying,date,spot,atm_vol,rate\nSPX,2019-01-02,2500,0.2,1e308\n", "rate"),
    ],
)
def test_an_implausible_number_is_a_reject_not_a_stack_trace(
    book: Path, tmp_path: Path, name: str, text: str, field: str
) -> None:
    (book / f"{name}.csv").write_text(text)
    rejects = tmp_path / "rejects.csv"
    res = cli("margin", book, "--rejects", rejects, "--scenarios", _shocks(tmp_path))
    assert res.exit_code == 2, res.output
    if name == "market":  # its only row: the book has no market, one line says why
        one_error_line(res, "market.csv has no valid row", f"line 2: {field}: must be within")
    else:
        assert (f"{book / name}.csv", "2", field) in _kept(rejects)


def test_an_implausible_option_row_is_a_reject(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        OPTIONS + "call,european,1e308,100,1,0.05,0,0.2\n"
        "call,european,100,100,1,0.05,0,0.2\n"
        "call,european,100,100,1,0.05,0,1e6\n"
        "call,european,100,100,1,50,0,0.2\n"
    )
    res = cli("price", path)
    assert res.exit_code == 2
    assert len(res.stdout.strip().splitlines()) == 2  # header + the one good row
    for field in ("spot", "vol", "rate"):
        assert f": {field}: must be within" in res.stderr


def test_a_published_listing_with_a_huge_strike_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "instruments.csv"
    path.write_text(INSTRUMENTS.replace("2400", "1e308"))
    rejects = tmp_path / "rejects.csv"
    log = f"embedded://{tmp_path / 'log'}"
    res = cli("publish", "reference", path, "--log", log, "--rejects", rejects)
    assert res.exit_code == 2
    assert (str(path), "2", "strike") in _kept(rejects)
    assert "must be within [1e-06, 1e+09] (a price), got '1e308'" in rejects.read_text()


def _kept(rejects: Path) -> set[tuple[str, str, str]]:
    """(source, line, field) of each kept reject."""
    rows = list(csv.reader(io.StringIO(rejects.read_text())))[1:]
    return {(r[0], r[1], r[2]) for r in rows}


def _shocks(tmp_path: Path) -> Path:
    path = tmp_path / "shocks.csv"
    path.write_text("scenario,underlying,spot_shock\ndown,*,-0.1\nup,*,0.1\n")
    return path
