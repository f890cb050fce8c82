"""Hostile inputs of ``marginflow stress`` beyond the generic table faults: the default-fund
file (``--default-fund``), stress sets as TOML files and as scenario CSVs (``--set``).

:mod:`tests.hostile.make_corpus` writes them: the two CSV inputs get the generic and cell
faults every table gets plus the cases here; the TOML input gets only the cases here. Each
:class:`Case` says whether the file is a good input (exit 0) and, for a refusal whose line
is known, the line the error must name. The base book they run against has members ``M1``
and ``M2`` and underlyings ``SPX`` and ``NDX`` (``tests/hostile/base/book``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

MEMBERS = ("M1", "M2")


@dataclass(frozen=True, slots=True)
class Case:
    """One hostile file: its name, bytes, whether it is a good input, and the line its
    refusal names (None: no line, or none pinned)."""

    name: str
    data: bytes
    ok: bool = False
    line: int | None = None


def _csv(rows: list[list[str]], newline: str = "\n") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerows(rows)
    return out.getvalue().encode()


# -- the default-fund file -----------------------------------------------------------------

FUND = "member,contribution\nM1,1000\nM2,2500.5\n"
FUND_HEAD = ["member", "contribution"]

# Which generic and cell faults (make_corpus.generic, make_corpus.cells) a fund file survives:
# the same table read whole, with cells stripped, blank lines and extra columns ignored.
FUND_GENERIC_OK = frozenset(
    {
        "bom.csv", "double-bom.csv", "crlf.csv", "cr-only.csv", "mixed-newlines.csv",
        "extra-columns.csv", "blank-lines-between.csv", "whitespace-cells.csv", "markup-header.csv",
        "contribution-num02.csv", "contribution-num06.csv", "contribution-num07.csv",
        "contribution-num08.csv", "contribution-num11.csv",
    }
)  # fmt: skip


def fund_cases() -> Iterator[Case]:
    def fund(*rows: str, head: str = "member,contribution") -> bytes:
        return (head + "\n" + "".join(r + "\n" for r in rows)).encode()

    yield Case("zero-contributions.csv", fund("M1,0", "M2,0"), ok=True)
    yield Case("columns-swapped.csv", fund("1,M1", "2,M2", head="contribution,member"), ok=True)
    yield Case("quoted-numbers.csv", fund('M1,"1000"', 'M2,"2e3"'), ok=True)
    yield Case("largest-contribution.csv", fund("M1,1e15", "M2,0"), ok=True)
    yield Case("over-largest.csv", fund("M1,1", "M2,1.0000001e15"), line=3)
    yield Case("both-1e308.csv", fund("M1,1e308", "M2,1e308"), line=2)
    yield Case("nan-text.csv", fund("M1,NaN", "M2,1"), line=2)
    yield Case("infinity-text.csv", fund("M1,1", "M2,Infinity"), line=3)
    yield Case("negative-zero-ok.csv", fund("M1,-0", "M2,1"), ok=True)
    yield Case("tiny-negative.csv", fund("M1,-1e-300", "M2,1"), line=2)
    yield Case("hex.csv", fund("M1,0x10", "M2,1"), line=2)
    yield Case("currency-sign.csv", fund("M1,$1000", "M2,1"), line=2)
    yield Case("thousands-separator.csv", fund('M1,"1,000"', "M2,1"), line=2)
    yield Case("contribution-missing.csv", fund("M1,1", "M2,"), line=3)
    yield Case("member-missing.csv", fund("M1,1", ",2"), line=3)
    yield Case("duplicate-member.csv", fund("M1,1", "M2,2", "M1,3"), line=4)
    yield Case("duplicate-member-same-value.csv", fund("M1,1", "M1,1", "M2,2"), line=3)
    yield Case("unknown-member.csv", fund("M1,1", "M2,2", "M3,3"), line=4)
    yield Case("member-wrong-case.csv", fund("m1,1", "M2,2"), line=2)
    yield Case("member-left-out.csv", fund("M1,1"))
    yield Case("every-member-left-out-but-rows.csv", fund("M3,1", "M4,2"), line=2)
    yield Case("script-member.csv", fund("M1,1", "M2,2", "<script>alert(1)</script>,3"), line=4)
    yield Case("rich-markup-member.csv", fund("M1,1", "M2,2", "[bold red]M3[/],3"), line=4)
    yield Case("esc-member.csv", fund("\x1b[31mM1\x1b[0m,1", "M2,2"), line=2)
    yield Case("bidi-member.csv", fund("M1,1", "\u202eM2,2"), line=3)
    yield Case("newline-member.csv", _csv([FUND_HEAD, ["M1\nM2", "1"], ["M2", "2"]]))
    yield Case("nul-member.csv", fund("M1\x00,1", "M2,2"), line=2)
    yield Case("long-member.csv", fund("M1,1", "M2,2", "M" * 100_000 + ",3"), line=4)
    yield Case("invalid-utf8-member.csv", b"member,contribution\nM1,1\nM\xff2,2\n", line=3)
    yield Case("invalid-utf8-header.csv", b"memb\xc3er,contribution\nM1,1\nM2,2\n", line=1)
    yield Case("nul-only.csv", b"\x00" * 1024)
    yield Case("missing-contribution-column.csv", fund("M1", "M2", head="member"))
    yield Case("missing-member-column.csv", fund("1", "2", head="contribution"))
    yield Case(
        "duplicate-contribution-column.csv",
        fund("M1,1,2", "M2,1,2", head="member,contribution,contribution"),
        line=1,
    )
    yield Case("renamed-columns.csv", fund("M1,1", "M2,2", head="member,amount"))
    # 100,000 rows: a file much longer than any book's member list, refused at its first repeat
    yield Case("100k-rows.csv", fund(*(["M1,1"] * 100_000)), line=3)


# -- a stress set as a scenario CSV --------------------------------------------------------

SET_CSV = (
    "scenario,underlying,spot_shock,vol_shock\n"
    "down,*,-0.1,0.3\nup,*,0.1,-0.1\ncrash,SPX,-0.3,0.8\ncrash,*,-0.2,0.5\n"
)

SET_CSV_GENERIC_OK = frozenset(
    {
        "bom.csv", "double-bom.csv", "crlf.csv", "cr-only.csv", "mixed-newlines.csv",
        "extra-columns.csv", "blank-lines-between.csv", "whitespace-cells.csv", "markup-header.csv",
        "stray-quote.csv",  # the quote is inside a field: one more scenario, named 'downa"b'
        "spot_shock-num02.csv", "spot_shock-num06.csv", "spot_shock-num07.csv",
        "vol_shock-num02.csv", "vol_shock-num06.csv", "vol_shock-num07.csv",
        "scenario-markup.csv", "scenario-rich.csv", "scenario-emoji.csv", "scenario-formula.csv",
        "scenario-unknown.csv",
    }
)  # fmt: skip


def set_csv_cases() -> Iterator[Case]:
    head = "scenario,underlying,spot_shock,vol_shock"

    def shocks(*rows: str, header: str = head) -> bytes:
        return (header + "\n" + "".join(r + "\n" for r in rows)).encode()

    yield Case("market-only.csv", shocks("down,*,-0.2,0.5"), ok=True)
    yield Case("every-underlying-named.csv", shocks("s,SPX,-0.2,0.5", "s,NDX,-0.3,0.6"), ok=True)
    yield Case(
        "no-vol-column.csv", shocks("down,*,-0.2", header="scenario,underlying,spot_shock"), ok=True
    )
    yield Case(
        "group-column.csv", shocks("down,*,-0.2,0.5,stressed", header=head + ",group"), ok=True
    )
    yield Case("group-unknown.csv", shocks("down,*,-0.2,0.5,panic", header=head + ",group"), line=2)
    yield Case("zero-shocks.csv", shocks("flat,*,0,0"), ok=True)
    yield Case("bounds-ok.csv", shocks("a,*,-0.999999,10", "b,*,10,-0.999999"), ok=True)
    yield Case("spot-minus-one.csv", shocks("a,*,0.1,0", "b,*,-1,0"), line=3)
    yield Case("vol-minus-one.csv", shocks("a,*,0.1,-1"), line=2)
    yield Case("spot-over-ten.csv", shocks("a,*,0.1,0", "b,*,10.000001,0"), line=3)
    yield Case("vol-1e308.csv", shocks("a,*,0.1,1e308"), line=2)
    yield Case("spot-nan-text.csv", shocks("a,*,NaN,0"), line=2)
    yield Case("spot-percent.csv", shocks("a,*,-20%,0"), line=2)
    # a named underlying the book does not hold is left out: the market move covers the book
    yield Case("unknown-underlying-with-market.csv", shocks("a,NOPE,-0.5,0", "a,*,-0.1,0"), ok=True)
    # a scenario that names only underlyings the book does not hold moves the book by nothing
    yield Case("unknown-underlying-only.csv", shocks("a,*,-0.1,0", "b,NOPE,-0.5,0"), line=3)
    yield Case("one-underlying-uncovered.csv", shocks("a,*,-0.1,0", "b,SPX,-0.5,0"), line=3)
    yield Case("duplicate-shock.csv", shocks("a,*,-0.1,0", "a,SPX,-0.2,0", "a,SPX,-0.3,0"), line=4)
    yield Case("duplicate-market.csv", shocks("a,*,-0.1,0", "a,*,-0.1,0"), line=3)
    yield Case("script-label.csv", shocks("<script>alert(1)</script>,*,-0.1,0"), ok=True)
    yield Case("rich-label.csv", shocks("[bold red]boom[/],*,-0.1,0", "[/x],*,0.1,0"), ok=True)
    yield Case("esc-label.csv", shocks("\x1b[2Jwipe,*,-0.1,0"), line=2)
    yield Case("osc-label.csv", shocks("a,*,-0.1,0", "\x1b]0;pwned\x07,*,0.1,0"), line=3)
    yield Case("bidi-label.csv", shocks("\u202eevil,*,-0.1,0"), line=2)
    yield Case("newline-label.csv", _csv([head.split(","), ["two\nlines", "*", "-0.1", "0"]]))
    yield Case("tab-label.csv", shocks("a\tb,*,-0.1,0"), line=2)
    yield Case("nul-label.csv", shocks("a\x00,*,-0.1,0"), line=2)
    yield Case("esc-underlying.csv", shocks("a,*,-0.1,0", "a,\x1b[31mSPX,-0.2,0"), line=3)
    yield Case("label-200.csv", shocks("L" * 200 + ",*,-0.1,0"), ok=True)
    yield Case("label-201.csv", shocks("L" * 201 + ",*,-0.1,0"), line=2)
    yield Case("long-label.csv", shocks("L" * 100_000 + ",*,-0.1,0"), line=2)
    yield Case(
        "long-underlying.csv", shocks("a,*,-0.1,0", "a," + "U" * 100_000 + ",-0.2,0"), line=3
    )
    yield Case("label-blank-padded.csv", shocks('" a ",*,-0.1,0'), ok=True)  # cells are stripped
    yield Case("invalid-utf8-label.csv", b"scenario,underlying,spot_shock\nd\xe9,*,-0.1\n", line=2)
    yield Case("nul-only.csv", b"\x00" * 1024)
    yield Case("missing-spot-column.csv", shocks("a,*", header="scenario,underlying"))
    yield Case("missing-underlying-column.csv", shocks("a,-0.1", header="scenario,spot_shock"))
    yield Case(
        "duplicate-spot-column.csv",
        shocks("a,*,-0.1,-0.2", header="scenario,underlying,spot_shock,spot_shock"),
        line=1,
    )
    # a row the reader rejects refuses the whole set: a named set never loses a scenario
    yield Case("one-bad-row-of-many.csv", shocks("a,*,-0.1,0", "b,*,-0.2,0", "c,*,lots,0"), line=4)
    yield Case(
        "5000-scenarios.csv",
        shocks(*(f"s{i},*,{-0.5 + i / 10_000:.4f},0" for i in range(5000))),
        ok=True,
    )
    # 100,000 rows of one shock: refused at its first repeat, not after the stress ran
    yield Case(
        "100k-rows.csv",
        shocks(*(["a,*,0"] * 100_000), header="scenario,underlying,spot_shock"),
        line=3,
    )


# -- a stress set as a TOML file -----------------------------------------------------------

TOML = """\
format = "marginflow-stress-set/1"
name = "hostile"
version = "1"
description = "a small set for the hostile corpus"
scaling = "none"

[params]
source = "tests/hostile"

[[scenario]]
label = "crash"
spot_shock = -0.2
vol_shock = 0.5
start = 2008-10-15
end = 2008-10-15
horizon_days = 1

[scenario.shocks]
NDX = { spot_shock = -0.3, vol_shock = 0.8 }

[[scenario]]
label = "rally"
spot_shock = 0.1
"""
LINE: dict[str, int] = {}  # each line of the good file -> where it first stands
for _n, _line in enumerate(TOML.splitlines(), start=1):
    LINE.setdefault(_line, _n)


def _edit(old: str, new: str) -> bytes:
    assert old in TOML, old
    return TOML.replace(old, new, 1).encode()


def _at(old: str) -> int:
    """The line of ``old`` (a whole line) in the good file."""
    return LINE[old]


def _top(extra: str) -> bytes:
    """The good file's top-level keys, ``extra`` after them (before any table), its params."""
    head, params = TOML.split("\n[[scenario]]")[0].split("\n[params]")
    return (head + extra + "\n[params]" + params).encode()


def _nest(depth: int, open_: str, close: str, leaf: str = "1") -> str:
    return open_ * depth + leaf + close * depth


def toml_cases() -> Iterator[Case]:
    good = TOML.encode()
    spot, vol, label = "spot_shock = -0.2", "vol_shock = 0.5", 'label = "crash"'
    yield Case("good.toml", good, ok=True)
    # whole-file faults
    yield Case("empty.toml", b"")
    yield Case("only-newlines.toml", b"\n\n\n")
    yield Case("only-comment.toml", b"# a stress set\n")
    yield Case("header-only.toml", TOML.split("\n[params]")[0].encode())
    yield Case("bom.toml", b"\xef\xbb\xbf" + good, ok=True)
    yield Case("double-bom.toml", b"\xef\xbb\xbf\xef\xbb\xbf" + good)
    yield Case("utf16-bom.toml", TOML.encode("utf-16"), line=1)
    yield Case("utf16le.toml", TOML.encode("utf-16-le"), line=1)
    yield Case("crlf.toml", TOML.replace("\n", "\r\n").encode(), ok=True)
    yield Case("cr-only.toml", TOML.replace("\n", "\r").encode())
    yield Case(
        "latin1-description.toml",
        _edit("a small set", "caf\u00e9").decode().encode("latin-1"),
        line=4,
    )
    yield Case("invalid-utf8-comment.toml", good + b"# \xff\xfe\n", line=TOML.count("\n") + 1)
    yield Case("invalid-utf8-label.toml", good.replace(b"crash", b"cr\xffash", 1), line=_at(label))
    yield Case("nul-in-string.toml", _edit("a small set", "a\\u0000set"), line=4)
    yield Case("raw-nul.toml", _edit("a small set", "a\x00set"))
    yield Case("nul-bytes-after.toml", good + b"\x00" * 64)
    yield Case("binary-junk.toml", bytes(range(256)) * 4)
    yield Case("gzip-magic.toml", b"\x1f\x8b\x08\x00" + bytes(100))
    yield Case("csv-named-toml.toml", SET_CSV.encode())
    yield Case("json-named-toml.toml", b'{"format": "marginflow-stress-set/1"}')
    # missing, extra and duplicate keys
    yield Case("no-format.toml", _edit('format = "marginflow-stress-set/1"\n', ""))
    yield Case("format-v2.toml", _edit("stress-set/1", "stress-set/2"), line=1)
    yield Case("no-name.toml", _edit('name = "hostile"\n', ""))
    yield Case("no-version.toml", _edit('version = "1"\n', ""))
    yield Case("no-scenarios.toml", TOML.split("\n[[scenario]]")[0].encode())
    yield Case("no-label.toml", _edit(label + "\n", ""), line=_at("[[scenario]]"))
    yield Case(
        "moves-nothing.toml", _edit('label = "rally"\nspot_shock = 0.1', 'label = "rally"'), line=21
    )
    yield Case("start-without-end.toml", _edit("end = 2008-10-15\n", ""), line=_at("[[scenario]]"))
    yield Case(
        "end-before-start.toml",
        _edit("end = 2008-10-15", "end = 2008-10-14"),
        line=_at("end = 2008-10-15"),
    )
    yield Case("unknown-top-key.toml", _edit('version = "1"', 'version = "1"\nowner = "x"'), line=4)
    yield Case("misspelt-vol-shock.toml", _edit(vol, "vol_shok = 0.5"), line=_at(vol))
    yield Case("unknown-shock-key.toml", _edit("vol_shock = 0.8 }", "vol = 0.8 }"), line=19)
    yield Case("duplicate-key.toml", _edit(spot, spot + "\n" + spot))
    yield Case(
        "duplicate-top-key.toml", _edit('name = "hostile"', 'name = "hostile"\nname = "other"')
    )
    yield Case(
        "duplicate-named-shock.toml",
        _edit(
            "NDX = { spot_shock = -0.3, vol_shock = 0.8 }",
            "NDX = { spot_shock = -0.3 }\nNDX = { spot_shock = -0.4 }",
        ),
    )
    yield Case("duplicate-label.toml", _edit('label = "rally"', 'label = "crash"'), line=22)
    yield Case(
        "scenario-as-table.toml",
        TOML.split('\n[[scenario]]\nlabel = "rally"')[0]
        .replace("[[scenario]]", "[scenario]")
        .encode(),
    )
    yield Case("params-twice.toml", _edit("[params]", "[params]\nx = 1\n[params]"))
    # numbers: huge, not finite, out of bounds, of the wrong kind
    for i, value in enumerate(
        [
            "1e308",
            "-1e308",
            "1e400",
            "-1e400",
            "nan",
            "-nan",
            "inf",
            "+inf",
            "-inf",
            "-1",
            "-1.0000001",
            "10.000001",
            "0x10",
            "99999999999999999999",
            "9" * 5000,
            "1_0",
            "-0.0",
            "5e-324",
            "10",
            "-0.999999",
        ]
    ):
        ok = value in ("-0.0", "5e-324", "10", "-0.999999", "1_0")
        yield Case(
            f"spot-num{i:02d}.toml",
            _edit(spot, f"spot_shock = {value}"),
            ok=ok,
            line=None if ok or value == "9" * 5000 else _at(spot),
        )
        yield Case(
            f"named-num{i:02d}.toml",
            _edit("spot_shock = -0.3,", f"spot_shock = {value},"),
            ok=ok,
            line=None if ok or value == "9" * 5000 else 19,
        )
    # type confusions
    confusions = {
        "string": '"-0.2"',
        "bool": "true",
        "array": "[-0.2]",
        "mixed-array": '[-0.2, "a", 1979-05-27]',
        "inline-table": "{ value = -0.2 }",
        "date": "2008-10-15",
        "datetime": "2008-10-15T10:00:00Z",
        "time": "10:00:00",
        "empty-string": '""',
        "empty-array": "[]",
    }
    for kind, value in confusions.items():
        yield Case(f"spot-as-{kind}.toml", _edit(spot, f"spot_shock = {value}"), line=_at(spot))
        ok = kind == "string"  # "-0.2" is a label like any other
        yield Case(
            f"label-as-{kind}.toml",
            _edit(label, f"label = {value}"),
            ok=ok,
            line=None if ok else _at(label),
        )
    yield Case("spot-as-table.toml", _edit(spot, "[scenario.spot_shock]\nx = 1"), line=_at(spot))
    yield Case("version-as-number.toml", _edit('version = "1"', "version = 1"), line=3)
    yield Case("version-as-float.toml", _edit('version = "1"', "version = 1.0"), line=3)
    yield Case("name-as-array.toml", _edit('name = "hostile"', 'name = ["hostile"]'), line=2)
    yield Case(
        "format-as-array.toml",
        _edit('format = "marginflow-stress-set/1"', 'format = ["marginflow-stress-set/1"]'),
        line=1,
    )
    yield Case("scaling-as-number.toml", _edit('scaling = "none"', "scaling = 0"), line=5)
    yield Case("scaling-unknown.toml", _edit('scaling = "none"', 'scaling = "sector"'), line=5)
    yield Case(
        "description-as-table.toml",
        _edit('description = "a small set for the hostile corpus"', 'description = { text = "x" }'),
        line=4,
    )
    yield Case("horizon-as-float.toml", _edit("horizon_days = 1", "horizon_days = 1.0"), line=16)
    yield Case(
        "horizon-huge.toml",
        _edit("horizon_days = 1", "horizon_days = 99999999999999999999"),
        line=16,
    )
    yield Case("horizon-negative.toml", _edit("horizon_days = 1", "horizon_days = -1"), line=16)
    yield Case("horizon-bool.toml", _edit("horizon_days = 1", "horizon_days = true"), line=16)
    yield Case("start-as-string.toml", _edit("start = 2008-10-15", 'start = "2008-10-15"'), line=14)
    yield Case(
        "start-as-datetime.toml",
        _edit("start = 2008-10-15", "start = 2008-10-15T00:00:00"),
        line=14,
    )
    yield Case("start-as-time.toml", _edit("start = 2008-10-15", "start = 00:00:00"), line=14)
    yield Case(
        "start-invalid-date.toml", _edit("start = 2008-10-15", "start = 2008-02-30"), line=14
    )
    yield Case(
        "params-as-number.toml", _edit('[params]\nsource = "tests/hostile"', "params = 1"), line=7
    )
    yield Case(
        "params-as-array.toml",
        _edit('[params]\nsource = "tests/hostile"', 'params = [1, "a"]'),
        line=7,
    )
    yield Case(
        "params-mixed-array.toml",
        _edit('source = "tests/hostile"', 'source = [1, "a", 2008-01-01, { b = [true, 1.5] }]'),
        ok=True,
    )
    yield Case(
        "params-datetime.toml",
        _edit('source = "tests/hostile"', "source = 2008-01-01T00:00:00Z"),
        line=7,
    )
    yield Case("params-nan.toml", _edit('source = "tests/hostile"', "source = nan"), line=7)
    yield Case("params-esc-key.toml", _edit('source = "tests/hostile"', '"\\u001b[2J" = 1'), line=7)
    yield Case(
        "params-esc-value.toml",
        _edit('source = "tests/hostile"', 'source = "\\u001b]0;pwned\\u0007"'),
        line=7,
    )
    yield Case(
        "params-huge-int.toml",
        _edit('source = "tests/hostile"', "source = 9223372036854775808"),
        line=7,
    )
    yield Case("scenario-as-number.toml", _top("scenario = 1\n"))
    yield Case("scenario-as-array-of-numbers.toml", _top("scenario = [1, 2]\n"))
    yield Case(
        "scenario-as-nested-arrays.toml", _top('scenario = [[{ label = "a", spot_shock = 0.1 }]]\n')
    )
    yield Case(
        "scenario-inline-array.toml",
        _top(
            'scenario = [{ label = "a", spot_shock = 0.1 }, { label = "b", spot_shock = -0.1 }]\n'
        ),
        ok=True,
    )
    yield Case(
        "shocks-as-number.toml",
        _edit("[scenario.shocks]\nNDX = { spot_shock = -0.3, vol_shock = 0.8 }", "shocks = 1"),
        line=18,
    )
    yield Case(
        "shocks-as-array.toml",
        _edit(
            "[scenario.shocks]\nNDX = { spot_shock = -0.3, vol_shock = 0.8 }",
            "shocks = [{ NDX = -0.3 }]",
        ),
        line=18,
    )
    yield Case(
        "named-as-number.toml",
        _edit("NDX = { spot_shock = -0.3, vol_shock = 0.8 }", "NDX = -0.3"),
        line=19,
    )
    yield Case(
        "named-nested-table.toml",
        _edit(
            "NDX = { spot_shock = -0.3, vol_shock = 0.8 }",
            "NDX = { spot_shock = { value = -0.3 } }",
        ),
        line=19,
    )
    yield Case(
        "named-sub-table.toml",
        _edit(
            "NDX = { spot_shock = -0.3, vol_shock = 0.8 }",
            "[scenario.shocks.NDX.deep]\nspot_shock = -0.3",
        ),
    )
    yield Case("named-wildcard.toml", _edit("NDX = {", '"*" = {'), line=18)
    yield Case("named-empty-name.toml", _edit("NDX = {", '"" = {'), line=18)
    # unknown underlyings: left out when the market move covers the book, else refused
    yield Case("named-unknown-with-market.toml", _edit("NDX = {", "NOPE = {"), ok=True)
    yield Case(
        "named-unknown-only.toml",
        _edit(
            'label = "rally"\nspot_shock = 0.1',
            'label = "rally"\n[scenario.shocks]\nNOPE = { spot_shock = 0.1 }',
        ),
        line=23,
    )
    yield Case(
        "named-one-uncovered.toml",
        _edit(
            'label = "rally"\nspot_shock = 0.1',
            'label = "rally"\n[scenario.shocks]\nSPX = { spot_shock = 0.1 }',
        ),
        line=23,
    )
    # names: markup is kept as text, control and format characters refused
    yield Case("label-script.toml", _edit(label, 'label = "<script>alert(1)</script>"'), ok=True)
    yield Case("label-rich.toml", _edit(label, 'label = "[bold red]crash[/] [/x]"'), ok=True)
    yield Case("label-formula.toml", _edit(label, "label = \"=cmd|' /C calc'!A0\""), ok=True)
    yield Case(
        "label-esc.toml", _edit(label, 'label = "\\u001b[31mcrash\\u001b[0m"'), line=_at(label)
    )
    yield Case("label-osc.toml", _edit(label, 'label = "\\u001b]0;pwned\\u0007"'), line=_at(label))
    yield Case("label-newline.toml", _edit(label, 'label = "two\\nlines"'), line=_at(label))
    yield Case(
        "label-multiline-string.toml", _edit(label, 'label = """two\nlines"""'), line=_at(label)
    )
    yield Case("label-bidi.toml", _edit(label, 'label = "\\u202eevil"'), line=_at(label))
    yield Case("label-zero-width.toml", _edit(label, 'label = "cr\\u200bash"'), line=_at(label))
    yield Case("label-blank.toml", _edit(label, 'label = "   "'), line=_at(label))
    yield Case("label-padded.toml", _edit(label, 'label = " crash "'), line=_at(label))
    yield Case("label-200.toml", _edit(label, f'label = "{"L" * 200}"'), ok=True)
    yield Case("label-201.toml", _edit(label, f'label = "{"L" * 201}"'), line=_at(label))
    yield Case("label-100k.toml", _edit(label, f'label = "{"L" * 100_000}"'), line=_at(label))
    yield Case("description-100k.toml", _edit("a small set", "d" * 100_000), line=4)
    yield Case("name-script.toml", _edit('name = "hostile"', 'name = "<script>"'), line=2)
    yield Case("name-65.toml", _edit('name = "hostile"', f'name = "{"n" * 65}"'), line=2)
    yield Case("version-33.toml", _edit('version = "1"', f'version = "{"1" * 33}"'), line=3)
    yield Case("version-esc.toml", _edit('version = "1"', 'version = "1\\u001b[2J"'), line=3)
    yield Case("named-esc.toml", _edit("NDX = {", '"\\u001b[31mNDX" = {'), line=18)
    yield Case("named-100k.toml", _edit("NDX = {", f"{'U' * 100_000} = {{"), line=18)
    yield Case("key-100k.toml", _edit(vol, vol + "\n" + "k" * 100_000 + " = 1"), line=_at(vol) + 1)
    # deep nesting: the parser's stack, then the loader's own limit on params
    yield Case("deep-array.toml", f"a = {_nest(100_000, '[', ']')}\n".encode())
    yield Case("deep-inline-table.toml", f"a = {_nest(10_000, '{ b = ', ' }')}\n".encode())
    yield Case(
        "deep-params-array.toml",
        _edit('source = "tests/hostile"', f"source = {_nest(100_000, '[', ']')}"),
    )
    yield Case(
        "deep-params-3.toml",
        _edit('source = "tests/hostile"', f"source = {_nest(3, '[', ']')}"),
        ok=True,
    )
    yield Case(
        "deep-params-4.toml",
        _edit('source = "tests/hostile"', f"source = {_nest(4, '[', ']')}"),
        line=7,
    )
    yield Case(
        "deep-dotted-key.toml",
        _edit('source = "tests/hostile"', ".".join(["k"] * 20_000) + " = 1"),
        line=7,
    )
    yield Case(
        "deep-table-header.toml",
        _edit(
            '[params]\nsource = "tests/hostile"', "[params." + ".".join(["k"] * 20_000) + "]\nx = 1"
        ),
    )
    yield Case(
        "many-scenarios.toml",
        (
            TOML.split("\n[[scenario]]")[0]
            + "".join(
                f'\n[[scenario]]\nlabel = "s{i}"\nspot_shock = {-0.5 + i / 4000:.5f}\n'
                for i in range(2000)
            )
        ).encode(),
        ok=True,
    )
