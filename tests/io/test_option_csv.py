from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.errors import ValidationError
from marginflow.io.option_csv import read_option_csv

HEADER = "kind,style,spot,strike,expiry_years,rate,dividend_yield,vol"


def read(text: str):  # type: ignore[no-untyped-def]
    return read_option_csv(io.StringIO(text), source="t.csv")


def test_good_rows_parse_and_extra_columns_survive() -> None:
    f = read(
        "\ufeff" + HEADER + ",tag\r\ncall,european,100,90,1,0.05,0,0.2,a\r\n\r\n"
        "PUT,American,100,110,0.5,-0.01,0.02,0.3,b\r\n"
    )
    assert len(f.batch) == 2
    assert list(f.batch.is_call) == [True, False]
    assert list(f.batch.is_american) == [False, True]
    assert f.rows.lines == [2, 4]
    assert [r["tag"] for r in f.rows.raw] == ["a", "b"]
    assert f.failures == []


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (
            "straddle,european,100,90,1,0.05,0,0.2",
            "kind",
            "must be one of call, put, got 'straddle'",
        ),
        ("call,bermudan,100,90,1,0.05,0,0.2", "style", "must be one of european, american"),
        ("call,european,abc,90,1,0.05,0,0.2", "spot", "is not a number: 'abc'"),
        ("call,european,-5,90,1,0.05,0,0.2", "spot", "must be > 0, got '-5'"),
        ("call,european,100,90,-1,0.05,0,0.2", "expiry_years", "must be >= 0, got '-1'"),
        ("call,european,100,90,1,nan,0,0.2", "rate", "must be finite, got 'nan'"),
        ("call,european,100,90,1,0.05,0,", "vol", "is missing"),
        ("call,european,100,90,1,0.05", "row", "has 6 fields, the header has 8"),
    ],
)
def test_bad_row_is_named_with_line_field_reason_and_kept(
    row: str, field: str, reason: str
) -> None:
    good = "put,european,100,90,1,0.05,0,0.2"
    f = read(f"{HEADER}\n{good}\n{row}\n{good}\n")
    assert len(f.batch) == 2
    assert len(f.failures) == 1
    failure = f.failures[0]
    assert (failure.line, failure.field) == (3, field)
    assert reason in failure.reason
    assert failure.raw == row
    assert str(failure).startswith(f"t.csv:3: {field}: ")


def test_missing_column_is_a_whole_file_error() -> None:
    with pytest.raises(ValidationError, match=r"vol: column is missing from the header of t\.csv"):
        read("kind,style,spot,strike,expiry_years,rate,dividend_yield\n")


def test_empty_file_is_an_error() -> None:
    with pytest.raises(ValidationError, match=r"header: t\.csv is empty"):
        read("")


@settings(max_examples=300, deadline=None)
@given(body=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_hostile_text_never_escapes_as_an_unexpected_error(body: str) -> None:
    """Any text after a valid header: every non-blank row is priced or rejected, nothing lost."""
    f = read(HEADER + "\n" + body)
    lines = f.rows.lines + [x.line for x in f.failures]
    assert len(lines) == len(set(lines))
    assert len(f.batch) == len(f.rows.lines)
    f.batch.validate()
