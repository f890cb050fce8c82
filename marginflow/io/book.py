"""A clearing book as a folder of files a person can open: read and write.

Files (CSV with a header line, or the same columns as Parquet ``<name>.parquet``; columns in
any order, extra columns ignored):

==================  ==========================================================================
``market.csv``      ``underlying, date, spot, atm_vol[, skew, dividend_yield, rate]`` — one row
                    per underlying; ``date`` (ISO) is the valuation date, the same on every
                    row; ``atm_vol`` annualised; ``skew`` = d vol / d ln(K/S) (default 0);
                    ``dividend_yield``, ``rate`` continuous, annualised (default 0)
``underlyings.csv`` optional: ``underlying[, kind, adv, high_cap_broad_index]`` — ``kind``
                    equity|etf|index; ``adv`` average daily volume in units of the underlying
                    (concentration add-on; blank = unlimited)
``members.csv``     optional: ``member[, name]``
``accounts.csv``    ``account, member[, type]`` — ``type`` house|client
``instruments.csv`` ``instrument, underlying, type[, strike, expiry, style, multiplier]`` —
                    ``type`` stock|call|put; options need ``strike`` > 0 and ``expiry`` (ISO
                    date, not before the valuation date); ``style`` american|european
                    (default american); ``multiplier`` default 100 for options, 1 for stock
``positions.csv``   ``account, instrument, quantity`` — contracts for options, shares for
                    stock; positive long, negative short
``history.csv``     optional: ``date`` then one column of closes per underlying (for FHS)
==================  ==========================================================================

Every row that cannot be used is returned as a :class:`RowFailure` (file, line, field,
reason, raw text) and the rest of the book is still loaded; a row that refers to a rejected
or unknown id fails too, naming it. For Parquet files the "line" is the row number + 1 (as
if there were a header line). Problems with a file as a whole (missing, no header, a
required column absent, a broken history) raise :class:`ValidationError`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import scipy.sparse as sp

from marginflow.core.book import Book, InstrumentKind, Instruments, Market, Positions, Underlyings
from marginflow.core.errors import MSG_FILE_NO_HEADER, MSG_NOT_WHOLE, RowFailure, ValidationError
from marginflow.core.fingerprint import files_fingerprint, fingerprint
from marginflow.core.history import ReturnHistory
from marginflow.io import bounds
from marginflow.io.csv_rows import (
    Column,
    FieldError,
    ParsedRows,
    one_of,
    positive,
    read_rows,
)
from marginflow.io.source import (
    MAX_INPUT_BYTES,
    check_header,
    check_row_count,
    decode_utf8,
    read_input,
    read_input_text,
    read_parquet,
)

Format = Literal["csv", "parquet"]
FILES = ("market", "underlyings", "members", "accounts", "instruments", "positions", "history")


def _text(value: str) -> str:
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise FieldError(f"is not an ISO date (YYYY-MM-DD): {text!r}") from None


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def inner(text: str) -> Any:
        return None if text == "" else parse(text)

    return inner


def _boolean(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes", "y"):
        return True
    if low in ("false", "0", "no", "n", ""):
        return False
    raise FieldError(f"must be true or false, got {text!r}")


MARKET_COLUMNS = (
    Column("underlying", _text),
    Column("date", _date),
    Column("spot", bounds.price),
    Column("atm_vol", bounds.vol),
    Column("skew", bounds.skew, required=False, default="0"),
    Column("dividend_yield", bounds.rate, required=False, default="0"),
    Column("rate", bounds.rate, required=False, default="0"),
)
UNDERLYING_COLUMNS = (
    Column("underlying", _text),
    Column("kind", one_of("equity", "etf", "index"), required=False, default="equity"),
    Column("adv", _optional(positive), required=False),
    Column("high_cap_broad_index", _boolean, required=False, default="false"),
)
MEMBER_COLUMNS = (Column("member", _text), Column("name", _text, required=False))
ACCOUNT_COLUMNS = (
    Column("account", _text),
    Column("member", _text),
    Column("type", one_of("house", "client"), required=False, default="house"),
)
INSTRUMENT_COLUMNS = (
    Column("instrument", _text),
    Column("underlying", _text),
    Column("type", one_of("stock", "call", "put")),
    Column("strike", _optional(bounds.price), required=False),
    Column("expiry", _optional(_date), required=False),
    Column("style", one_of("american", "european"), required=False, default="american"),
    Column("multiplier", _optional(bounds.multiplier), required=False),
)
POSITION_COLUMNS = (
    Column("account", _text),
    Column("instrument", _text),
    Column("quantity", bounds.quantity),
)


@dataclass(slots=True)
class LoadedBook:
    """A book (with its price history when the folder has one) and what was rejected on the
    way."""

    book: Book
    failures: list[RowFailure] = field(default_factory=list)


def find_file(folder: Path, name: str) -> Path | None:
    for ext in ("csv", "parquet"):
        path = folder / f"{name}.{ext}"
        if path.exists():
            return path
    return None


REFERENCE_FILES = tuple(name for name in FILES if name != "positions")
"""The files of a book folder a risk calculator reads: reference data, market and history
(positions reach it on the log)."""


def reference_files(folder: Path) -> dict[str, bytes]:
    """The reference files of a book folder as they are on disk (file name -> bytes)."""
    out = {}
    for name in REFERENCE_FILES:
        path = find_file(folder, name)
        if path is not None:
            out[path.name] = read_input(path)
    return out


def load_id(files: Mapping[str, bytes], settings: Mapping[str, Any]) -> tuple[str, str]:
    """The fingerprints ``(load, book)`` of a start-of-day load: ``book`` of the reference
    files, ``load`` of those files and the margin settings (JSON form) together."""
    book = files_fingerprint(files)
    return fingerprint({"book": book, "settings": dict(settings)}), book


def restricted_files(files: Mapping[str, bytes], underlyings: Iterable[str]) -> dict[str, bytes]:
    """Reference files (see :func:`reference_files`) cut to ``underlyings``: the market,
    underlyings and instruments rows on them and the history's ``date`` and their columns;
    members and accounts whole. Values keep their text (CSV) or their type (Parquet), so the
    book read from the result is the whole book's :meth:`Book.restricted` to the bit, read
    in a fraction of the time."""
    keep = set(underlyings)
    out = {}
    for name, content in files.items():
        stem, parquet = Path(name).stem, name.endswith(".parquet")
        if stem in ("market", "underlyings", "instruments"):
            out[name] = _rows_on(content, keep, parquet)
        elif stem == "history":
            out[name] = _columns_of(content, keep, parquet)
        else:
            out[name] = content
    return out


def _rows_on(content: bytes, keep: set[str], parquet: bool) -> bytes:
    if parquet:
        table = pq.read_table(pa.BufferReader(content))
        mask = pa.compute.is_in(table["underlying"], value_set=pa.array(sorted(keep)))
        sink = pa.BufferOutputStream()
        pq.write_table(table.filter(mask), sink)
        return bytes(sink.getvalue().to_pybytes())
    lines = io.StringIO(content.decode("utf-8-sig"), newline="")
    reader = csv.reader(lines)
    header = next(reader, [])
    col = [h.strip() for h in header].index("underlying") if "underlying" in header else -1
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in reader:
        # a row too short to name an underlying is kept: the reader names its fault
        if col < 0 or len(row) <= col or row[col].strip() in keep:
            writer.writerow(row)
    return text.getvalue().encode()


def _columns_of(content: bytes, keep: set[str], parquet: bool) -> bytes:
    if parquet:
        table = pq.read_table(pa.BufferReader(content))
        table = table.select([n for n in table.column_names if n == "date" or n in keep])
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return bytes(sink.getvalue().to_pybytes())
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))
    if not rows:
        return content
    cols = [k for k, h in enumerate(rows[0]) if h == "date" or h in keep]
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    for row in rows:
        writer.writerow([row[k] if k < len(row) else "" for k in cols])
    return text.getvalue().encode()


def instrument_underlyings(files: Mapping[str, bytes]) -> dict[str, str]:
    """Each instrument's underlying, read from the stored instruments file's two columns
    (no other parsing: a lookup before the book is read)."""
    for name, content in files.items():
        if Path(name).stem != "instruments":
            continue
        if name.endswith(".parquet"):
            table = pq.read_table(pa.BufferReader(content), columns=["instrument", "underlying"])
        else:
            opts = pacsv.ConvertOptions(
                include_columns=["instrument", "underlying"],
                column_types={"instrument": pa.string(), "underlying": pa.string()},
            )
            table = pacsv.read_csv(pa.BufferReader(content), convert_options=opts)
        ids, unds = table["instrument"].to_pylist(), table["underlying"].to_pylist()
        return {str(i).strip(): str(u).strip() for i, u in zip(ids, unds, strict=True)}
    return {}


def load_reference(files: Mapping[str, bytes], folder: Path) -> LoadedBook:
    """The book of stored reference files (see :func:`reference_files`), with no positions:
    the files are written to ``folder`` (a scratch directory) and read as a book folder is,
    so the book is the one the calculators read, to the bit."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if Path(name).name != name or Path(name).stem not in REFERENCE_FILES:
            raise ValidationError("file", f"{name!r} is not a book reference file")
        (folder / name).write_bytes(content)
    (folder / "positions.csv").write_text("account,instrument,quantity\n", encoding="utf-8")
    return load_book(folder)


def read_table(
    path: Path, columns: Sequence[Column], *, max_bytes: int = MAX_INPUT_BYTES
) -> ParsedRows:
    """Rows of a CSV or Parquet file, parsed column by column (see module docstring)."""
    if path.suffix != ".parquet":
        text = read_input_text(path, max_bytes=max_bytes)
        return read_rows(io.StringIO(text, newline=""), source=str(path), columns=columns)
    table = read_parquet(path, max_bytes=max_bytes)
    buf = io.BytesIO()
    try:
        pacsv.write_csv(table.cast(pa.schema([(n, pa.string()) for n in table.column_names])), buf)
    except pa.ArrowException as exc:
        raise ValidationError("file", f"{path}: cannot be read: {exc}") from None
    # pyarrow quotes every string field; the row reader unquotes them.
    text = decode_utf8(buf.getvalue(), source=str(path))
    return read_rows(io.StringIO(text, newline=""), source=str(path), columns=columns)


def load_book(
    folder: Path,
    *,
    positions_file: Path | None = None,
    market_file: Path | None = None,
    history_file: Path | None = None,
) -> LoadedBook:
    """Load a book folder; ``*_file`` arguments replace the folder's file of that name."""
    failures: list[RowFailure] = []

    def table(name: str, columns: Sequence[Column], override: Path | None = None) -> _Table:
        path = override or find_file(folder, name)
        if path is None:
            raise ValidationError("file", f"{folder}/{name}.csv (or .parquet) is missing")
        rows = read_table(path, columns)
        failures.extend(rows.failures)
        return _Table(str(path), rows, failures)

    und_ids, market = _market(table("market", MARKET_COLUMNS, market_file))
    und_index = {u: i for i, u in enumerate(und_ids)}
    und = _underlyings(folder, und_ids, failures)
    members_path = find_file(folder, "members")
    members = _members(table("members", MEMBER_COLUMNS)) if members_path else None
    accounts, owner, types, member_ids = _accounts(
        table("accounts", ACCOUNT_COLUMNS), None if members is None else list(members)
    )
    instruments = _instruments(
        table("instruments", INSTRUMENT_COLUMNS), und_index, market.valuation_date
    )
    matrix = _positions(table("positions", POSITION_COLUMNS, positions_file), accounts, instruments)
    positions = Positions(
        accounts=tuple(accounts),
        members=tuple(member_ids),
        account_member=np.asarray(owner, dtype=np.int32),
        matrix=matrix,
        account_type=tuple(types),
        member_names=tuple(members[m] if members else "" for m in member_ids),
    )
    hist_path = history_file or find_file(folder, "history")
    history = read_history(hist_path) if hist_path is not None else None
    if history is not None:
        history = history.until(np.datetime64(market.valuation_date, "D"))
    book = Book(
        underlyings=und,
        instruments=instruments,
        market=market,
        positions=positions,
        history=history,
    )
    return LoadedBook(book, sorted(failures, key=_order))


def _order(f: RowFailure) -> tuple[int, str, int]:
    name = Path(f.source).stem
    return (FILES.index(name) if name in FILES else 99, f.source, f.line)


@dataclass(slots=True)
class _Table:
    """Parsed rows of one file and the shared failure list cross-checks append to."""

    source: str
    rows: ParsedRows
    failures: list[RowFailure]

    def __len__(self) -> int:
        return len(self.rows)

    def value(self, name: str, i: int) -> Any:
        return self.rows.values[name][i]

    def fail(self, i: int, field_name: str, reason: str) -> None:
        raw = ",".join(self.rows.raw[i].values())
        self.failures.append(RowFailure(self.source, self.rows.lines[i], field_name, reason, raw))

    def duplicate(self, seen: dict[str, int], key: str, i: int, field_name: str, what: str) -> bool:
        """Record a failure and return True if ``key`` was already seen on an earlier line."""
        line = self.rows.lines[i]
        first = seen.setdefault(key, line)
        if first != line:
            self.fail(i, field_name, f"duplicate {what} {key!r} (first on line {first})")
            return True
        return False


def _market(t: _Table) -> tuple[list[str], Market]:
    seen: dict[str, int] = {}
    keep: list[int] = []
    valuation: dt.date | None = None
    for i in range(len(t)):
        if t.duplicate(seen, t.value("underlying", i), i, "underlying", "underlying"):
            continue
        d = t.value("date", i)
        if valuation is None:
            valuation = d
        elif d != valuation:
            t.fail(i, "date", f"{d} differs from the valuation date {valuation} of the first row")
            continue
        keep.append(i)
    if valuation is None:
        why = next((f" (line {f.line}: {f.field}: {f.reason})" for f in t.failures
                    if f.source == t.source), "")  # fmt: skip
        raise ValidationError("market", f"{t.source} has no valid row{why}")

    def col(name: str) -> np.ndarray:
        return np.array([t.value(name, i) for i in keep], dtype=np.float64)

    market = Market(
        valuation_date=valuation,
        spot=col("spot"),
        atm_vol=col("atm_vol"),
        skew=col("skew"),
        dividend_yield=col("dividend_yield"),
        rate=col("rate"),
    )
    return [t.value("underlying", i) for i in keep], market


def _underlyings(folder: Path, ids: list[str], failures: list[RowFailure]) -> Underlyings:
    kind = ["equity"] * len(ids)
    adv = np.full(len(ids), np.inf)
    high = np.zeros(len(ids), dtype=bool)
    path = find_file(folder, "underlyings")
    if path is not None:
        rows = read_table(path, UNDERLYING_COLUMNS)
        failures.extend(rows.failures)
        t = _Table(str(path), rows, failures)
        index = {u: i for i, u in enumerate(ids)}
        seen: dict[str, int] = {}
        for i in range(len(t)):
            u = t.value("underlying", i)
            if t.duplicate(seen, u, i, "underlying", "underlying"):
                continue
            k = index.get(u)
            if k is None:
                t.fail(i, "underlying", f"{u!r} has no market data row")
                continue
            kind[k] = t.value("kind", i)
            a = t.value("adv", i)
            adv[k] = np.inf if a is None else a
            high[k] = t.value("high_cap_broad_index", i)
    return Underlyings(tuple(ids), tuple(kind), adv, high)


def _members(t: _Table) -> dict[str, str]:
    """Member id -> name, in file order."""
    seen: dict[str, int] = {}
    return {
        t.value("member", i): t.value("name", i) or ""
        for i in range(len(t))
        if not t.duplicate(seen, t.value("member", i), i, "member", "member")
    }


def _accounts(
    t: _Table, members: list[str] | None
) -> tuple[list[str], list[int], list[str], list[str]]:
    """Accounts, their member index, type, and the member list (from the accounts file when
    there is no members file)."""
    seen: dict[str, int] = {}
    known = {m: i for i, m in enumerate(members or [])}
    member_ids = list(members or [])
    accounts: list[str] = []
    owner: list[int] = []
    types: list[str] = []
    for i in range(len(t)):
        a, m = t.value("account", i), t.value("member", i)
        if t.duplicate(seen, a, i, "account", "account"):
            continue
        if m not in known:
            if members is not None:
                t.fail(i, "member", f"unknown member {m!r} (not in the members file)")
                continue
            known[m] = len(member_ids)
            member_ids.append(m)
        accounts.append(a)
        owner.append(known[m])
        types.append(t.value("type", i))
    return accounts, owner, types, member_ids


def _instruments(t: _Table, und_index: dict[str, int], valuation: dt.date) -> Instruments:
    seen: dict[str, int] = {}
    ids: list[str] = []
    und: list[int] = []
    kind: list[int] = []
    strike: list[float] = []
    expiry: list[dt.date | None] = []
    american: list[bool] = []
    mult: list[float] = []
    for i in range(len(t)):
        name, u, typ = t.value("instrument", i), t.value("underlying", i), t.value("type", i)
        if t.duplicate(seen, name, i, "instrument", "instrument"):
            continue
        if u not in und_index:
            t.fail(i, "underlying", f"{u!r} has no market data row")
            continue
        k, e = t.value("strike", i), t.value("expiry", i)
        if typ != "stock":
            if k is None:
                t.fail(i, "strike", "is missing (an option needs a strike)")
                continue
            if e is None:
                t.fail(i, "expiry", "is missing (an option needs an expiry date)")
                continue
            if e < valuation:
                t.fail(i, "expiry", f"{e} is before the valuation date {valuation} (expired)")
                continue
        m = t.value("multiplier", i)
        ids.append(name)
        und.append(und_index[u])
        kind.append({"stock": 0, "call": 1, "put": 2}[typ])
        strike.append(0.0 if typ == "stock" else float(k))
        expiry.append(None if typ == "stock" else e)
        american.append(typ != "stock" and t.value("style", i) == "american")
        mult.append(float(m) if m is not None else (1.0 if typ == "stock" else 100.0))
    return Instruments(
        ids=tuple(ids),
        underlying=np.asarray(und, dtype=np.int32),
        kind=np.asarray(kind, dtype=np.int8),
        strike=np.asarray(strike, dtype=np.float64),
        expiry=np.array(
            [np.datetime64("NaT") if e is None else np.datetime64(e, "D") for e in expiry],
            dtype="datetime64[D]",
        ),
        is_american=np.asarray(american, dtype=bool),
        multiplier=np.asarray(mult, dtype=np.float64),
        valuation_date=valuation,
    )


def _positions(t: _Table, accounts: list[str], instruments: Instruments) -> sp.csr_matrix:
    acc = {a: i for i, a in enumerate(accounts)}
    ins = instruments.index()
    seen: dict[str, int] = {}
    r: list[int] = []
    c: list[int] = []
    q: list[float] = []
    for i in range(len(t)):
        name_a, name_j = t.value("account", i), t.value("instrument", i)
        a, j = acc.get(name_a), ins.get(name_j)
        if a is None:
            t.fail(i, "account", f"unknown or rejected account {name_a!r}")
            continue
        if j is None:
            t.fail(i, "instrument", f"unknown or rejected instrument {name_j!r}")
            continue
        if t.duplicate(seen, f"{name_a} / {name_j}", i, "instrument", "position"):
            continue
        quantity = t.value("quantity", i)
        if instruments.kind[j] != InstrumentKind.STOCK and not float(quantity).is_integer():
            t.fail(i, "quantity", MSG_NOT_WHOLE.format(unit="contracts", value=quantity))
            continue
        if quantity != 0.0:
            r.append(a)
            c.append(j)
            q.append(quantity)
    matrix = sp.csr_matrix(
        (np.asarray(q, dtype=np.float64), (np.asarray(r, np.int64), np.asarray(c, np.int64))),
        shape=(len(accounts), len(instruments)),
    )
    matrix.sort_indices()
    return matrix


def read_history(path: Path) -> ReturnHistory:
    """Closes (wide: ``date`` then one column per underlying) as daily log returns.

    The file is one table of numbers, so any fault refuses it whole, naming the line: a
    date that does not read or does not follow the one before, a close outside
    [:data:`~marginflow.io.bounds.PRICE_MIN`, :data:`~marginflow.io.bounds.PRICE_MAX`].
    """
    table = read_parquet(path) if path.suffix == ".parquet" else _history_csv(path)
    if "date" not in table.column_names:
        raise ValidationError("date", f"column is missing from the header of {path}")
    names = tuple(n for n in table.column_names if n != "date")
    dates = _history_dates(path, table["date"].to_pylist())
    try:
        cols = [table[n].cast(pa.float64()).to_numpy(zero_copy_only=False) for n in names]
    except pa.ArrowException as exc:
        reason = f"a close is not a number: {_first_line(exc)}"
        raise ValidationError("history", f"{path}: {reason}") from None
    closes = np.column_stack(cols) if cols else np.zeros((len(dates), 0))
    bad = ~(np.isfinite(closes) & (closes >= bounds.PRICE_MIN) & (closes <= bounds.PRICE_MAX))
    if bad.any():
        t, u = np.argwhere(bad)[0]
        raise ValidationError(
            names[u],
            f"{path}:{t + 2}: close on {dates[t]} must be a number within "
            f"[{bounds.PRICE_MIN:g}, {bounds.PRICE_MAX:g}], got {closes[t, u]!r}",
        )
    try:
        return ReturnHistory.from_closes(dates, names, closes, source=str(path))
    except ValidationError as exc:  # the checks that know the source name it already
        reason = exc.reason if str(path) in exc.reason else f"{path}: {exc.reason}"
        raise ValidationError(exc.field, reason) from None


def _history_csv(path: Path) -> pa.Table:
    """A history CSV read by pyarrow (fast for wide files) after the checks every input
    passes: the text is UTF-8 and the header names each column once."""
    data = read_input(path)
    text = decode_utf8(data, source=str(path))
    # the first record, which a quoted cell may carry past the first line break
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:  # an unclosed quote running past the field size limit
        raise ValidationError("header", f"{path} cannot be read as CSV: {exc}") from None
    if not header:
        raise ValidationError("header", f"{path} {MSG_FILE_NO_HEADER}")
    check_header([h.strip() for h in header], source=str(path))
    types = {h: (pa.string() if h == "date" else pa.float64()) for h in header}
    try:
        table = pacsv.read_csv(
            pa.BufferReader(text.encode()),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except pa.ArrowException as exc:
        raise ValidationError("history", f"{path}: cannot be read: {_first_line(exc)}") from None
    check_row_count(table.num_rows, source=str(path))
    return table


def _history_dates(path: Path, values: list[Any]) -> np.ndarray:
    """The ``date`` column as days (their order is checked by the history itself)."""
    days: list[dt.date] = []
    for row, value in enumerate(values, start=2):
        try:
            day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        except ValueError:
            raise ValidationError(
                "date", f"{path}:{row}: is not an ISO date (YYYY-MM-DD): {str(value)!r}"
            ) from None
        days.append(day)
    return np.array(days, dtype="datetime64[D]")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_book(
    folder: Path,
    book: Book,
    *,
    fmt: Format = "csv",
) -> list[Path]:
    """Write ``book`` into ``folder``; its history as closes ending at the market's spots."""
    folder.mkdir(parents=True, exist_ok=True)
    u, ins, mk, pos = book.underlyings, book.instruments, book.market, book.positions
    valuation = mk.valuation_date
    tables: dict[str, dict[str, Any]] = {
        "market": {
            "underlying": list(u.ids),
            "date": [valuation.isoformat()] * len(u),
            "spot": mk.spot,
            "atm_vol": mk.atm_vol,
            "skew": mk.skew,
            "dividend_yield": mk.dividend_yield,
            "rate": mk.rate,
        },
        "underlyings": {
            "underlying": list(u.ids),
            "kind": list(u.kind),
            "adv": [None if not np.isfinite(x) else float(x) for x in u.adv],
            "high_cap_broad_index": [bool(x) for x in u.high_cap_broad_index],
        },
        "members": {"member": list(pos.members), "name": list(pos.member_names)},
        "accounts": {
            "account": list(pos.accounts),
            "member": [pos.members[m] for m in pos.account_member],
            "type": list(pos.account_type),
        },
        "instruments": _instrument_columns(ins, u.ids),
    }
    coo = pos.matrix.tocoo()
    order = np.lexsort((coo.col, coo.row))
    tables["positions"] = {
        "account": [pos.accounts[a] for a in coo.row[order]],
        "instrument": [ins.ids[j] for j in coo.col[order]],
        "quantity": coo.data[order],
    }
    written = [_write(folder / f"{name}.{fmt}", cols, fmt) for name, cols in tables.items()]
    if book.history is not None:
        index = u.index()
        history = book.history.select([x for x in book.history.underlyings if x in index])
        closes = history.closes(mk.spot[[index[x] for x in history.underlyings]])
        anchor = np.busday_offset(history.dates[0], -1, roll="backward")
        dates = np.concatenate([[anchor], history.dates]).astype("datetime64[D]")
        cols: dict[str, Any] = {"date": [str(d) for d in dates]}
        cols.update({name: closes[:, k] for k, name in enumerate(history.underlyings)})
        written.append(_write(folder / f"history.{fmt}", cols, fmt))
    return written


def _instrument_columns(ins: Instruments, und_ids: tuple[str, ...]) -> dict[str, Any]:
    opt = ins.kind != InstrumentKind.STOCK
    return {
        "instrument": list(ins.ids),
        "underlying": [und_ids[k] for k in ins.underlying],
        "type": [("stock", "call", "put")[k] for k in ins.kind],
        "strike": [float(k) if o else None for k, o in zip(ins.strike, opt, strict=True)],
        "expiry": [str(d) if o else None for d, o in zip(ins.expiry, opt, strict=True)],
        "style": [
            ("american" if a else "european") if o else None
            for a, o in zip(ins.is_american, opt, strict=True)
        ],
        "multiplier": ins.multiplier,
    }


def _write(path: Path, columns: dict[str, Any], fmt: Format) -> Path:
    names = list(columns)
    values = [v if isinstance(v, list) else np.asarray(v).tolist() for v in columns.values()]
    if fmt == "parquet":
        pq.write_table(pa.table(dict(zip(names, values, strict=True))), path)
        return path
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_cell(x) for x in row] for row in zip(*values, strict=True))
    return path


def _cell(x: Any) -> Any:
    """CSV text of a value: blank for None, true/false, whole floats without '.0'."""
    if x is None:
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return int(x)
    return x
