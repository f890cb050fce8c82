"""Write the hostile-input corpus: ``python -m tests.hostile.make_corpus`` (from the root).

Each folder of ``corpus/`` is one input path of the platform and holds the hostile files
for it and a ``manifest.toml`` that says how ``test_corpus.py`` runs each file through the
CLI (see that module for the keys). The inputs of ``marginflow stress`` (``stress-*``) add
the cases of :mod:`tests.hostile.stress_cases`, and their manifests say which files are
good inputs and which line each refusal names. The files are committed, so a change to a
generator is a visible diff; rerun this script after changing it. ``corpus/crif`` belongs to
the SIMM inputs and is written elsewhere: this script leaves folders it does not make alone.

Every file is small (the largest, a header of 100,000 columns, is ~700 KB and in three
folders only) and the corpus is deterministic: the same script writes the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.hostile import stress_cases
from tests.hostile.stress_cases import Case

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
BASE = HERE / "base"  # the small valid book every margin case runs against

# -- the valid base book -------------------------------------------------------------------

BASE_FILES = {
    "market.csv": "underlying,date,spot,atm_vol,skew,dividend_yield,rate\n"
    "SPX,2019-01-02,2500,0.2,-0.5,0.02,0.025\nNDX,2019-01-02,6600,0.25,-0.4,0.01,0.025\n",
    "underlyings.csv": "underlying,kind,adv,high_cap_broad_index\nSPX,index,5000000,true\n"
    "NDX,index,2000000,false\n",
    "members.csv": "member,name\nM1,First\nM2,Second\n",
    "accounts.csv": "account,member,type\nA1,M1,house\nA2,M2,client\n",
    "instruments.csv": "instrument,underlying,type,strike,expiry,style,multiplier\n"
    "SPXP,SPX,put,2400,2019-06-21,european,100\nSPXC,SPX,call,2600,2019-03-15,american,100\n"
    "NDXP,NDX,put,6400,2019-06-21,european,100\nSPXS,SPX,stock,,,,1\n",
    "positions.csv": "account,instrument,quantity\nA1,SPXP,-10\nA1,SPXS,100\nA2,NDXP,5\n"
    "A2,SPXC,-3\n",
}
SHOCKS = "scenario,underlying,spot_shock,vol_shock\ndown,*,-0.1,0.3\nup,*,0.1,-0.1\n"


def history_text(days: int = 100) -> str:
    """Closes on the ``days`` business days up to the valuation date (a stale history is
    refused, so a good one must end there)."""
    dates = [dt.date(2019, 1, 2)]
    while len(dates) < days:
        day = dates[-1] - dt.timedelta(days=1)
        while day.weekday() >= 5:
            day -= dt.timedelta(days=1)
        dates.append(day)
    rows = ["date,SPX,NDX"]
    for k, day in enumerate(reversed(dates)):
        rows.append(f"{day},{2500 * math.exp(0.01 * math.sin(k)):.4f},{6600 + 10 * (k % 7)}")
    return "\n".join(rows) + "\n"


# -- the input paths: a header, good rows, and the columns to attack ------------------------


class InputPath:
    """One input path: its good table, which columns hold numbers, dates and ids."""

    def __init__(
        self,
        name: str,
        text: str,
        *,
        numbers: tuple[str, ...] = (),
        dates: tuple[str, ...] = (),
        ids: tuple[str, ...] = (),
        manifest: str,
        parquet: bool = True,
        cases: Callable[[], Iterator[Case]] | None = None,
        ok: frozenset[str] = frozenset(),
    ) -> None:
        rows = list(csv.reader(io.StringIO(text)))
        self.name, self.header, self.rows = name, rows[0], rows[1:]
        self.numbers, self.dates, self.ids = numbers, dates, ids
        self.manifest, self.parquet = manifest, parquet
        # cases of its own beyond the generic ones, and which generic files are good inputs
        self.cases, self.ok = cases, ok


def margin_manifest(option: str, *, extra: str = '"--scenarios", "{base}/shocks.csv", ') -> str:
    return (
        "# margin of the base book with this file in place of one of its files\n"
        f'command = ["margin", "{{base}}/book", "{option}", "{{file}}", {extra}'
        '"--rejects", "{rejects}", "--json"]\n'
    )


def book_manifest(place: str) -> str:
    return (
        "# margin of a copy of the base book whose "
        f"{place} file is this file\n"
        f'place = "{place}"\n'
        'command = ["margin", "{book}", "--scenarios", "{base}/shocks.csv", '
        '"--rejects", "{rejects}", "--json"]\n'
    )


def stress_manifest(what: str, option: str, *, extra: str = "") -> str:
    return (
        f"# marginflow stress of the base book with this file as {what}\n"
        'command = ["stress", "--book", "{base}/book", "--margin-scenarios", '
        f'"{{base}}/shocks.csv", {extra}"{option}", "{{file}}", "--rejects", "{{rejects}}"]\n'
        "located = true\n"
    )


PATHS = [
    InputPath(
        "options",
        "kind,style,spot,strike,expiry_years,rate,dividend_yield,vol\n"
        "call,european,100,95,0.5,0.05,0.01,0.2\nput,american,100,105,1,0.03,0,0.3\n",
        numbers=("spot", "strike", "expiry_years", "rate", "dividend_yield", "vol"),
        manifest='# marginflow price\ncommand = ["price", "{file}", "--rejects", "{rejects}"]\n'
        'rows_out = "csv-stdout"\n',
        parquet=False,
    ),
    InputPath(
        "positions",
        BASE_FILES["positions.csv"],
        numbers=("quantity",),
        ids=("account", "instrument"),
        manifest=margin_manifest("--positions"),
    ),
    InputPath(
        "market",
        BASE_FILES["market.csv"],
        numbers=("spot", "atm_vol", "skew", "dividend_yield", "rate"),
        dates=("date",),
        ids=("underlying",),
        manifest=margin_manifest("--market"),
    ),
    InputPath(
        "instruments",
        BASE_FILES["instruments.csv"],
        numbers=("strike", "multiplier"),
        dates=("expiry",),
        ids=("underlying", "instrument"),
        manifest=book_manifest("instruments"),
    ),
    InputPath(
        "accounts",
        BASE_FILES["accounts.csv"],
        ids=("member", "account"),
        manifest=book_manifest("accounts"),
    ),
    InputPath(
        "members", BASE_FILES["members.csv"], ids=("member",), manifest=book_manifest("members")
    ),
    InputPath(
        "underlyings",
        BASE_FILES["underlyings.csv"],
        numbers=("adv",),
        ids=("underlying",),
        manifest=book_manifest("underlyings"),
    ),
    InputPath(
        "history",
        history_text(),
        numbers=("SPX", "NDX"),
        dates=("date",),
        manifest=margin_manifest(
            "--history", extra='"--lookback", "20", "--stress", "none", "--mpor", "1", '
        ),
    ),
    InputPath(
        "scenarios",
        SHOCKS + "crash,SPX,-0.3,0.8\ncrash,*,-0.2,0.5\n",
        numbers=("spot_shock", "vol_shock"),
        ids=("underlying", "scenario"),
        manifest=margin_manifest("--scenarios", extra=""),
        parquet=False,
    ),
    InputPath(
        "trades",
        "time,account,instrument,quantity,price,trade_id\n"
        "2019-01-02T09:30:00Z,A1,SPXP,5,12.5,t1\n1546421400000000000,A2,NDXP,-2,30,t2\n",
        numbers=("quantity", "price"),
        dates=("time",),
        ids=("account", "instrument"),
        manifest="# marginflow publish trades, to an embedded log of its own\n"
        'command = ["publish", "trades", "{file}", "--log", "embedded://{tmp}/log", '
        '"--rejects", "{rejects}", "--json"]\nrows_out = "json:trades"\n',
    ),
    InputPath(
        "market-events",
        "time,underlying,spot,atm_vol,skew\n2019-01-02T09:30:00Z,SPX,2501,0.21,-0.5\n"
        "2019-01-02T09:31:00Z,NDX,6601,,\n",
        numbers=("spot", "atm_vol", "skew"),
        dates=("time",),
        ids=("underlying",),
        manifest="# marginflow publish market, to an embedded log of its own\n"
        'command = ["publish", "market", "{file}", "--log", "embedded://{tmp}/log", '
        '"--rejects", "{rejects}", "--json"]\n',
    ),
    InputPath(
        "reference",
        BASE_FILES["instruments.csv"],
        numbers=("strike", "multiplier"),
        dates=("expiry",),
        ids=("underlying", "instrument"),
        manifest="# marginflow publish reference: a listing of new series\n"
        'place = "instruments"\n'
        'command = ["publish", "reference", "{file}", "--log", "embedded://{tmp}/log", '
        '"--rejects", "{rejects}", "--json"]\nrows_out = "json:instrument events"\n',
    ),
    InputPath(
        "stress-fund",
        stress_cases.FUND,
        numbers=("contribution",),
        ids=("member",),
        manifest=stress_manifest(
            "its default-fund contributions",
            "--default-fund",
            extra='"--set", "{base}/shocks.csv", "--json", ',
        ),
        parquet=False,
        cases=stress_cases.fund_cases,
        ok=stress_cases.FUND_GENERIC_OK,
    ),
    InputPath(
        "stress-set-csv",
        stress_cases.SET_CSV,
        numbers=("spot_shock", "vol_shock"),
        ids=("underlying", "scenario"),
        manifest=stress_manifest("a stress set (scenario CSV)", "--set", extra='"--no-reverse", '),
        parquet=False,
        cases=stress_cases.set_csv_cases,
        ok=stress_cases.SET_CSV_GENERIC_OK,
    ),
]

# folders of cases only (no table to attack): name, manifest, cases
CASE_FOLDERS: list[tuple[str, str, Callable[[], Iterator[Case]]]] = [
    (
        "stress-set-toml",
        stress_manifest("a stress set (TOML)", "--set", extra='"--no-reverse", '),
        stress_cases.toml_cases,
    ),
]

# -- hostile content -----------------------------------------------------------------------

NUMBERS = [
    "1e308", "-1e308", "5e-324", "nan", "-inf", "-1", "0", "0.5", "1e10", "0x10", "1,5",
    "\u0661\u0662",
]  # fmt: skip
WIDE = ("options", "positions", "history")  # a header of 100,000 columns: ~700 KB each
DATES = ["2019-02-30", "0001-01-01", "9999-12-31", "2019-1-2", "20190102", "1e308", "yesterday"]
TEXTS = {
    "markup": "[/x]",
    "rich": "[bold red]x[/]",
    "emoji": ":100:",
    "formula": "=cmd|' /C calc'!A0",
    "esc": "\x1b[31mred\x1b[0m",
    "bidi": "\u202eevil\u202c",
    "unknown": "NO_SUCH_ID",
    "blank": "",
    "long": "x" * 5000,
}


def write_csv(rows: list[list[str]], newline: str = "\n") -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows(rows)
    return out.getvalue()


def generic(p: InputPath) -> Iterator[tuple[str, bytes]]:
    """Faults of any text table."""
    good = write_csv([p.header, *p.rows])
    head = ",".join(p.header)
    body = write_csv(p.rows)
    yield "empty.csv", b""
    yield "only-newlines.csv", b"\n\n\n"
    yield "header-only.csv", (head + "\n").encode()
    yield "header-no-newline.csv", head.encode()
    yield "no-header.csv", body.encode()
    yield "bom.csv", ("\ufeff" + good).encode()
    yield "double-bom.csv", ("\ufeff\ufeff" + good).encode()
    yield "utf16-bom.csv", good.encode("utf-16")
    yield "utf16le.csv", good.encode("utf-16-le")
    yield "latin1.csv", (good + "\u00e9t\u00e9," * len(p.header) + "\n").encode("latin-1")
    yield "nul-in-cell.csv", good.replace(p.rows[0][0], p.rows[0][0] + "\x00", 1).encode()
    yield "nul-in-header.csv", good.replace(p.header[0], "\x00" + p.header[0], 1).encode()
    yield "nul-bytes.csv", good.encode() + b"\x00" * 64 + b"\n"
    yield "crlf.csv", write_csv([p.header, *p.rows], "\r\n").encode()
    yield "cr-only.csv", write_csv([p.header, *p.rows], "\r").encode()
    yield "mixed-newlines.csv", (head + "\r\n" + body.replace("\n", "\r", 1)).encode()
    yield "long-line.csv", (good + ",".join(["9" * 140_000, *p.rows[0][1:]]) + "\n").encode()
    yield "long-quoted-field.csv", (good + '"' + "y" * 140_000 + '"\n').encode()
    if p.name in WIDE:
        yield "100k-columns.csv", (",".join(f"c{i}" for i in range(100_000)) + "\n1\n").encode()
    yield (
        "duplicate-column.csv",
        write_csv([[*p.header, p.header[-1]], *[[*r, r[-1]] for r in p.rows]]).encode(),
    )
    yield (
        "duplicate-first-column.csv",
        write_csv([[p.header[0], *p.header], *[[r[0], *r] for r in p.rows]]).encode(),
    )
    yield (
        "empty-column-name.csv",
        write_csv([[*p.header, ""], *[[*r, "x"] for r in p.rows]]).encode(),
    )
    yield (
        "spaces-column-name.csv",
        write_csv([[*p.header, "  "], *[[*r, "x"] for r in p.rows]]).encode(),
    )
    yield "missing-first-column.csv", write_csv([p.header[1:], *[r[1:] for r in p.rows]]).encode()
    yield (
        "extra-columns.csv",
        write_csv([[*p.header, "note"], *[[*r, "[/x]"] for r in p.rows]]).encode(),
    )
    yield "short-row.csv", (good + ",".join(p.rows[0][:-1]) + "\n").encode()
    yield "long-row.csv", (good + ",".join([*p.rows[0], "extra", "more"]) + "\n").encode()
    yield (
        "trailing-commas.csv",
        (head + ",,\n" + "".join(",".join(r) + ",,\n" for r in p.rows)).encode(),
    )
    yield (
        "quoted-newline.csv",
        write_csv([p.header, [p.rows[0][0] + "\nX", *p.rows[0][1:]], *p.rows[1:]]).encode(),
    )
    yield "unterminated-quote.csv", (good + '"' + ",".join(p.rows[0]) + "\n").encode()
    yield "unterminated-quote-header.csv", ('"' + head + "\n" + body).encode()
    yield (
        "stray-quote.csv",
        (good + p.rows[0][0] + 'a"b,' + ",".join(p.rows[0][1:]) + "\n").encode(),
    )
    yield "tab-separated.csv", write_csv([p.header, *p.rows]).replace(",", "\t").encode()
    yield "semicolon-separated.csv", write_csv([p.header, *p.rows]).replace(",", ";").encode()
    yield "header-twice.csv", (good + head + "\n").encode()
    yield (
        "blank-lines-between.csv",
        (head + "\n\n" + "\n\n".join(",".join(r) for r in p.rows) + "\n").encode(),
    )
    yield (
        "whitespace-cells.csv",
        write_csv([p.header, *[[f" {c} " for c in r] for r in p.rows]]).encode(),
    )
    yield "upper-case-header.csv", write_csv([[h.upper() for h in p.header], *p.rows]).encode()
    yield "binary-junk.csv", bytes(range(256)) * 4
    yield "gzip-magic.csv", b"\x1f\x8b\x08\x00" + bytes(100)
    yield "markup-everywhere.csv", write_csv([p.header, *[["[/x]"] * len(p.header)]]).encode()
    yield "esc-everywhere.csv", write_csv([p.header, ["\x1b]0;pwned\x07"] * len(p.header)]).encode()
    yield "formula-everywhere.csv", write_csv([p.header, ["=1+1"] * len(p.header)]).encode()
    yield "many-rows.csv", write_csv([p.header, *(p.rows * 100)]).encode()
    yield (
        "markup-header.csv",
        write_csv([[*p.header, "[/x]"], *[[*r, "1"] for r in p.rows]]).encode(),
    )
    yield (
        "newline-in-header.csv",
        write_csv([[p.header[0] + "\nq", *p.header[1:]], *p.rows]).encode(),
    )


def cells(p: InputPath) -> Iterator[tuple[str, bytes]]:
    """Each numeric, date and id column of the first good row replaced by a hostile value."""

    def with_cell(col: str, value: str) -> bytes:
        k = p.header.index(col)
        first = [*p.rows[0][:k], value, *p.rows[0][k + 1 :]]
        return write_csv([p.header, first, *p.rows[1:]]).encode()

    for col in p.numbers:
        for i, value in enumerate(NUMBERS):
            yield f"{col}-num{i:02d}.csv", with_cell(col, value)
    for col in p.dates:
        for i, value in enumerate(DATES):
            yield f"{col}-date{i}.csv", with_cell(col, value)
    for col in p.ids:
        for name, value in TEXTS.items():
            yield f"{col}-{name}.csv", with_cell(col, value)
    if p.ids:  # the same key twice
        yield "duplicate-row.csv", write_csv([p.header, p.rows[0], *p.rows]).encode()


def parquet(p: InputPath) -> Iterator[tuple[str, bytes]]:
    """Parquet versions: wrong types, repeated and nested columns, no rows, damage."""

    def as_bytes(table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return bytes(sink.getvalue().to_pybytes())

    cols = {h: [r[k] for r in p.rows] for k, h in enumerate(p.header)}
    good = pa.table(cols)
    yield "good.parquet", as_bytes(good)
    yield "zero-rows.parquet", as_bytes(good.slice(0, 0))
    yield "no-columns.parquet", as_bytes(pa.table({}))
    whole = as_bytes(good)
    yield "truncated.parquet", whole[: len(whole) // 2]
    yield "footer-only.parquet", whole[-64:]
    yield "magic-only.parquet", b"PAR1PAR1"
    yield "flipped-byte.parquet", whole[:40] + bytes([whole[40] ^ 0xFF]) + whole[41:]
    yield "csv-named-parquet.parquet", write_csv([p.header, *p.rows]).encode()
    names = [*p.header, p.header[-1]]
    arrays = [pa.array(v) for v in cols.values()] + [pa.array(cols[p.header[-1]])]
    yield "duplicate-column.parquet", as_bytes(pa.table(arrays, names=names))
    yield (
        "empty-column-name.parquet",
        as_bytes(good.append_column("", pa.array(["x"] * len(p.rows)))),
    )
    yield (
        "list-column.parquet",
        as_bytes(good.append_column("nested", pa.array([[1, 2]] * len(p.rows)))),
    )
    yield (
        "struct-column.parquet",
        as_bytes(good.append_column("s", pa.array([{"a": 1}] * len(p.rows)))),
    )
    yield (
        "binary-column.parquet",
        as_bytes(good.append_column("b", pa.array([b"\xff\x00"] * len(p.rows)))),
    )
    for col in p.numbers[:2]:
        k = p.header.index(col)
        typed = good.set_column(k, col, pa.array([1e308] * len(p.rows)))
        yield f"{col}-1e308-float.parquet", as_bytes(typed)
        typed = good.set_column(k, col, pa.array([math.nan] * len(p.rows)))
        yield f"{col}-nan-float.parquet", as_bytes(typed)
        typed = good.set_column(k, col, pa.array([[1.0]] * len(p.rows)))
        yield f"{col}-as-list.parquet", as_bytes(typed)
        typed = good.set_column(k, col, pa.array([True] * len(p.rows)))
        yield f"{col}-as-bool.parquet", as_bytes(typed)
    if p.dates:
        k = p.header.index(p.dates[0])
        stamp = pa.array([dt.datetime(1, 1, 1)] * len(p.rows), pa.timestamp("us"))
        yield "date-as-timestamp.parquet", as_bytes(good.set_column(k, p.dates[0], stamp))


GENERATORS: list[Callable[[InputPath], Iterator[tuple[str, bytes]]]] = [generic, cells]


def write_corpus() -> int:
    written = 0
    if BASE.exists():
        shutil.rmtree(BASE)
    (BASE / "book").mkdir(parents=True)
    for name, text in BASE_FILES.items():
        (BASE / "book" / name).write_text(text, encoding="utf-8")
    (BASE / "shocks.csv").write_text(SHOCKS, encoding="utf-8")
    for p in PATHS:
        folder = _fresh(CORPUS / p.name)
        gens = [*GENERATORS, parquet] if p.parquet else GENERATORS
        names = set()
        for gen in gens:
            for name, data in gen(p):
                (folder / name).write_bytes(data)
                names.add(name)
                written += 1
        if p.cases is None:
            (folder / "manifest.toml").write_text(p.manifest, encoding="utf-8")
            continue
        assert p.ok <= names, sorted(p.ok - names)
        written += _write_cases(folder, p.manifest, p.cases(), ok=p.ok, taken=names)
    for name, manifest, cases in CASE_FOLDERS:
        written += _write_cases(_fresh(CORPUS / name), manifest, cases())
    return written


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _write_cases(
    folder: Path,
    manifest: str,
    cases: Iterable[Case],
    *,
    ok: frozenset[str] = frozenset(),
    taken: set[str] | None = None,
) -> int:
    """Write ``cases`` into ``folder`` and its manifest: ``manifest``, then the good files
    (``ok``, with the cases' own) and the line each refusal names (``[lines]``)."""
    names = set(taken or ())
    good, lines = set(ok), {}
    for case in cases:
        assert case.name not in names, case.name
        names.add(case.name)
        (folder / case.name).write_bytes(case.data)
        if case.ok:
            good.add(case.name)
        if case.line is not None:
            lines[case.name] = case.line
    listed = "".join(f'    "{n}",\n' for n in sorted(good))
    text = manifest + f"ok = [\n{listed}]\n\n[lines]\n"
    text += "".join(f'"{n}" = {line}\n' for n, line in sorted(lines.items()))
    (folder / "manifest.toml").write_text(text, encoding="utf-8")
    return len(names) - len(taken or ())


if __name__ == "__main__":
    print(f"{write_corpus()} hostile inputs written under {CORPUS}")
