"""Properties of the CRIF parser over hostile input (Hypothesis): whatever the bytes, text,
rows or Parquet columns, ``read_crif`` either refuses the file with a
:class:`~marginflow.core.errors.ValidationError` or returns the valid rows and the rejects,
with rows in = valid rows + rejected rows. Never any other exception."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import hypothesis.strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from marginflow.core.errors import ValidationError
from marginflow.io.crif import read_crif
from marginflow.simm.calibration import load_calibration
from marginflow.simm.crif import COLUMNS

CAL = load_calibration("2.6")
FIELDS = [
    "PortfolioID",
    "TradeID",
    "ProductClass",
    "RiskType",
    "Qualifier",
    "Bucket",
    "Label1",
    "Label2",
    "Amount",
    "AmountCurrency",
    "AmountUSD",
    "CollectRegulation",
    "PostRegulation",
    "EndDate",
    "IMModel",
]
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Values a CRIF field may hold, good and hostile: real vocabulary, numbers at the edges,
# markup, control characters, quotes and separators, long text.
VOCABULARY = [
    "Risk_IRCurve", "Risk_Equity", "Risk_FX", "Risk_FXVol", "Risk_CreditQ", "Risk_Commodity",
    "Param_ProductClassMultiplier", "Param_AddOnNotionalFactor", "Notional", "PV",
    "RatesFX", "Equity", "Credit", "Commodity", "Rates", "Schedule", "SIMM",
    "USD", "EUR", "EURUSD", "1", "12", "Residual", "5y", "2w", "OIS", "ESA,USPR", "Excluded",
    "2030-01-01", "1e308", "-1e308", "1e309", "nan", "inf", "-0", "0x1F", "1,5", "",
    "[/x]", "[bold red]x[/]", ":100:", "\x1b[31m", "=cmd|'/c calc'!A1", "\u202e", "\x00",
    '"', "\r", "\n", "\ufeff", "Q" * 300,
]  # fmt: skip
field_value = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=20))


def _load_or_refusal(path: Path) -> object:
    try:
        return read_crif(path, calibration=CAL)
    except ValidationError as exc:
        refusal = exc
    assert "\n" not in str(refusal)  # one line
    return refusal


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_any_bytes_after_any_header(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("b") / "crif.csv"
    path.write_bytes(data)
    result = _load_or_refusal(path)
    if not isinstance(result, ValidationError):
        assert all(f.line >= 0 and f.reason for f in result.failures)  # type: ignore[attr-defined]


@SETTINGS
@given(text=st.text(max_size=2000))
def test_any_text_after_a_header(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("t") / "crif.csv"
    path.write_text(",".join(FIELDS) + "\n" + text, encoding="utf-8", errors="surrogatepass")
    _load_or_refusal(path)


@SETTINGS
@given(
    header=st.lists(st.one_of(st.sampled_from(FIELDS), field_value), min_size=1, max_size=20),
    rows=st.lists(st.lists(field_value, max_size=20), max_size=10),
)
def test_any_header_and_rows(
    tmp_path_factory: pytest.TempPathFactory, header: list[str], rows: list[list[str]]
) -> None:
    path = tmp_path_factory.mktemp("h") / "crif.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8", errors="surrogatepass"))
    _load_or_refusal(path)


@SETTINGS
@given(rows=st.lists(st.fixed_dictionaries({f: field_value for f in FIELDS}), max_size=25))
def test_structured_hostile_rows_are_each_kept_or_rejected(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, str]]
) -> None:
    # Every record is accepted or rejected, none lost or doubled. Values holding a line
    # break (CR or LF) are quoted by the writer, so each row is one CSV record.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow([row[f] for f in FIELDS])
    path = tmp_path_factory.mktemp("s") / "crif.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8", errors="surrogatepass"))
    result = _load_or_refusal(path)
    assert not isinstance(result, ValidationError), result  # a good header: never refused
    load = result
    assert len(load.crif) + load.rejected_lines == len(rows)  # type: ignore[attr-defined]


ARROW_TYPES = [
    pa.string(), pa.large_string(), pa.int8(), pa.int64(), pa.uint64(), pa.float32(),
    pa.float64(), pa.bool_(), pa.date32(), pa.timestamp("ms"), pa.binary(),
    pa.decimal128(20, 4), pa.list_(pa.string()), pa.struct([("a", pa.int32())]), pa.null(),
]  # fmt: skip


@st.composite
def parquet_column(draw: st.DrawFn, n: int) -> pa.Array:
    kind = draw(st.sampled_from(ARROW_TYPES))
    if kind in (pa.string(), pa.large_string()):
        values = draw(st.lists(st.one_of(st.none(), field_value), min_size=n, max_size=n))
        return pa.array(
            [None if v is None else v.encode("utf-8", "replace").decode() for v in values], kind
        )
    if kind == pa.float64() or kind == pa.float32():
        floats = st.floats(
            allow_nan=True, allow_infinity=True, width=32 if kind == pa.float32() else 64
        )
        return pa.array(draw(st.lists(st.one_of(st.none(), floats), min_size=n, max_size=n)), kind)
    if kind == pa.binary():
        return pa.array(draw(st.lists(st.binary(max_size=8), min_size=n, max_size=n)), kind)
    return pa.nulls(n, kind) if draw(st.booleans()) else pa.array([None] * n, kind)


@SETTINGS
@given(data=st.data(), n=st.integers(0, 8))
def test_any_parquet_columns(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, n: int
) -> None:
    names = data.draw(st.lists(st.sampled_from([*COLUMNS, "Other"]), min_size=1, max_size=8))
    table = pa.Table.from_arrays([data.draw(parquet_column(n)) for _ in names], names=names)
    path = tmp_path_factory.mktemp("p") / "crif.parquet"
    pq.write_table(table, path)
    result = _load_or_refusal(path)
    if not isinstance(result, ValidationError):
        assert len(result.crif) + result.rejected_lines == n  # type: ignore[attr-defined]
