"""``marginflow publish``: files of trades, market data, start-of-day positions and CRIFs onto
a log; bad rows named, kept, and the rest published."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from marginflow.sim.synthetic_book import BookSpec
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.reconcile import read_events
from marginflow.stream.topics import CRIF, MARKET, TRADES, Topology

EXE = shutil.which("marginflow")
BOOK = BookSpec(members=2, accounts=6, underlyings=3, series=20, sod_positions=25, seed=2)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300, check=False)


def events_of(log_dir: Path, kind: str) -> list[ev.Event]:
    topology = Topology(partitions=2)
    log = EmbeddedLog(log_dir)
    try:
        topic = topology.name(kind)
        found = read_events(log, topic, Codec(topology.spec(kind).events))
    finally:
        log.close()
    return [e for part in found.values() for _, e in part]


def test_trades_market_and_positions_reach_the_log(tmp_path: Path) -> None:
    book = BOOK.write(tmp_path / "book")
    url = f"embedded://{tmp_path / 'log'}"
    common = ("--log", url, "--partitions", "2", "--json")
    res = run("publish", "positions", str(book), *common)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["start-of-day positions"] == BOOK.sod_positions
    trades = tmp_path / "trades.csv"
    trades.write_text(
        "time,account,instrument,quantity,price\n"
        "2019-01-02T09:30:00Z,A0001,SPX,5,2500\n"
        "2019-01-02T09:29:00,A0002,SPX,-3,\n"  # earlier: replayed first
    )
    res = run("publish", "trades", str(trades), *common)
    assert res.returncode == 0, res.stderr
    market = tmp_path / "market.csv"
    market.write_text(
        "time,underlying,spot,atm_vol,skew\n"
        "1546421400000000000,SPX,2510.5,,\n"
        "2019-01-02T09:31:00+00:00,SPX,2511,0.21,-0.4\n"
    )
    res = run("publish", "market", str(market), *common)
    assert res.returncode == 0, res.stderr
    on_trades = events_of(tmp_path / "log", TRADES)
    traded = [e for e in on_trades if isinstance(e, ev.Trade)]
    assert sorted((t.account, t.quantity) for t in traded) == [("A0001", 5), ("A0002", -3)]
    assert {t.trade_id for t in traded} == {"trades.csv:2", "trades.csv:3"}
    assert sum(isinstance(e, ev.PositionSnapshot) for e in on_trades) == BOOK.sod_positions
    moves = events_of(tmp_path / "log", MARKET)
    assert [type(e).__name__ for e in moves] == ["PriceUpdate", "PriceUpdate", "VolUpdate"]
    vol = moves[-1]
    assert isinstance(vol, ev.VolUpdate)
    assert (vol.vol, vol.skew) == (0.21, -0.4)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ("2019-01-02T09:30:00,A1,SPX,0,1", "quantity", "must not be 0"),
        ("2019-01-02T09:30:00,A1,SPX,1.5,1", "quantity", "not a whole number"),
        ("yesterday,A1,SPX,1,1", "time", "not an ISO 8601 time"),
        ("2019-01-02T09:30:00,,SPX,1,1", "account", "is missing"),
        ("2019-01-02T09:30:00,A1,SPX,1,-4", "price", ""),
        ("2019-01-02T09:30:00,[/x]<script>,SPX,1,1", "", ""),  # hostile text is data
    ],
)
def test_bad_trade_rows_are_named_kept_and_the_rest_published(
    tmp_path: Path, row: str, field: str, reason: str
) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text(
        "time,account,instrument,quantity,price\n" + row + "\n2019-01-02T10:00:00,A2,SPX,2,1\n"
    )
    rejects = tmp_path / "rejects.csv"
    res = run(
        "publish", "trades", str(trades), "--log", f"embedded://{tmp_path / 'log'}",
        "--rejects", str(rejects),
    )  # fmt: skip
    assert "Traceback" not in res.stderr
    published = [e for e in events_of(tmp_path / "log", TRADES) if isinstance(e, ev.Trade)]
    if not field:  # a valid row with odd text: published as given, literally
        assert res.returncode == 0, res.stderr
        assert "[/x]<script>" in {t.account for t in published}
        return
    assert res.returncode == 2
    assert f"trades.csv:2: {field}: " in res.stderr
    assert reason in res.stderr
    assert [t.account for t in published] == ["A2"]
    with open(rejects, newline="") as fh:
        kept = list(csv.DictReader(fh))
    assert [(r["line"], r["field"]) for r in kept] == [("2", field)]


def test_a_crif_becomes_one_submission_per_portfolio(tmp_path: Path) -> None:
    crif = tmp_path / "crif.csv"
    crif.write_text(
        "PortfolioID,RiskType,Qualifier,Bucket,Label1,Label2,Amount,AmountCurrency,AmountUSD\n"
        "P1,Risk_IRCurve,USD,1,2w,OIS,1000,USD,1000\n"
        "P2,Risk_Equity,XYZ,1,,,500,USD,500\n"
        "P1,Risk_IRCurve,USD,1,1y,OIS,lots,USD,lots\n"
    )
    res = run(
        "publish", "crif", str(crif), "--log", f"embedded://{tmp_path / 'log'}",
        "--party", "BANK-A", "--counterparty", "BANK-B", "--business-date", "2024-05-31",
    )  # fmt: skip
    assert res.returncode == 2
    assert "crif.csv:4: Amount:" in res.stderr
    subs = [e for e in events_of(tmp_path / "log", CRIF) if isinstance(e, ev.CrifSubmission)]
    assert sorted((s.portfolio, len(s.rows)) for s in subs) == [("P1", 1), ("P2", 1)]
    assert {s.party for s in subs} == {"BANK-A"}


def test_publish_names_what_is_wrong_with_the_command(tmp_path: Path) -> None:
    res = run("publish", "orders", str(tmp_path), "--log", f"embedded://{tmp_path}")
    assert res.returncode == 2
    assert "KIND must be one of trades, market, positions, crif" in res.stderr
    res = run("publish", "trades", str(tmp_path), "--log", f"embedded://{tmp_path / 'l'}")
    assert res.returncode == 2
    assert "is a directory, expected a file" in res.stderr
    res = run("publish", "trades", str(tmp_path / "none.csv"), "--dir", str(tmp_path / "nope"))
    assert res.returncode == 2
    assert "give --dir of a running cluster, or --log URL" in res.stderr


def test_reference_data_and_the_date_roll_reach_the_market_topic(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "members.csv").write_text("member,name\nM009,Ninth Clearing LLC\n")
    (ref / "accounts.csv").write_text("account,member,type\nN-1,M009,client\nN-2,M009,bogus\n")
    (ref / "instruments.csv").write_text(
        "instrument,underlying,type,strike,expiry,style\n"
        "XYZ 190315C50,XYZ,call,50,2019-03-15,american\n"
        "XYZ,XYZ,stock,,,\n"
        "XYZ 190315P0,XYZ,put,-5,2019-03-15,european\n"
    )
    url = f"embedded://{tmp_path / 'log'}"
    common = ("--log", url, "--partitions", "2")
    kept = tmp_path / "rejects.csv"
    res = run("publish", "reference", str(ref), *common, "--rejects", str(kept), "--json")
    assert res.returncode == 2, res.stderr  # two bad rows, named, the rest published
    assert json.loads(res.stdout)["rejected_rows"] == 2
    assert "accounts.csv:3: type" in res.stderr
    assert "instruments.csv:4: strike" in res.stderr
    assert len(list(csv.reader(kept.open()))) == 3
    res = run("publish", "roll", "2019-01-02", *common)
    assert res.returncode == 0, res.stderr
    events = events_of(tmp_path / "log", MARKET)
    assert [type(e).__name__ for e in events] == [
        "MemberRef", "AccountRef", "InstrumentRef", "InstrumentRef", "DateRoll"
    ]  # fmt: skip
    member, account, call, stock, roll = events
    assert isinstance(member, ev.MemberRef)
    assert member.name == "Ninth Clearing LLC"
    assert isinstance(account, ev.AccountRef)
    assert account.account_type == "client"
    assert isinstance(call, ev.InstrumentRef)
    assert (call.kind, call.strike, call.expiry, call.multiplier) == ("call", 50, "2019-03-15", 100)
    assert isinstance(stock, ev.InstrumentRef)
    assert (stock.kind, stock.multiplier) == ("equity", 1)
    assert isinstance(roll, ev.DateRoll)
    assert roll.business_date == "2019-01-02"
    bad = run("publish", "roll", "tomorrow", *common)
    assert bad.returncode == 2
    assert "ISO date" in bad.stderr
