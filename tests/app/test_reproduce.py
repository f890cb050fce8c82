"""Reproduce and explain from the store alone: a day streamed in three parts (start of day,
morning, afternoon, with an approved parameter change in the afternoon) into a store, then
every stored margin recomputed to the bit with the log gone, a tampered one named, and the
change of a margin between two times split by cause, through the app functions and the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from marginflow.app.explain import explain
from marginflow.app.reproduce import reproduce, reproduce_sample
from marginflow.engine.settings import MarginSettings
from marginflow.sim.loadgen import parameter_change
from marginflow.sim.synthetic_book import BookSpec
from marginflow.store import Database
from marginflow.store.loads import record_book_load
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.pipeline import build_pipeline
from marginflow.stream.publish import publish_parameter_changes, publish_trades, sod_positions
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.sources import read_market, read_trades, replay
from marginflow.stream.topics import Topology
from tests.sim.day_files import day_files

BOOK = BookSpec(members=3, accounts=24, underlyings=5, series=80, sod_positions=120, seed=9)
SETTINGS = MarginSettings(lookback=250)
EXE = [sys.executable, "-m", "marginflow"]


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """A store holding a streamed day, and the event time (ns) of the day's midpoint."""
    root = tmp_path_factory.mktemp("traced")
    book_dir = BOOK.write(root / "book")
    trades_path, market_path, _, _ = day_files(root, book_dir, n_trades=900, n_moves=40)
    trades, market = read_trades(trades_path).trades, read_market(market_path).market
    setup, failures = MarginSetup.from_folder(book_dir, SETTINGS)
    assert not failures
    url = f"sqlite:///{root / 'margins.db'}"
    log = EmbeddedLog(root / "log", fsync="never")
    topology = Topology(partitions=2)
    pipeline = build_pipeline(
        log=log, topology=topology, state_dir=root / "state", db_url=url, setup=setup
    )
    record_book_load(pipeline.db, book_dir, SETTINGS.to_json())
    producer = log.producer()
    publish_trades(producer, topology, sod_positions(setup.book))
    producer.flush()
    pipeline.run(idle_exit=0.2)
    half_t, half_m = len(trades) // 2, len(market) // 2
    replay(producer, topology, trades=trades[:half_t], market=market[:half_m])
    producer.flush()
    pipeline.run(idle_exit=0.2)
    middle = max(trades[half_t - 1].event_time, market[half_m - 1].event_time)
    change = parameter_change("RP-TEST", "confidence", 0.995, at_ns=middle + 1)
    publish_parameter_changes(producer, topology, [change])
    replay(producer, topology, trades=trades[half_t:], market=market[half_m:])
    producer.flush()
    pipeline.run(idle_exit=0.2)
    pipeline.close()
    log.close()
    return url, middle


def test_every_stored_margin_reproduces_to_the_bit(day: tuple[str, int]) -> None:
    db = Database(day[0])
    history = db.margin_history()
    assert len(history) > 2 * BOOK.accounts  # margins at several times of the day
    assert {m.book_load for m in history} == {db.book_loads()[0].id}
    results = reproduce_sample(db, len(history))
    assert [r.differences for r in results if not r.ok] == []
    assert {r.stored.settings for r in results} == {r.recomputed.settings for r in results}
    assert len({r.stored.settings for r in results}) == 2  # before and after the change
    # cold, as the CLI does it: the load read for the account's underlyings alone
    for m in history[:: max(1, len(history) // 12)]:
        alone = reproduce(db, m.account, version=m.position_version)
        assert alone.ok, alone.differences
    db.close()


def test_reproduce_prints_both_margins_and_their_inputs(day: tuple[str, int]) -> None:
    account = Database(day[0]).margin_history()[-1].account
    out = subprocess.run(
        [*EXE, "reproduce", account, "--db", day[0], "--at", "2100-01-01", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    assert doc["stored"]["margin"] == doc["recomputed"]["margin"] > 0
    assert len(doc["settings"]) == len(doc["book_load"]) == 64
    assert doc["positions"]


def test_a_tampered_margin_is_named_and_exits_1(day: tuple[str, int], tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    with sqlite3.connect(day[0].removeprefix("sqlite:///")) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)  # the WAL's pages included
    db = Database(f"sqlite:///{copy}")
    m = db.margin_history()[-1]
    with db.transaction() as conn:
        h = db.t.account_margin_history
        conn.execute(
            sa.update(h)
            .where(h.c.account == m.account, h.c.position_version == m.position_version)
            .values(margin=m.margin * (1 + 1e-15) + 1e-9)
        )
    db.close()
    out = subprocess.run(
        [*EXE, "reproduce", m.account, "--db", f"sqlite:///{copy}",
         "--version", str(m.position_version)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "differs margin: stored" in " ".join(out.stdout.split())


def test_explain_splits_an_accounts_change_by_cause_in_both_orders(
    day: tuple[str, int],
) -> None:
    db = Database(day[0])
    middle = day[1]
    account = next(
        a for a in sorted(db.account_margins())
        if (m := db.margin(a, at=middle)) is not None and m.margin > 0
    )  # fmt: skip
    result = explain(db, account, middle, 2**62)
    assert result.kind == "account"
    assert result.differences == []  # the ends recomputed equal the stored margins
    end = db.margin(account, at=2**62)
    start = db.margin(account, at=middle)
    assert end is not None
    assert start is not None
    assert result.forward.start == start.margin
    assert result.forward.end == end.margin
    for fall in (result.forward, result.reverse):
        assert [s.cause for s in fall.steps] == list(fall.order)
        total = sum(s.change for s in fall.steps)
        assert total == pytest.approx(fall.change, abs=1e-6 * max(end.margin, 1.0))
    assert result.reverse.order == result.forward.order[::-1]
    # the afternoon's parameter change (99.5%) moved this margin: it shows as its cause
    assert dict((s.cause, s.change) for s in result.forward.steps)["parameters"] != 0.0
    db.close()


def test_explain_of_a_member_as_a_table_json_and_chart(
    day: tuple[str, int], tmp_path: Path
) -> None:
    member = Database(day[0]).margin_history()[0].member
    args = [*EXE, "explain", member, "--db", day[0], "--from", "2000-01-01", "--to", "now"]
    chart = tmp_path / "why.svg"
    table = subprocess.run(
        [*args, "--chart", str(chart)], capture_output=True, text=True, timeout=300, check=False
    )
    assert table.returncode == 0, table.stderr
    assert "trades → market → parameters" in table.stdout
    assert "parameters → market → trades" in table.stdout
    assert chart.stat().st_size > 1000
    doc = json.loads(
        subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=300).stdout
    )
    assert doc["kind"] == "member"
    assert doc["forward"]["start"] == 0.0  # nothing held in 2000
    assert doc["forward"]["end"] == pytest.approx(doc["stored"]["end"], rel=1e-12)


def test_unknown_names_and_stores_are_one_line_errors(day: tuple[str, int], tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for args, text in (
        (["reproduce", "A0001", "--db", f"sqlite:///{tmp_path}"], "a folder, not a store file"),
        (["reproduce", "A0001", "--db", f"sqlite:///{tmp_path}/no.db"], "no such file"),
        (["reproduce", "A0001", "--db", f"sqlite:///{empty}"], "holds no marginflow store"),
        (["reproduce", "A0001", "--db", "postgresql://x@127.0.0.1:1/x"], "cannot open the store"),
        (["reproduce", "<script>", "--db", day[0]], "no margin of '<script>' is stored"),
        (["reproduce", "NOBODY", "--db", day[0]], "no margin of 'NOBODY' is stored"),
        (["explain", "[bold]x[/]", "--db", day[0], "--from", "2000-01-01"], "'[bold]x[/]'"),
        (["reproduce", "A0001", "--dir", "/nonexistent"], "no store in /nonexistent"),
        (["explain", "A0001", "--db", day[0], "--from", "yesterday"], "not a time"),
    ):
        out = subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert text in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "no.db").exists()  # reading never makes a store
