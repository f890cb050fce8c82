"""Book folders: round trip in CSV and Parquet, and bad rows named with line, field, reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.errors import ValidationError
from marginflow.io.book import load_book, write_book
from marginflow.sim.synthetic_book import SyntheticBook, generate_book


@pytest.fixture(scope="module")
def synthetic() -> SyntheticBook:
    return generate_book(members=3, accounts=12, underlyings=5, series=60, positions=150, seed=2)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip(tmp_path: Path, synthetic: SyntheticBook, fmt: str) -> None:
    sb = synthetic
    write_book(tmp_path, sb.book, fmt=fmt)  # type: ignore[arg-type]
    loaded = load_book(tmp_path)
    a, b = sb.book, loaded.book
    assert loaded.failures == []
    assert b.instruments.ids == a.instruments.ids
    assert np.array_equal(b.instruments.strike, a.instruments.strike)
    assert b.instruments.expiry.astype(str).tolist() == a.instruments.expiry.astype(str).tolist()
    assert np.array_equal(b.instruments.expiry_years, a.instruments.expiry_years)
    assert np.array_equal(b.instruments.is_american, a.instruments.is_american)
    assert (b.positions.matrix != a.positions.matrix).nnz == 0
    assert b.positions.members == a.positions.members
    assert np.array_equal(b.market.spot, a.market.spot)
    assert np.array_equal(b.underlyings.adv, a.underlyings.adv)
    assert b.positions.account_type == a.positions.account_type
    assert b.history is not None
    # Closes are written at full precision: returns survive to rounding.
    assert np.abs(b.history.log_returns - sb.universe.history.log_returns).max() < 1e-12


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def _minimal(folder: Path) -> None:
    _write(
        folder,
        "market.csv",
        "underlying,date,spot,atm_vol,skew,dividend_yield,rate\n"
        "XYZ,2018-12-31,100,0.3,-0.1,0.01,0.02\nABC,2018-12-31,50,0.4,,,\n",
    )
    _write(folder, "accounts.csv", "account,member\nA1,M1\nA2,M2\n")
    _write(
        folder,
        "instruments.csv",
        "instrument,underlying,type,strike,expiry,style,multiplier\n"
        "XYZ,XYZ,stock,,,,\nXYZ C100,XYZ,call,100,2019-03-15,american,100\n"
        "ABC P50,ABC,put,50,2019-01-18,european,\n",
    )
    _write(
        folder,
        "positions.csv",
        "account,instrument,quantity\nA1,XYZ C100,-10\nA1,XYZ,500\nA2,ABC P50,3\n",
    )


def test_minimal_folder_with_defaults(tmp_path: Path) -> None:
    _minimal(tmp_path)
    loaded = load_book(tmp_path)
    b = loaded.book
    assert loaded.failures == []
    assert b.history is None
    assert b.positions.members == ("M1", "M2")  # no members file: taken from accounts
    assert b.market.skew.tolist() == [-0.1, 0.0]
    assert b.instruments.multiplier.tolist() == [
        1,
        100,
        100,
    ]
    assert np.isinf(b.underlyings.adv).all()  # no underlyings file: no concentration limit
    assert b.instruments.expiry_years[1] == pytest.approx(74 / 365)


def test_bad_rows_are_named_and_the_rest_kept(tmp_path: Path) -> None:
    _minimal(tmp_path)
    _write(
        tmp_path,
        "instruments.csv",
        "instrument,underlying,type,strike,expiry,style\n"
        "XYZ,XYZ,stock,,,\n"
        "XYZ C100,XYZ,call,-100,2019-03-15,american\n"  # line 3: negative strike
        "XYZ P90,XYZ,put,90,2018-06-15,american\n"  # line 4: expired
        "QQQ C1,QQQ,call,1,2019-03-15,american\n"  # line 5: no market data
        "XYZ,XYZ,stock,,,\n"  # line 6: duplicate
        "ABC P50,ABC,put,50,19-01-18,european\n",
    )  # line 7: bad date
    _write(
        tmp_path,
        "positions.csv",
        "account,instrument,quantity\nA1,XYZ C100,-10\nA9,XYZ,5\nA1,XYZ,ten\nA1,XYZ,5\nA1,XYZ,6\n",
    )
    loaded = load_book(tmp_path)
    got = [(Path(f.source).name, f.line, f.field, f.reason) for f in loaded.failures]
    assert got == [
        ("instruments.csv", 3, "strike", "must be > 0, got '-100'"),
        (
            "instruments.csv",
            4,
            "expiry",
            "2018-06-15 is before the valuation date 2018-12-31 (expired)",
        ),
        ("instruments.csv", 5, "underlying", "'QQQ' has no market data row"),
        ("instruments.csv", 6, "instrument", "duplicate instrument 'XYZ' (first on line 2)"),
        ("instruments.csv", 7, "expiry", "is not an ISO date (YYYY-MM-DD): '19-01-18'"),
        ("positions.csv", 2, "instrument", "unknown or rejected instrument 'XYZ C100'"),
        ("positions.csv", 3, "account", "unknown or rejected account 'A9'"),
        ("positions.csv", 4, "quantity", "is not a number: 'ten'"),
        ("positions.csv", 6, "instrument", "duplicate position 'A1 / XYZ' (first on line 5)"),
    ]
    assert loaded.failures[0].raw == "XYZ C100,XYZ,call,-100,2019-03-15,american"
    assert loaded.book.positions.nnz == 1  # A1 holds 5 XYZ


def test_whole_file_problems_raise(tmp_path: Path) -> None:
    _minimal(tmp_path)
    (tmp_path / "accounts.csv").unlink()
    with pytest.raises(ValidationError, match=r"accounts.csv .* is missing"):
        load_book(tmp_path)
    _minimal(tmp_path)
    _write(tmp_path, "history.csv", "date,XYZ\n2018-12-28,100\n2018-12-31,-1\n")
    with pytest.raises(ValidationError, match=r"history.csv:3: close on 2018-12-31 must be"):
        load_book(tmp_path)


@settings(max_examples=60, deadline=None)
@given(quantity=st.text(max_size=8), account=st.text(max_size=6))
def test_any_position_text_is_loaded_or_rejected(
    tmp_path_factory: pytest.TempPathFactory, quantity: str, account: str
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    _minimal(folder)
    safe = lambda s: s.replace('"', "").replace("\n", " ").replace("\r", " ").replace(",", ";")  # noqa: E731
    _write(
        folder,
        "positions.csv",
        f"account,instrument,quantity\n{safe(account)},XYZ,{safe(quantity)}\n",
    )
    loaded = load_book(folder)
    assert loaded.book.positions.nnz + len(loaded.failures) <= 1
    for f in loaded.failures:
        assert f.line == 2
        assert f.field in ("account", "quantity", "row")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_reference_files_cut_to_some_underlyings_read_as_the_restricted_book(
    tmp_path: Path, fmt: str
) -> None:
    """What ``reproduce`` reads for one account: the stored files cut to its underlyings
    must give the whole book's ``restricted`` to the bit, history and series included."""
    from marginflow.io.book import load_reference, reference_files, restricted_files
    from marginflow.sim.synthetic_book import BookSpec

    spec = BookSpec(members=2, accounts=5, underlyings=7, series=60, sod_positions=20, seed=3)
    write_book(tmp_path / "book", spec.book(), fmt=fmt)  # type: ignore[arg-type]
    files = reference_files(tmp_path / "book")
    whole = load_reference(files, tmp_path / "whole").book
    names = set(whole.underlyings.ids[1:6:2])
    cut = load_reference(restricted_files(files, names), tmp_path / "cut").book
    want = whole.restricted(names)
    assert cut.underlyings.ids == want.underlyings.ids
    assert cut.instruments.ids == want.instruments.ids
    for name in ("underlying", "strike", "multiplier", "is_american"):
        assert np.array_equal(getattr(cut.instruments, name), getattr(want.instruments, name))
    # NaT (a stock's expiry) is unequal to itself: compare the day numbers
    assert np.array_equal(cut.instruments.expiry.view("i8"), want.instruments.expiry.view("i8"))
    for name in ("spot", "atm_vol", "skew", "dividend_yield", "rate"):
        assert np.array_equal(getattr(cut.market, name), getattr(want.market, name))
    assert cut.history is not None
    assert want.history is not None
    assert np.array_equal(cut.history.log_returns, want.history.log_returns)


def test_a_column_named_twice_is_refused_naming_it(tmp_path: Path) -> None:
    """One copy would be read and the other silently ignored (a duplicated ``quantity``
    once gave a margin of 0 with exit status 0)."""
    from marginflow.io.book import POSITION_COLUMNS, read_table

    path = tmp_path / "positions.csv"
    path.write_text("account,instrument,quantity,quantity\nA1,SPX,5,7\n")
    with pytest.raises(ValidationError, match=r"positions\.csv:1: the column appears twice"):
        read_table(path, POSITION_COLUMNS)
