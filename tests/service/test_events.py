"""The live feed: what a stream sends as margins are stored (in arrival order, newest per
account, late ones once), member totals as they change, and only what the caller's scope
holds. The stream itself is driven in Chromium by the browser tests."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from marginflow.service.api.events import LATE_NS, MOST_EVENTS, Feed, frame
from marginflow.service.roles import Role
from marginflow.service.scope import Principal, Scope
from marginflow.store import Database, StoredMargin
from tests.service.conftest import Service

S = 1_000_000_000


@pytest.fixture
def db(demo_dir: Path, tmp_path: Path) -> Iterator[Database]:
    """A private copy of the demo's store (these tests add margins to it)."""
    copy = tmp_path / "margins.db"
    with sqlite3.connect(demo_dir / "margins.db") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    database = Database(f"sqlite:///{copy}")
    yield database
    database.close()


def scope_of(db: Database, member: str | None) -> Scope:
    roles = frozenset({Role.MEMBER_USER if member else Role.OPERATIONS})
    return Scope(db, Principal("someone", roles, member, "session"))


def events(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in frames:
        lines = f.decode().strip().split("\n")
        assert lines[0].startswith("event: ")
        assert lines[1].startswith("data: ")
        assert len(lines) == 2
        out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def store(db: Database, like: StoredMargin, **changes: Any) -> StoredMargin:
    row = dataclasses.replace(like, **changes)
    with db.transaction() as conn:
        conn.execute(sa.insert(db.t.account_margin_history), dataclasses.asdict(row))
    return row


def latest_of(db: Database, member: str) -> StoredMargin:
    return db.current_margins(member=member, limit=1)[0][0]


def test_a_frame_is_one_event_line_and_one_json_line() -> None:
    f = frame("margin", {"account": "A\n\ndata: forged", "margin": 1.5})
    assert f.count(b"\n") == 3
    assert f.endswith(b"\n\n")
    assert events([f]) == [("margin", {"account": "A\n\ndata: forged", "margin": 1.5})]


def test_only_what_is_stored_after_the_stream_opened_is_sent(db: Database) -> None:
    feed = Feed(scope_of(db, None))
    assert feed.poll() == []
    m = latest_of(db, "M001")
    new = store(
        db,
        m,
        market_offset=m.market_offset + 1000,
        computed_time=feed.cursor.computed_time + S,
        margin=m.margin * 1.1,
    )
    sent = events(feed.poll())
    assert sent == [("margin", sent[0][1])]
    assert sent[0][1]["account"] == m.account
    assert sent[0][1]["member"] == "M001"
    assert sent[0][1]["margin"] == pytest.approx(new.margin)
    assert sent[0][1]["time"].endswith("+00:00")
    assert feed.poll() == []


def test_a_member_is_sent_its_own_accounts_only(db: Database) -> None:
    mine, theirs = Feed(scope_of(db, "M001")), Feed(scope_of(db, None))
    t = max(mine.cursor.computed_time, theirs.cursor.computed_time) + S
    a, b = latest_of(db, "M001"), latest_of(db, "M002")
    store(db, a, market_offset=a.market_offset + 1000, computed_time=t)
    store(db, b, market_offset=b.market_offset + 1000, computed_time=t)
    assert [d["account"] for _, d in events(mine.poll())] == [a.account]
    assert sorted(d["account"] for _, d in events(theirs.poll())) == sorted([a.account, b.account])


def test_a_margin_stored_late_is_sent_once(db: Database) -> None:
    feed = Feed(scope_of(db, None))
    a, b = latest_of(db, "M001"), latest_of(db, "M002")
    t = feed.cursor.computed_time
    store(db, a, market_offset=a.market_offset + 1000, computed_time=t + 2 * S)
    assert [d["account"] for _, d in events(feed.poll())] == [a.account]
    # computed before the one just sent, stored after it (a slower partition's sink)
    store(db, b, market_offset=b.market_offset + 1000, computed_time=t + S)
    assert [d["account"] for _, d in events(feed.poll())] == [b.account]
    assert feed.poll() == []
    # too late to be news: older than the window the feed looks back over
    store(db, b, market_offset=b.market_offset + 2000, computed_time=t + 2 * S - LATE_NS - S)
    assert feed.poll() == []


def test_the_newest_margin_of_an_account_is_sent_once_per_poll(db: Database) -> None:
    feed = Feed(scope_of(db, None))
    a = latest_of(db, "M001")
    t = feed.cursor.computed_time + S
    store(db, a, market_offset=a.market_offset + 1000, computed_time=t, margin=1.0)
    store(db, a, market_offset=a.market_offset + 1001, computed_time=t, margin=2.0)
    sent = events(feed.poll())
    assert [(d["account"], d["margin"]) for _, d in sent] == [(a.account, 2.0)]


def test_many_accounts_at_once_ask_the_page_to_read_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("marginflow.service.api.events.MOST_EVENTS", 1)
    feed = Feed(scope_of(db, None))
    t = feed.cursor.computed_time + S
    for member in ("M001", "M002"):
        m = latest_of(db, member)
        store(db, m, market_offset=m.market_offset + 1000, computed_time=t)
    sent = events(feed.poll())
    assert [e for e, _ in sent] == ["resync"]
    assert MOST_EVENTS > 1


def test_member_totals_are_sent_when_they_change(db: Database) -> None:
    member_feed, house_feed = Feed(scope_of(db, "M001")), Feed(scope_of(db, None))
    p = db.t.member_margin_partial
    with db.transaction() as conn:
        conn.execute(
            sa.update(p)
            .where(p.c.member == "M001", p.c.source_partition == 0)
            .values(margin=p.c.margin + 1000.0)
        )
    total = {m.member: m.margin for m in db.member_margins()}
    [(kind, sent)] = events(member_feed.poll())
    assert kind == "member"
    assert sent == {
        "member": "M001",
        "margin": pytest.approx(total["M001"]),
        "accounts": sent["accounts"],
        "firm": None,
    }
    [(_, firm)] = events(house_feed.poll())
    assert firm["firm"] == pytest.approx(sum(total.values()))
    assert member_feed.poll() == []


def test_the_feed_needs_a_signed_in_reader(service: Service) -> None:
    anonymous = service.client().get("/api/v1/events/margins")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    admin = service.client("admin").get("/api/v1/events/margins")
    assert admin.status_code == 403
    assert admin.json()["error"]["reason"] == "your roles do not allow read"
