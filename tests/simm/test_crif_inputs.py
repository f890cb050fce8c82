"""Hostile SIMM inputs (issue 11): every file ``marginflow simm`` reads passes the shared input
checks (:mod:`marginflow.io.source`), and every bad value is one line or a kept reject, never a
stack trace. Rows in = rows out + rows rejected."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marginflow.app.simm import simm_of_crif
from marginflow.core.errors import (
    MSG_FILE_DIRECTORY,
    MSG_FILE_DUPLICATE_COLUMN,
    MSG_FILE_MISSING,
    MSG_FILE_NOT_REGULAR,
    ValidationError,
)
from marginflow.io.crif import read_crif
from marginflow.io.fx_rates import read_fx_rates
from marginflow.simm.calibration import load_calibration
from tests.cli_runner import invoke

CAL = load_calibration("2.6")
HEADER = "PortfolioID,TradeID,ProductClass,RiskType,Qualifier,Bucket,Label1,Label2,AmountUSD"
GOOD = "P1,T1,Equity,Risk_Equity,ACME,1,,,1000"
GOOD2 = "P1,T2,RatesFX,Risk_IRCurve,USD,1,5y,OIS,-2000"


def simm(*args: str) -> tuple[int, str, str]:
    """``marginflow simm ARGS`` in this process: (exit status, stdout, stderr); a Python
    exception escaping the command fails the test with its traceback."""
    result = invoke(["simm", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, text: str, name: str = "crif.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------- the file itself


def test_a_column_named_twice_is_refused_naming_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "RiskType,ProductClass,Qualifier,Bucket,AmountUSD,AmountUSD\n"
        "Risk_Equity,Equity,ACME,1,1000,2000\n",
    )
    with pytest.raises(ValidationError, match=f"{MSG_FILE_DUPLICATE_COLUMN}") as err:
        read_crif(path, calibration=CAL)
    assert err.value.field == "AmountUSD"
    assert f"{path}:1:" in err.value.reason
    status, _, errors = simm(str(path), "--version", "2.6")
    assert status == 2
    assert f"AmountUSD: {path}:1: the column appears twice in the header" in errors


def test_two_spellings_of_one_column_are_refused(tmp_path: Path) -> None:
    # amount_usd is ORE's spelling of AmountUSD: the first copy would win without a word.
    path = write(
        tmp_path,
        "RiskType,ProductClass,Qualifier,Bucket,AmountUSD,amount_usd\n"
        "Risk_Equity,Equity,ACME,1,1000,2000\n",
    )
    with pytest.raises(ValidationError, match="names the same CRIF column as 'AmountUSD'"):
        read_crif(path, calibration=CAL)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_directory_a_device_or_a_missing_path_is_one_line(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / f"dir{suffix}"
    folder.mkdir()
    cases = [
        (folder, MSG_FILE_DIRECTORY),
        (tmp_path / f"nope{suffix}", MSG_FILE_MISSING),
    ]
    device = tmp_path / f"zero{suffix}"
    device.symlink_to("/dev/zero")  # read until MemoryError at 7 GB before
    cases.append((device, MSG_FILE_NOT_REGULAR))
    for path, message in cases:
        with pytest.raises(ValidationError, match=re.escape(message)):
            read_crif(path, calibration=CAL)
        status, _, errors = simm(str(path), "--version", "2.6")
        assert status == 2
        assert message in errors


def test_blank_lines_before_the_header_are_skipped(tmp_path: Path) -> None:
    load = read_crif(write(tmp_path, f"\n\n{HEADER}\n{GOOD}\n\n{GOOD2}\n"), calibration=CAL)
    assert not load.failures
    assert load.crif.line.tolist() == [4, 6]


def test_a_file_with_only_blank_lines_is_empty(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="the file is empty"):
        read_crif(write(tmp_path, "\n\r\n\n"), calibration=CAL)


def test_a_header_of_100k_columns_is_read(tmp_path: Path) -> None:
    extra = ",".join(f"x{i}" for i in range(100_000))
    blanks = "," * 100_000
    path = write(tmp_path, f"{HEADER},{extra}\n{GOOD}{blanks}\n{GOOD2}\n")
    load = read_crif(path, calibration=CAL)
    assert len(load.crif) == 1
    assert [(f.line, f.field) for f in load.failures] == [(3, "(row)")]


def test_a_10mb_line_is_one_reject(tmp_path: Path) -> None:
    huge = "Q" * (10 << 20)
    path = write(
        tmp_path, f"{HEADER}\n{GOOD}\nP1,T9,Equity,Risk_Equity,{huge},1,,,1e300\n{GOOD2}\n"
    )
    load = read_crif(path, calibration=CAL)
    assert len(load.crif) == 2
    assert [(f.line, f.field) for f in load.failures] == [(3, "AmountUSD")]
    assert len(load.failures[0].raw) > 10 << 20  # kept as written


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("1e308", "magnitude must be at most 1e+20"),
        ("-1.7976931348623157e308", "magnitude must be at most 1e+20"),
        ("1e309", "must be finite"),
        ("nan", "is not a number"),
        ("NaN", "is not a number"),
        ("inf", "must be finite"),
        ("-Infinity", "must be finite"),
        ("0x10", "is not a number"),
        ("1_000", "is not a number"),
        ("١٢٣", "is not a number"),  # Arabic-Indic digits: float() would take them
        ("1e-400", ""),  # underflows to 0: a number
    ],
)
def test_hostile_amounts_are_rejects_or_numbers(tmp_path: Path, amount: str, reason: str) -> None:
    path = write(tmp_path, f"{HEADER}\n{GOOD}\nP1,T3,Equity,Risk_Equity,ACME,2,,,{amount}\n")
    load = read_crif(path, calibration=CAL)
    if not reason:
        assert not load.failures
        return
    assert len(load.crif) == 1
    assert [(f.line, f.field) for f in load.failures] == [(3, "AmountUSD")]
    assert reason in load.failures[0].reason


# ------------------------------------------------------------------------------- Parquet


def _parquet(tmp_path: Path, table: pa.Table, name: str = "crif.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(table, path)
    return path


def _good_columns() -> dict[str, pa.Array]:
    return {
        "RiskType": pa.array(["Risk_Equity", "Risk_Equity"]),
        "ProductClass": pa.array(["Equity", "Equity"]),
        "Qualifier": pa.array(["ACME", "BETA"]),
        "Bucket": pa.array([1, 2]),
        "AmountUSD": pa.array([1000.0, None]),
    }


def test_parquet_numbers_and_nulls(tmp_path: Path) -> None:
    load = read_crif(_parquet(tmp_path, pa.table(_good_columns())), calibration=CAL)
    assert len(load.crif) == 1
    assert [(f.line, f.field) for f in load.failures] == [(2, "Amount")]


def test_parquet_with_a_column_named_twice_is_refused(tmp_path: Path) -> None:
    cols = _good_columns()
    table = pa.Table.from_arrays([*cols.values(), pa.array([5.0, 6.0])], names=[*cols, "AmountUSD"])
    with pytest.raises(ValidationError, match=MSG_FILE_DUPLICATE_COLUMN) as err:
        read_crif(_parquet(tmp_path, table), calibration=CAL)
    assert err.value.field == "AmountUSD"


@pytest.mark.parametrize(
    "column",
    [
        pa.array([[1.0], [2.0]], pa.list_(pa.float64())),
        pa.array([{"a": 1}, {"a": 2}]),
        pa.array([b"\xff\xfe", b"1"], pa.binary()),
    ],
    ids=["list", "struct", "binary-not-utf8"],
)
def test_parquet_columns_of_the_wrong_type_are_refused(tmp_path: Path, column: pa.Array) -> None:
    cols = {**_good_columns(), "AmountUSD": column}
    with pytest.raises(ValidationError, match=r"AmountUSD: .*cannot be read as text or numbers"):
        read_crif(_parquet(tmp_path, pa.table(cols)), calibration=CAL)


def test_parquet_booleans_dates_and_dictionaries_are_read(tmp_path: Path) -> None:
    import datetime as dt

    table = pa.table(
        {
            "TradeID": pa.array(["A", "A"]).dictionary_encode(),
            "ProductClass": pa.array(["Rates", "Rates"]),
            "RiskType": pa.array(["Notional", "PV"]),
            "Amount": pa.array([True, False]),  # a bool is not an amount
            "AmountCurrency": pa.array(["USD", "USD"]),
            "EndDate": pa.array([dt.datetime(2030, 1, 1), dt.datetime(2031, 1, 1)]),
            "IMModel": pa.array(["Schedule", "Schedule"]),
        }
    )
    load = read_crif(_parquet(tmp_path, table), calibration=CAL)
    assert [(f.line, f.field) for f in load.failures] == [(1, "Amount"), (2, "Amount")]


def test_parquet_with_zero_rows_gives_an_empty_result(tmp_path: Path) -> None:
    table = pa.table({k: v[:0] for k, v in _good_columns().items()})
    load = read_crif(_parquet(tmp_path, table), calibration=CAL)
    assert len(load.crif) == 0
    assert not load.failures


def test_a_truncated_parquet_file_is_one_line(tmp_path: Path) -> None:
    path = _parquet(tmp_path, pa.table(_good_columns()))
    data = path.read_bytes()
    for cut in (0, 4, len(data) // 2, len(data) - 9):
        path.write_bytes(data[:cut])
        with pytest.raises(ValidationError, match="cannot be read as Parquet") as err:
            read_crif(path, calibration=CAL)
        assert "\n" not in str(err.value)
    status, _, errors = simm(str(path), "--version", "2.6")
    assert status == 2
    assert "cannot be read as Parquet" in errors


# ----------------------------------------------------------------------------- FX rates


def test_a_missing_fx_file_is_one_line(tmp_path: Path) -> None:
    crif = write(tmp_path, f"{HEADER}\n{GOOD}\n")
    for path, message in (
        (tmp_path / "nope.csv", MSG_FILE_MISSING),
        (tmp_path, MSG_FILE_DIRECTORY),
    ):
        status, _, errors = simm(str(crif), "--version", "2.6", "--fx-rates", str(path))
        assert status == 2
        assert message in errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Currency,USDPerUnit\nEUR,1.08\nEUR,1.1\n",
            "Currency: rates.csv:3: EUR is given twice (first on line 2)",
        ),
        (
            "Currency,USDPerUnit\nEUR,1.08\nGBP\n",
            "row: rates.csv:3: expected Currency,USDPerUnit, got 1 field(s)",
        ),
        (
            "EUR,1.o8\nGBP,1.27\n",
            "USDPerUnit: rates.csv:1: FX rate for EUR must be a positive number",
        ),
        (
            "Currency,USDPerUnit\nEUR,1e300\n",
            "USDPerUnit: rates.csv:2: FX rate for EUR must be between",
        ),
        ("Currency,USDPerUnit\nUSD,2\n", "USDPerUnit: rates.csv:2: USD is 1 USD per unit"),
        (
            "Currency,USDPerUnit\nXYZ,2\n",
            "Currency: rates.csv:2: is not an ISO currency code: 'XYZ'",
        ),
        (
            "Currency,USDPerUnit\nEUR,1.08,9\n",
            "row: rates.csv:2: expected Currency,USDPerUnit, got 3 field(s)",
        ),
    ],
)
def test_bad_fx_rows_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text, "rates.csv")
    with pytest.raises(ValidationError) as err:
        read_fx_rates(path)
    assert message.replace("rates.csv", str(path)) in str(err.value)


def test_fx_file_with_header_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "# rates\nCurrency,USDPerUnit\n\nEUR,1.08\n gbp , 1.27 \n", "r.csv")
    assert read_fx_rates(path).usd_per_unit == {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}


# ----------------------------------------------------------------------- parameter rows


def test_conflicting_parameter_rows_are_noted_with_their_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "PortfolioID,TradeID,ProductClass,RiskType,Qualifier,Bucket,Label1,Label2,Amount,"
        "AmountCurrency,AmountUSD\n"
        "P1,T1,Equity,Risk_Equity,ACME,1,,,,,1000000\n"
        "P1,,,Param_ProductClassMultiplier,Equity,,,,1.5,,\n"
        "P1,,,Param_ProductClassMultiplier,Equity,,,,2,,\n"
        "P1,,,Param_AddOnNotionalFactor,Swaption,,,,5,,\n"
        "P1,,,Notional,Swaption,,,,,,1000000\n"
        "P1,,,Param_AddOnNotionalFactor,Swaption,,,,5,,\n"
        "P1,,,Param_AddOnNotionalFactor,Swaption,,,,7.5,,\n"
        "P2,,,Param_ProductClassMultiplier,Equity,,,,1.5,,\n",
    )
    run = simm_of_crif(path, version="2.6")
    notes = [n for n in run.report.notes if "parameter" in n]
    assert notes == [
        f"P1: Param_ProductClassMultiplier Equity is given 2 different values "
        f"({path}:3: 1.5; {path}:4: 2): the largest (2) is used",
        f"P1: Param_AddOnNotionalFactor Swaption is given 2 different values "
        f"({path}:5: 5; {path}:7: 5; {path}:8: 7.5): the largest (7.5) is used",
    ]
    status, out, errors = simm(str(path), "--version", "2.6", "--json")
    assert status == 0
    assert notes == [n for n in json.loads(out)["notes"] if "parameter" in n]
    status, out, errors = simm(str(path), "--version", "2.6")
    assert status == 0
    assert f"{path}:4: 2" in " ".join(errors.split())


# ------------------------------------------------------------------- the exit-134 crash


HEADLESS = "\n".join(["Risk_Equity,Equity,ACME,1,1000"] * 50) + "\n1,2\n"


@pytest.mark.slow
def test_the_error_path_exits_2_every_time(tmp_path: Path) -> None:
    # A file with no header line is refused (RiskType missing) right after Arrow parsed it.
    # Arrow's worker threads released Python objects handed to the parser (the file object,
    # the invalid-row callback) after read_csv returned; one doing so while the interpreter
    # was finalising took the GIL, was ended by pthread_exit, and the unwind through Arrow's
    # noexcept frames called std::terminate: exit 134 in ~3% of runs.
    path = write(tmp_path, HEADLESS)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = []
    statuses = []
    for _ in range(60):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "marginflow", "simm", str(path), "--version", "2.6"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        if len(procs) == 4:
            statuses += [(p.wait(), p.stderr.read() if p.stderr else b"") for p in procs]
            procs = []
    statuses += [(p.wait(), p.stderr.read() if p.stderr else b"") for p in procs]
    assert [s for s in statuses if s[0] != 2] == []


def test_records_split_by_a_lone_cr_are_each_counted(tmp_path: Path) -> None:
    # Arrow ends a record at a lone CR, an editor does not end the line: the records cannot
    # be matched to lines, so they are numbered as records, and every one is still counted
    # (rows in = rows out + rows rejected), the malformed ones named as line 0.
    bad = "P1,T3,Equity,Risk_Equity,ACME,99,,,5"
    path = tmp_path / "crif.csv"
    path.write_bytes(f"{HEADER}\r{GOOD}\r\n{bad}\rP1,T4,Eq\ruity\n{GOOD2}\n".encode())
    load = read_crif(path, calibration=CAL)
    assert [(f.line, f.field) for f in load.failures] == [(0, "(row)"), (0, "(row)"), (3, "Bucket")]
    assert load.crif.line.tolist() == [2, 4]
    assert len(load.crif) + load.rejected_lines == 5


def test_parquet_integers_beyond_double_precision_are_read(tmp_path: Path) -> None:
    # Arrow's safe cast refused 2**64 - 1 as a float: a stack trace before.
    cols = {**_good_columns(), "AmountUSD": pa.array([2**64 - 1, 5], pa.uint64())}
    load = read_crif(_parquet(tmp_path, pa.table(cols)), calibration=CAL)
    assert load.crif.amount_usd.tolist() == [float(2**64 - 1), 5.0]


def test_a_schedule_end_date_beyond_2199_is_a_reject(tmp_path: Path) -> None:
    # 9999-12-31 ("no end") made the ACT/ACT year fraction step into year 10000: ValueError.
    head = "TradeID,PortfolioID,ProductClass,RiskType,Amount,AmountCurrency,EndDate,IMModel"
    rows = "A,P,Rates,Notional,1e6,USD,{d},Schedule\nA,P,Rates,PV,1e3,USD,{d},Schedule\n"
    path = write(tmp_path, head + "\n" + rows.format(d="9999-12-31") + rows.format(d="2030-01-01"))
    load = read_crif(path, calibration=CAL)
    assert [(f.line, f.field) for f in load.failures] == [(2, "EndDate"), (3, "EndDate")]
    assert "must be between 1900-01-01 and 2199-12-31, got '9999-12-31'" in load.failures[0].reason
    assert len(simm_of_crif(path, version="2.6").report.results) == 2


def test_hostile_text_in_a_crif_is_shown_literally(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "PortfolioID,TradeID,ProductClass,RiskType,Qualifier,Bucket,AmountUSD\n"
        "[/x],[bold red]t[/],Equity,Risk_Equity,:100:,1,1000\n"
        "\x1b[31mP2,T2,Equity,Risk_Equity,A\x1b]0;x\x07,1,1000\n",
    )
    status, out, errors = simm(
        str(path), "--version", "2.6", "--detail", "--depth", "9", "--contributions"
    )
    assert status == 0, errors
    assert "[/x]" in out
    assert "[bold red]t[/]" in out
    assert ":100:" in out
    assert "\x1b" not in out + errors
