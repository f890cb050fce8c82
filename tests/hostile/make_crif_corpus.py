"""Write the hostile CRIF corpus: ``python -m tests.hostile.make_crif_corpus``.

Every file in ``tests/hostile/corpus/crif/`` is an input ``marginflow simm`` must answer with
exit status 0 or 2 and no traceback (``manifest.toml`` there gives the command line). Files
whose records are known list their count under ``[rows]``: rows in = rows out + rows rejected.
The files are committed; run this again (it is deterministic) after changing it.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parent / "corpus" / "crif"
HEADER = [
    "PortfolioID", "TradeID", "ProductClass", "RiskType", "Qualifier", "Bucket", "Label1",
    "Label2", "Amount", "AmountCurrency", "AmountUSD", "CollectRegulation", "PostRegulation",
]  # fmt: skip
GOOD = [
    ["P1", "T1", "RatesFX", "Risk_IRCurve", "USD", "1", "5y", "OIS", "", "", "1000000", "", ""],
    ["P1", "T2", "Equity", "Risk_Equity", "ACME", "1", "", "", "", "", "-250000", "", ""],
    ["P1", "T3", "RatesFX", "Risk_FX", "EUR", "", "", "", "500000", "USD", "", "", ""],
    ["P2", "T4", "Credit", "Risk_CreditQ", "ISSUER", "3", "5y", "", "", "", "20000", "", ""],
]
HOSTILE_NUMBERS = [
    "1e308", "-1e308", "1.7976931348623157e308", "1e309", "-1e309", "1e21", "nan", "NaN",
    "-nan", "inf", "-inf", "Infinity", "1e-400", "0x10", "1_000", "1,5", "1.2.3", "--1",
    "+-1", "1e", "e5", ".", "-", "١٢٣", "１２３", "1 000", " 12 ", "1e+", "9" * 400, "0" * 400,
    "\u00a01", "1\u200b", "true", "null", "None", "=1+1",
]  # fmt: skip
HOSTILE_TEXT = [
    "[/x]", "[bold red]x[/]", "[link=http://evil]x[/link]", ":100:", ":thumbs_up:",
    "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "\u202egnp.exe", "\u200b", "=cmd|'/c calc'!A1",
    "+1", "@SUM(A1)", "-1+1", "\x00", "\x7f", "\x08\x08", "Q" * 5000, "'; DROP TABLE crif;--",
    "{0}", "%s%n", "${jndi:ldap://x}", "../../etc/passwd", "\ufeff", "😀", "é", "\udcff",
]  # fmt: skip
FIELD_VALUES = {
    "RiskType": ["Risk_IRCurvy", "risk_ircurve ", "", "Param_Unknown", "Risk_Equity\x00"],
    "ProductClass": ["Rates", "", "equity", "Other", "RatesFX,Credit"],
    "Qualifier": ["", "US", "usd", "XXX", "EURXXX"],
    "Bucket": ["0", "13", "99", "-1", "1.0", "Residual", "residual", "01", "1e0", ""],
    "Label1": ["7y", "", "5Y", "0y", "5 y", "6m"],
    "Label2": ["SOFR3m", "", "ois", "Libor3m "],
    "AmountCurrency": ["XYZ", "usd", "", "EURO", "€"],
    "CollectRegulation": ["ESA,USPR", "[ESA]", "Excluded", "Unspecified", "SEC,CFTC,", "X" * 300],
}


def _csv(rows: Sequence[Sequence[str]], *, terminator: str = "\r\n") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=terminator).writerows(rows)
    return buffer.getvalue().encode("utf-8", errors="surrogatepass")


class Corpus:
    """Files written so far, and the record count of those whose count is known."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.names: list[str] = []

    def put(self, name: str, data: bytes, rows: int | None = None) -> None:
        assert name not in self.names, name
        (OUT / name).write_bytes(data)
        self.names.append(name)
        if rows is not None:
            self.rows[name] = rows

    def table(
        self, name: str, rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER
    ) -> None:
        self.put(name, _csv([header, *rows]), len(rows))

    def parquet(self, name: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.put(name, sink.getvalue().to_pybytes(), table.num_rows)


def _with(field: str, value: str, base: Sequence[str] | None = None) -> list[str]:
    row = list(base or GOOD[1])
    row[HEADER.index(field)] = value
    return row


def headers(c: Corpus) -> None:
    for i, name in enumerate(HEADER):
        c.put(f"header-twice-{i:02d}-{name}.csv", _csv([[*HEADER, name], [*GOOD[0], "1"]]))
    for i, (_, b) in enumerate(
        [("AmountUSD", "amount_usd"), ("RiskType", "risk type"), ("AmountCurrency", "Currency"),
         ("PostRegulation", "post_regulations"), ("TradeID", "TRADEID"), ("Bucket", " bucket")]
    ):  # fmt: skip
        c.put(f"header-alias-twice-{i}.csv", _csv([[*HEADER, b], [*GOOD[0], "1"]]))
    c.put("header-empty-name.csv", _csv([[*HEADER, ""], [*GOOD[0], ""]]))
    c.put("header-no-risktype.csv", _csv([[h for h in HEADER if h != "RiskType"], GOOD[0][:-1]]))
    c.put("header-no-amount.csv", _csv([HEADER[:8], GOOD[0][:8]]))
    c.table("header-only-crif-names-lowercase.csv", GOOD, [h.lower() for h in HEADER])
    c.put("header-only.csv", _csv([HEADER]), 0)
    c.put("header-bom.csv", b"\xef\xbb\xbf" + _csv([HEADER, *GOOD]), len(GOOD))
    c.put("header-after-blank-lines.csv", b"\n\r\n\n" + _csv([HEADER, *GOOD]), len(GOOD))
    c.put("header-unterminated-quote.csv", b'"PortfolioID,RiskType\nP1,Risk_FX\n')
    wide = [*HEADER, *(f"x{i}" for i in range(100_000))]
    c.put("header-100k-columns.csv", _csv([wide, [*GOOD[0], *([""] * 100_000)], GOOD[1]]), 2)
    for i, text in enumerate(HOSTILE_TEXT[:12]):
        c.table(f"header-hostile-name-{i:02d}.csv", GOOD, [*HEADER, text])


def whole_files(c: Corpus) -> None:
    c.put("empty.csv", b"")
    c.put("blank-lines-only.csv", b"\n\n\r\n  \n")
    c.put("bom-only.csv", b"\xef\xbb\xbf")
    c.put("nul-bytes.csv", b"\x00" * 4096)
    c.put("no-header-line.csv", _csv(GOOD))  # the exit-134 case
    c.put("utf16.csv", "\n".join(",".join(r) for r in [HEADER, *GOOD]).encode("utf-16"))
    c.put(
        "latin1-rows.csv",
        _csv([HEADER, *GOOD]) + "P1,T9,Equity,Risk_Equity,Café,1,,,,,5,,\r\n".encode("latin-1"),
        5,
    )
    rng = random.Random(11)
    for i in range(12):
        c.put(
            f"random-bytes-{i:02d}.csv",
            bytes(rng.randrange(256) for _ in range(rng.choice([1, 64, 4096]))),
        )
    for i in range(6):
        noise = bytes(rng.randrange(256) for _ in range(512))
        c.put(f"header-then-random-bytes-{i}.csv", _csv([HEADER]) + noise)
    c.put("only-separators.csv", b",,,,\n,,,,\n")
    c.put("spreadsheet-export.csv", _csv([HEADER, *GOOD], terminator="\r"))  # old Mac
    c.put("tab-separated.csv", "\n".join("\t".join(r) for r in [HEADER, *GOOD]).encode())
    c.put("semicolon-separated.csv", "\n".join(";".join(r) for r in [HEADER, *GOOD]).encode())


def amounts(c: Corpus) -> None:
    for i, value in enumerate(HOSTILE_NUMBERS):
        for field in ("Amount", "AmountUSD"):
            row = _with(field, value)
            if field == "Amount":
                row[HEADER.index("AmountCurrency")] = "USD"
                row[HEADER.index("AmountUSD")] = ""
            c.table(f"amount-{field}-{i:02d}.csv", [*GOOD, row])


def fields(c: Corpus) -> None:
    for field, values in FIELD_VALUES.items():
        for i, value in enumerate(values):
            base = GOOD[0] if field in ("Label1", "Label2") else GOOD[1]
            c.table(f"field-{field}-{i:02d}.csv", [*GOOD, _with(field, value, base)])
    for i, text in enumerate(HOSTILE_TEXT):
        for field in ("PortfolioID", "TradeID", "Qualifier"):
            c.table(f"text-{field}-{i:02d}.csv", [*GOOD, _with(field, text)])


def structure(c: Corpus) -> None:
    c.table("rows-wrong-field-counts.csv", [*GOOD, GOOD[0][:3], [*GOOD[1], "extra"], [""]])
    c.table(
        "rows-quoted-line-breaks.csv",
        [*GOOD, _with("TradeID", "T\n1"), _with("Qualifier", "A\r\nB")],
    )
    body = (
        _csv([HEADER, GOOD[0]]) + b"P1,T2,Equity,Risk_Equity,AC\rME,1,,,,,5,,\r\n" + _csv(GOOD[1:])
    )
    c.put("rows-lone-cr.csv", body)
    c.put("rows-unterminated-quote.csv", _csv([HEADER, *GOOD]) + b'P1,"T9,Equity,Risk_Equity\r\n')
    c.put("rows-1mb-line.csv", _csv([HEADER, *GOOD, _with("Qualifier", "Q" * (1 << 20))]), 5)
    c.table("rows-all-empty.csv", [[""] * len(HEADER)] * 3)
    c.table("rows-many-portfolios.csv", [_with("PortfolioID", f"P{i}") for i in range(500)])
    c.table("rows-duplicated.csv", [GOOD[1]] * 200)


def parameters(c: Corpus) -> None:
    mult = [
        "P1",
        "",
        "",
        "Param_ProductClassMultiplier",
        "Equity",
        "",
        "",
        "",
        "1.5",
        "",
        "",
        "",
        "",
    ]
    factor = [
        "P1",
        "",
        "",
        "Param_AddOnNotionalFactor",
        "Swaption",
        "",
        "",
        "",
        "5",
        "",
        "",
        "",
        "",
    ]
    notional = ["P1", "", "", "Notional", "Swaption", "", "", "", "", "", "1000000", "", ""]
    c.table("param-multiplier-twice-different.csv", [*GOOD, mult, _with("Amount", "2", mult)])
    c.table("param-multiplier-twice-same.csv", [*GOOD, mult, mult])
    c.table("param-multiplier-negative.csv", [*GOOD, _with("Amount", "-1", mult)])
    c.table(
        "param-multiplier-with-productclass.csv", [*GOOD, _with("ProductClass", "Credit", mult)]
    )
    c.table("param-multiplier-bad-class.csv", [*GOOD, _with("Qualifier", "Rates", mult)])
    c.table("param-factor-conflict.csv", [*GOOD, factor, notional, _with("Amount", "7.5", factor)])
    c.table("param-factor-huge.csv", [*GOOD, _with("Amount", "1e19", factor), notional])


def schedule(c: Corpus) -> None:
    head = [
        "TradeID",
        "PortfolioID",
        "ProductClass",
        "RiskType",
        "Amount",
        "AmountCurrency",
        "EndDate",
        "IMModel",
    ]
    rows = [
        ["A", "P", "Rates", "Notional", "1e6", "USD", "2030-01-01", "Schedule"],
        ["A", "P", "Rates", "PV", "1e3", "USD", "2030-01-01", "Schedule"],
    ]
    for i, date in enumerate(
        ["", "2030-02-30", "9999-12-31", "0001-01-01", "30/02/2030", "20301301", "x"]
    ):
        c.table(
            f"schedule-enddate-{i}.csv",
            [*rows, ["B", "P", "Credit", "Notional", "1e6", "USD", date, "Schedule"]],
            head,
        )
    for i, model in enumerate(["schedule", "SIMM-P", "Sched", "", "[/x]"]):
        c.table(
            f"schedule-immodel-{i}.csv",
            [*rows, ["B", "P", "Credit", "Notional", "1e6", "USD", "2031-01-01", model]],
            head,
        )


def parquet(c: Corpus) -> None:
    cols = {name: pa.array([r[i] for r in GOOD]) for i, name in enumerate(HEADER)}
    c.parquet("parquet-good.parquet", pa.table(cols))
    c.parquet("parquet-zero-rows.parquet", pa.table({k: v[:0] for k, v in cols.items()}))
    dup = pa.Table.from_arrays([*cols.values(), cols["AmountUSD"]], names=[*HEADER, "AmountUSD"])
    c.put("parquet-column-twice.parquet", _parquet_bytes(dup))
    alias = pa.Table.from_arrays([*cols.values(), cols["AmountUSD"]], names=[*HEADER, "amount_usd"])
    c.put("parquet-alias-twice.parquet", _parquet_bytes(alias))
    n = len(GOOD)
    kinds: dict[str, Callable[[], pa.Array]] = {
        "list": lambda: pa.array([[1.0]] * n, pa.list_(pa.float64())),
        "struct": lambda: pa.array([{"a": 1}] * n),
        "binary": lambda: pa.array([b"\xff"] * n, pa.binary()),
        "bool": lambda: pa.array([True] * n),
        "date": lambda: pa.array([0] * n, pa.date32()),
        "timestamp": lambda: pa.array([0] * n, pa.timestamp("ns")),
        "decimal": lambda: pa.array([1] * n, pa.decimal128(38, 10)),
        "float32-nan": lambda: pa.array([float("nan")] * n, pa.float32()),
        "float64-inf": lambda: pa.array([float("inf")] * n, pa.float64()),
        "uint64-max": lambda: pa.array([2**64 - 1] * n, pa.uint64()),
        "null": lambda: pa.nulls(n),
        "dictionary": lambda: pa.array(["1e6"] * n).dictionary_encode(),
    }
    for kind, make in kinds.items():
        for field in ("AmountUSD", "RiskType", "Bucket"):
            c.parquet(f"parquet-{field}-{kind}.parquet", pa.table({**cols, field: make()}))
    good = _parquet_bytes(pa.table(cols))
    for cut in (0, 4, 8, len(good) // 3, len(good) // 2, len(good) - 12, len(good) - 4):
        c.put(f"parquet-truncated-at-{cut}.parquet", good[:cut])
    c.put("parquet-is-csv-text.parquet", _csv([HEADER, *GOOD]))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    c.put("parquet-byte-flipped.parquet", bytes(flipped))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


MANIFEST = """\
# Hostile CRIF inputs for `marginflow simm` (issue 11), written by
# tests/hostile/make_crif_corpus.py: every file must give exit status 0 or 2 and no traceback.
# {file} is the corpus file, {tmp} a fresh temporary folder.
command = "simm {file} --version 2.6 --json --rejects {tmp}/rejects.csv"
exit = [0, 2]

# Records in each file whose count is known: rows in = rows out + rows rejected.
[rows]
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    c = Corpus()
    for part in (headers, whole_files, amounts, fields, structure, parameters, schedule, parquet):
        part(c)
    lines = [f'"{name}" = {count}' for name, count in sorted(c.rows.items())]
    (OUT / "manifest.toml").write_text(MANIFEST + "\n".join(lines) + "\n")
    print(f"{len(c.names)} files in {OUT}")


if __name__ == "__main__":
    main()
