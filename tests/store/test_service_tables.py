"""The service's tables on both databases: lockout with backoff, sessions and keys,
proposals decided once (a race between two approvers has one winner, a retried proposal is
stored once, no one decides their own), and blobs kept as given."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from marginflow.store import Database
from marginflow.store.access import Access
from marginflow.store.blobs import Blobs
from marginflow.store.proposals import Proposals
from marginflow.store.rows import ApiKey, Blob, Proposal, WebSession

S = 1_000_000_000


def _proposal(pid: str, key: str | None = None) -> Proposal:
    return Proposal(
        id=pid,
        model="es",
        parameter="confidence",
        value=0.995,
        reason="committee 2026-12",
        proposed_by="ann",
        proposed_time=1,
        status="proposed",
        idempotency_key=key,
    )


def test_a_lock_starts_at_the_fifth_failure_and_doubles(db: Database) -> None:
    access = Access(db)
    access.add_user("ann", password_hash="h", roles=["risk-analyst"], member=None, now=0)
    locks = []
    for _ in range(7):
        user = access.record_failure("ann", now=100 * S, lock_after=5, lock_ns=60 * S)
        locks.append(user.locked_until)
    assert locks[:4] == [0, 0, 0, 0]
    assert [x - 100 * S for x in locks[4:]] == [60 * S, 120 * S, 240 * S]
    access.record_success("ann")
    user = access.user("ann")
    assert user is not None
    assert (user.failed_logins, user.locked_until) == (0, 0)


def test_sessions_expire_and_keys_revoke(db: Database) -> None:
    access = Access(db)
    access.add_session(WebSession("d1", "ann", "c1", 0, 10 * S))
    assert access.session("d1", now=5 * S) is not None
    assert access.session("d1", now=10 * S) is None
    access.add_api_key(ApiKey("k1", "ann", "sha256:x", "ci", 0, 10 * S))
    assert access.revoke_api_key("k1", now=1)
    assert not access.revoke_api_key("k1", now=2)  # once
    key = access.api_key("k1")
    assert key is not None
    assert key.revoked_time == 1


def test_a_retried_proposal_is_stored_once(db: Database) -> None:
    proposals = Proposals(db)
    first = proposals.add(_proposal("RP-1", key="ann:abc"))
    again = proposals.add(_proposal("RP-2", key="ann:abc"))
    assert again.id == first.id == "RP-1"
    assert proposals.count() == 1
    assert proposals.get("RP-1") == first


def test_two_approvers_racing_have_one_winner(db: Database) -> None:
    proposals = Proposals(db)
    proposals.add(_proposal("RP-9"))
    results: list[object] = []
    barrier = threading.Barrier(2)

    def approve(who: str) -> None:
        barrier.wait()
        results.append(proposals.decide("RP-9", status="approved", by=who, now=5))

    threads = [threading.Thread(target=approve, args=(w,)) for w in ("bob", "cat")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r is None for r in results) == [False, True]


def test_no_one_decides_their_own_proposal_even_past_the_service(db: Database) -> None:
    Proposals(db).add(_proposal("RP-5"))
    t = db.t.parameter_proposal
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as conn:
        conn.execute(
            sa.update(t).where(t.c.id == "RP-5").values(status="approved", decided_by="ann")
        )


def test_blobs_keep_their_bytes(db: Database) -> None:
    blobs = Blobs(db)
    content = bytes(range(256)) * 3
    blobs.put(Blob("B1", "export", "ann", "M001", "a.csv", "text/csv", 10, "k", content, "{}", 1))
    got = blobs.get("B1")
    assert got is not None
    assert got.content == content
    assert [b.id for b in blobs.list(kind="export", member="M001")] == ["B1"]
    assert blobs.list(member="M002") == []


def test_a_read_left_unfinished_does_not_freeze_later_reads(tmp_path: object) -> None:
    """A SELECT whose cursor outlives its connection (kept by a traceback, say) must not
    leave later reads seeing the store as it was then (SQLite: its snapshot lived on in a
    pooled connection)."""
    from pathlib import Path

    db = Database(f"sqlite:///{Path(str(tmp_path)) / 'fresh.db'}", prefix="f_")
    access = Access(db)
    for name in ("ann", "bob"):
        access.add_user(name, password_hash="old", roles=["auditor"], member=None, now=0)
    with db.engine.connect() as conn:
        kept = conn.execute(sa.select(db.t.user))
        kept.fetchone()  # one of two rows read: the statement is still running
    other = Database(db.url, prefix="f_", upgrade=False)  # another process, in effect
    Access(other).set_password("ann", "new", now=1)
    user = access.user("ann")
    assert user is not None
    assert user.password_hash == "new"
    assert kept is not None
    other.close()
    db.close()
