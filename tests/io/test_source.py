"""The checks every input file passes before a row is read (marginflow.io.source)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marginflow.core.errors import ValidationError
from marginflow.io.csv_rows import read_rows
from marginflow.io.source import (
    MAX_COLUMNS,
    check_header,
    check_input,
    decode_utf8,
    read_input,
    read_json,
    read_parquet,
    read_stream_text,
    read_toml,
)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"nope\.csv: no such file"):
        check_input(tmp_path / "nope.csv")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is a directory, expected a file"):
        check_input(tmp_path)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_before_reading(device: str) -> None:
    with pytest.raises(ValidationError, match="is not a regular file"):
        read_input(Path(device))


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(ValidationError, match="is not a regular file"):
        read_input(fifo)


def test_a_file_over_its_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"x" * 101)
    with pytest.raises(ValidationError, match="is 101 bytes, more than the limit of 100"):
        read_input(path, max_bytes=100)
    assert read_input(path, max_bytes=101) == b"x" * 101


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.csv"
    path.write_text("a\n")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything
        pytest.skip("running as root: permissions do not stop reads")
    with pytest.raises(ValidationError, match="cannot be read: Permission denied"):
        read_input(path)


def test_bad_utf8_is_named_by_line_and_byte() -> None:
    with pytest.raises(ValidationError, match=r"f\.csv: line 2: byte 4 \(b'\\xff'\) is not UTF-8"):
        decode_utf8(b"a,b\n\xff,2\n", source="f.csv")


def test_a_byte_order_mark_is_dropped() -> None:
    assert decode_utf8("\ufeffa,b\n".encode(), source="f.csv") == "a,b\n"


def test_a_column_named_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"f\.csv:1: the column appears twice") as err:
        check_header(["account", "quantity", "quantity"], source="f.csv")
    assert err.value.field == "quantity"


def test_an_empty_column_name_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"f\.csv:1: column 2 of the header has no name"):
        check_header(["account", " ", "quantity"], source="f.csv")


@given(st.lists(st.text(min_size=1).filter(str.strip), max_size=8))
def test_check_header_accepts_exactly_the_headers_without_repeats(names: list[str]) -> None:
    if len(set(names)) == len(names):
        check_header(names, source="f.csv")
    else:
        with pytest.raises(ValidationError, match="appears twice"):
            check_header(names, source="f.csv")


@given(st.binary(max_size=64))
def test_decode_utf8_either_decodes_or_names_a_line(data: bytes) -> None:
    try:
        expected = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        with pytest.raises(ValidationError, match=r"f\.csv: line \d+: byte \d+"):
            decode_utf8(data, source="f.csv")
    else:
        assert decode_utf8(data, source="f.csv") == expected


def test_standard_input_is_read_with_a_limit() -> None:
    assert read_stream_text(io.BytesIO(b"\xef\xbb\xbfa,b\n"), source="<stdin>") == "a,b\n"
    with pytest.raises(ValidationError, match=r"<stdin>: more than 10 bytes"):
        read_stream_text(io.BytesIO(b"x" * 11), source="<stdin>", max_bytes=10)


def test_too_many_columns_are_refused_by_the_row_reader() -> None:
    text = ",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + "\n"
    with pytest.raises(ValidationError, match=r"f\.csv:1: has 20,001 columns, more than"):
        read_rows(io.StringIO(text), source="f.csv", columns=[])


def test_a_json_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{\n  "mpor": 2,\n  oops\n}\n')
    with pytest.raises(ValidationError, match=r"s\.json:3: not JSON: Expecting property name"):
        read_json(path)


def test_a_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[cluster]\npartitions = = 4\n")
    with pytest.raises(ValidationError, match=r"c\.toml: not TOML: .*line 2"):
        read_toml(path)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pa.array([[1, 2]]), "column 'x' is of type list<"),
        (pa.array([{"a": 1}]), "column 'x' is of type struct<a: int64>"),
        (pa.array([b"\xff"]), "column 'x' is of type binary"),
    ],
)
def test_a_parquet_column_that_is_not_flat_is_refused(
    tmp_path: Path, column: pa.Array, message: str
) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": ["1"], "x": column}), path)
    with pytest.raises(ValidationError, match=re.escape(f"t.parquet:1: {message}")):
        read_parquet(path)


def test_a_parquet_column_named_twice_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["q", "q"]), path)
    with pytest.raises(ValidationError, match=r"t\.parquet:1: the column appears twice") as err:
        read_parquet(path)
    assert err.value.field == "q"


def test_damaged_parquet_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0] * 100}), path)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValidationError, match=r"t\.parquet: is not a readable Parquet file") as err:
        read_parquet(path)
    assert "\n" not in str(err.value)
