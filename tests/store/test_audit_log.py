"""The audit log on SQLite and PostgreSQL: the database refuses to change or remove an entry,
appends from many threads extend one chain, and a chain read back verifies."""

from __future__ import annotations

import itertools
import secrets
import threading

import pytest
import sqlalchemy as sa

from marginflow.store import Database
from marginflow.store.audit_log import GENESIS, AuditLog

KEY = secrets.token_bytes(32)


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(time=1_700_000_000_000_000_000 + i, actor=f"user{i}", action="auth.login")


@pytest.mark.parametrize(
    "statement",
    ["UPDATE {t} SET actor = 'mallory' WHERE seq = 2", "DELETE FROM {t} WHERE seq = 2"],
    ids=["update", "delete"],
)
def test_the_database_refuses_to_change_an_entry(db: Database, statement: str) -> None:
    log = AuditLog(db, KEY)
    _fill(log, 3)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), db.transaction() as conn:
        conn.execute(sa.text(statement.format(t=log.table.name)))
    assert [e.actor for e in log.entries()] == ["user0", "user1", "user2"]
    assert log.verify().ok


def test_appends_from_many_threads_extend_one_chain(db: Database) -> None:
    log = AuditLog(db, KEY)
    threads, each = 4, 25
    failures: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(each):
                log.append(time=i, actor=f"thread{k}", action="data.read", detail={"i": i})
        except BaseException as exc:  # reported below, with the thread's failure
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not failures, failures
    entries = log.entries()
    assert [e.seq for e in entries] == list(range(1, threads * each + 1))
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    result = log.verify()
    assert result.ok
    assert result.entries == threads * each
