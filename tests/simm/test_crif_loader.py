"""The CRIF loader: each bad row named by line, field and reason, valid rows kept, both
column spellings, CSV and Parquet alike; hostile files generated with Hypothesis."""

from __future__ import annotations

import csv
import dataclasses
import io
import string
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from marginflow.core.errors import ValidationError
from marginflow.io.crif import crif_from_rows, read_crif
from marginflow.sim.synthetic_crif import USD_PER_UNIT, CrifSpec, generate, write_crif_csv
from marginflow.simm import crif as crif_mod
from marginflow.simm.calculator import run_simm
from marginflow.simm.calibration import load_calibration
from marginflow.simm.fx import FxRates

CAL = load_calibration("2.6")
HEADER = (
    "TradeID,PortfolioID,ProductClass,RiskType,Qualifier,Bucket,Label1,Label2,"
    "Amount,AmountCurrency,AmountUSD"
)
GOOD = "T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,1000,USD,1000"


def _load(tmp_path: Path, body: str, name: str = "crif.csv") -> crif_mod.CrifLoad:
    path = tmp_path / name
    path.write_text(body)
    return read_crif(path, calibration=CAL)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (
            "T1,P1,RatesFX,Risk_IRCurvy,USD,1,5y,OIS,1000,USD,1000",
            "RiskType",
            "unknown risk type 'Risk_IRCurvy'",
        ),
        (
            "T1,P1,Equity,Risk_Equity,ACME,13,,,1000,USD,1000",
            "Bucket",
            "bucket '13' is outside the buckets of SIMM 2.6 for Risk_Equity",
        ),
        ("T1,P1,Equity,Risk_Equity,ACME,,,,1000,USD,1000", "Bucket", "is required for Risk_Equity"),
        (
            "T1,P1,Commodity,Risk_Commodity,WTI,Residual,,,1000,USD,1000",
            "Bucket",
            "bucket 'Residual' is outside",
        ),
        (
            "T1,P1,RatesFX,Risk_IRCurve,USD,1,7y,OIS,1000,USD,1000",
            "Label1",
            "tenor label '7y' is not allowed for Risk_IRCurve",
        ),
        (
            "T1,P1,Credit,Risk_CreditQ,ISS,3,6m,,1000,USD,1000",
            "Label1",
            "tenor label '6m' is not allowed for Risk_CreditQ",
        ),
        (
            "T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,SOFR3m,1000,USD,1000",
            "Label2",
            "sub-curve label 'SOFR3m' is not allowed",
        ),
        ("T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,1O00,USD,", "Amount", "is not a number: '1O00'"),
        ("T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,,USD,abc", "AmountUSD", "is not a number: 'abc'"),
        ("T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,inf,USD,", "Amount", "must be finite"),
        (
            "T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,1e300,USD,",
            "Amount",
            "magnitude must be at most 1e+20, got 1e+300",
        ),
        (
            "T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,,USD,-2e21",
            "AmountUSD",
            "magnitude must be at most 1e+20, got -2e+21",
        ),
        (
            "T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,1000,XYZ,",
            "AmountCurrency",
            "is not an ISO currency code: 'XYZ'",
        ),
        (
            "T1,P1,RatesFX,Risk_IRCurve,US,1,5y,OIS,1000,USD,1000",
            "Qualifier",
            "is not an ISO currency code: 'US'",
        ),
        (
            "T1,P1,RatesFX,Risk_FXVol,EURXXX,,1y,,1000,USD,1000",
            "Qualifier",
            "is not a currency pair",
        ),
        ("T1,P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,,,", "Amount", "no amount"),
        (
            "T1,P1,Rates,Risk_IRCurve,USD,1,5y,OIS,1000,USD,1000",
            "ProductClass",
            "must be one of RatesFX, Credit, Equity, Commodity, got 'Rates'",
        ),
        (
            "T1,P1,,Param_ProductClassMultiplier,RatesFX,,,,-1,,",
            "Amount",
            "a product class multiplier must be >= 0",
        ),
    ],
)
def test_each_bad_row_is_named(tmp_path: Path, row: str, field: str, reason: str) -> None:
    load = _load(tmp_path, f"{HEADER}\n{GOOD}\n{row}\n{GOOD}\n")
    assert len(load.crif) == 2  # the good rows are kept
    assert len(load.failures) == 1
    failure = load.failures[0]
    assert (failure.line, failure.field) == (3, field)
    assert reason in failure.reason
    assert failure.raw == row  # the rejected input is kept as it was


def test_line_numbers_skip_blank_lines_and_malformed_rows(tmp_path: Path) -> None:
    bad_bucket = "T2,P1,Equity,Risk_Equity,ACME,99,,,1,USD,1"
    body = f"{HEADER}\n{GOOD}\n\n{GOOD},extra\n{bad_bucket}\n\n{GOOD}\n"
    load = _load(tmp_path, body)
    assert len(load.crif) == 2
    assert [(f.line, f.field) for f in load.failures] == [(4, "(row)"), (5, "Bucket")]
    assert load.failures[0].raw == f"{GOOD},extra"
    assert load.crif.line.tolist() == [2, 7]


def test_quoted_line_breaks_keep_lines_and_raw_text_exact(tmp_path: Path) -> None:
    # A quoted value spanning two lines shifts every later record by a line: the failure
    # must still name the editor line of the bad row and keep *its* text, not a neighbour's.
    quoted = '"T\n1",P1,RatesFX,Risk_IRCurve,USD,1,5y,OIS,1000,USD,1000'
    bad_bucket = "T3,P1,Equity,Risk_Equity,ACME,99,,,1,USD,1"
    body = f"{HEADER}\n{quoted}\n{GOOD}\n{bad_bucket}\n{GOOD},extra\n\n{GOOD}\n"
    load = _load(tmp_path, body)
    assert [(f.line, f.field, f.raw) for f in load.failures] == [
        (5, "Bucket", bad_bucket),
        (6, "(row)", f"{GOOD},extra"),
    ]
    assert load.crif.line.tolist() == [2, 4, 8]
    assert load.crif.trades[int(load.crif.trade[0])] == "T\n1"


def test_schedule_rows_need_end_date_and_trade(tmp_path: Path) -> None:
    head = "TradeID,PortfolioID,ProductClass,RiskType,Amount,AmountCurrency,EndDate,IMModel"
    body = (
        f"{head}\nA,P,Rates,Notional,1e6,USD,2030-01-01,Schedule\n"
        "B,P,Rates,Notional,1e6,USD,,Schedule\n"
        "C,P,Rates,Notional,1e6,USD,31.02.2030,Schedule\n"
        ",P,Rates,PV,1e6,USD,2030-01-01,Schedule\n"
        "D,P,RatesFX,PV,1e6,USD,2030-01-01,Schedule\n"
        "E,P,Rates,Risk_IRCurve,1e6,USD,2030-01-01,Schedule\n"
        "F,P,Rates,Notional,1e6,USD,2030-01-01,SIMM-X2\n"
    )
    load = _load(tmp_path, body)
    assert [(f.line, f.field) for f in load.failures] == [
        (3, "EndDate"),
        (4, "EndDate"),
        (5, "TradeID"),
        (6, "ProductClass"),
        (7, "RiskType"),
    ]
    assert len(load.crif) == 2  # 'SIMM-X2' is a SIMM flavour: the row is a SIMM notional


def test_both_regulation_spellings_and_case_insensitive_headers(tmp_path: Path) -> None:
    isda = f'{HEADER},CollectRegulation,PostRegulation\n{GOOD},"ESA,USPR",CFTC\n'
    ore = f'{HEADER.lower()},collect_regulations,post_regulations\n{GOOD},"ESA,USPR",CFTC\n'
    a, b = _load(tmp_path, isda, "a.csv").crif, _load(tmp_path, ore, "b.csv").crif
    for c in (a, b):
        assert c.regulation_sets[int(c.collect_regs[0])] == {"ESA", "USPR"}
        assert c.regulation_sets[int(c.post_regs[0])] == {"CFTC"}


def test_missing_required_columns_is_a_file_error(tmp_path: Path) -> None:
    # the file is named (the whole-file error is one line a user can act on)
    with pytest.raises(ValidationError, match=r"RiskType: \S+\.csv:1: column is missing"):
        _load(tmp_path, "TradeID,Amount\nT1,5\n")
    with pytest.raises(ValidationError, match=r"Amount: \S+\.csv:1: column is missing"):
        _load(tmp_path, "RiskType,Qualifier\nRisk_FX,EUR\n")
    with pytest.raises(ValidationError, match="empty"):
        _load(tmp_path, "")


def test_parquet_equals_csv(tmp_path: Path) -> None:
    rows = generate(CrifSpec(rows=400, portfolios=2, add_ons=True, seed=2))
    csv_path = write_crif_csv(rows, tmp_path / "crif.csv")
    table = pa.table({k: [str(r.get(k, "")) for r in rows] for k in rows[0]})
    pq.write_table(table, tmp_path / "crif.parquet")
    a = read_crif(csv_path, calibration=CAL)
    b = read_crif(tmp_path / "crif.parquet", calibration=CAL)
    assert not a.failures
    assert not b.failures
    fx = FxRates.of(USD_PER_UNIT)
    ra = run_simm(a.crif, calibration=CAL, fx=fx)
    rb = run_simm(b.crif, calibration=CAL, fx=fx)
    # Same rows, same arithmetic: identical to the last bit.
    assert [u.margin for u in ra.units] == [u.margin for u in rb.units]


def test_lowercase_and_padded_values_are_normalised(tmp_path: Path) -> None:
    row = "T1,P1,ratesfx,risk_irCURVE, usd ,1,5Y,ois,1000,usd,"
    load = _load(tmp_path, f"{HEADER}\n{row}\n{GOOD}\n")
    assert not load.failures
    c = load.crif
    assert c.qualifiers[int(c.qualifier[0])] == "USD"
    assert c.labels2[int(c.label2[0])] == "OIS"
    assert c.label1[0] == c.label1[1]


# ----------------------------------------------------------------------------- hostile files

FIELDS = HEADER.split(",")
garbage = st.one_of(
    st.text(alphabet=string.printable + "ÄΩ€\u00a0\u200b", max_size=12),
    st.sampled_from(
        ["", "NaN", "inf", "-", "1e999", "0x10", "1,5", "Residual", "99", "2W", "USDEUR"]
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    corruptions=st.lists(
        st.tuples(st.integers(0, 59), st.sampled_from(FIELDS), garbage), max_size=25
    ),
)
def test_hostile_crif_never_crashes_and_keeps_every_clean_row(
    tmp_path_factory: pytest.TempPathFactory, seed: int, corruptions: list[tuple[int, str, str]]
) -> None:
    rows = generate(CrifSpec(rows=60, portfolios=2, names=10, seed=seed))
    touched: set[int] = set()
    for index, field, value in corruptions:
        rows[index][field] = value
        touched.add(index)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    line_of: list[int] = []  # the editor line each row starts on (header = 1)
    for r in rows:
        line_of.append(buffer.getvalue().count("\n") + 1)
        writer.writerow([r.get(f, "") for f in FIELDS])
    path = tmp_path_factory.mktemp("hostile") / "crif.csv"
    path.write_text(buffer.getvalue())
    load = read_crif(path, calibration=CAL)
    rejected = {f.line for f in load.failures}
    # Untouched rows are always accepted; a rejected line is always a touched row (a value
    # with a line break makes its row span lines); nothing is lost.
    assert rejected <= {line_of[i] for i in touched}
    assert len(load.crif) + len(rejected) == len(rows)
    assert set(load.crif.line.tolist()) >= {
        line_of[i] for i in range(len(rows)) if i not in touched
    }
    assert all(f.field in FIELDS for f in load.failures)
    # Whatever survived can be margined.
    run = run_simm(load.crif, calibration=CAL, fx=FxRates.of(USD_PER_UNIT))
    assert all(np.isfinite(u.margin) and u.margin >= 0 for u in run.units)


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_give_a_load_or_a_clear_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("bytes") / "crif.csv"
    path.write_bytes(b"RiskType,Qualifier,Amount,AmountCurrency\n" + data)
    try:
        load = read_crif(path, calibration=CAL)
    except ValidationError:
        return
    assert all(f.line >= 0 for f in load.failures)


@settings(max_examples=100, deadline=None)
@given(
    value=st.floats(min_value=-1e20, max_value=1e20, width=64),
    style=st.sampled_from(["repr", "e", "f"]),
)
def test_amounts_parse_exactly(value: float, style: str) -> None:
    text = {"repr": repr(value), "e": f"{value:.17e}", "f": f"{value:.6f}"}[style]
    load = crif_from_rows(
        [
            {
                "RiskType": "Risk_FX",
                "ProductClass": "RatesFX",
                "Qualifier": "EUR",
                "Amount": text,
                "AmountCurrency": "USD",
            }
        ],
        calibration=CAL,
    )
    assert not load.failures
    assert load.crif.amount[0] == float(text)


def test_implausibly_large_amounts_are_rejected_not_overflowed(tmp_path: Path) -> None:
    # 1e300 is a finite double, but squaring its weighted sensitivity overflows to inf and
    # the margin to NaN; such a row is rejected (and kept) like any other bad value, and
    # the rest of the file is margined with finite results.
    huge = "T2,P1,Equity,Risk_Equity,ACME,3,,,1e300,USD,1e300"
    load = _load(tmp_path, f"{HEADER}\n{GOOD}\n{huge}\n")
    assert [(f.line, f.field) for f in load.failures] == [(3, "Amount")]
    run = run_simm(load.crif, calibration=CAL, fx=FxRates.of(USD_PER_UNIT))
    assert all(np.isfinite(u.margin) for u in run.units)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_margin_that_overflows_is_an_error_not_nan(tmp_path: Path) -> None:
    # Past the loader (e.g. arrays built in code), an overflowing margin must not reach the
    # regulation comparison as NaN: the calculator names the portfolio and side instead.
    load = _load(tmp_path, f"{HEADER}\n{GOOD}\n")
    crif = dataclasses.replace(load.crif, amount_usd=np.array([1e300]))
    with pytest.raises(ValidationError, match=r"SIMM of portfolio 'P1' \(call\) is not finite"):
        run_simm(crif, calibration=CAL, fx=FxRates.of(USD_PER_UNIT))
