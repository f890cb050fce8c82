"""The tamper-evident audit log: append-only entries, each sealed by an HMAC-SHA256 over its
own fields and the previous entry's seal.

Why a keyed chain: a plain hash chain shows an edit only to someone who kept a copy of a
later hash, since whoever can write the table can recompute every hash after an edit. With
the seal keyed by a secret the database never sees (the service's ``audit.key``), an edit,
a removal or a reordering cannot be re-sealed by someone holding the database alone, and
``verify`` names the first entry where the chain breaks. Removing the newest entries leaves
a chain that is still whole; ``verify`` catches that against an *anchor* (the sequence
number and seal of the newest entry at a previous check, kept outside the database) and
the JSON log lines that carry every entry's seal to the SIEM.

Appends are serialised (PostgreSQL: an advisory lock held by the transaction; SQLite: its
write lock), so two service replicas extend one chain without forking it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from marginflow.store.database import Database
from marginflow.store.rows import AuditEntry

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""

_SEALED = (
    "seq",
    "time",
    "actor",
    "action",
    "outcome",
    "subject",
    "member",
    "security",
    "request_id",
    "client",
    "detail",
    "prev_hash",
)


def canonical(detail: Mapping[str, Any]) -> str:
    """``detail`` as the JSON text the seal covers (sorted keys, no spaces, ASCII)."""
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def seal(key: bytes, fields: Mapping[str, Any]) -> str:
    """The HMAC-SHA256 (hex) of an entry's sealed fields, previous seal included."""
    text = json.dumps([fields[name] for name in _SEALED], separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Problem:
    """Where the chain breaks: the entry's sequence number and what is wrong."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of :meth:`AuditLog.verify`."""

    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """The audit log of one store, sealed with ``key``."""

    def __init__(self, db: Database, key: bytes) -> None:
        self.db, self.key = db, key
        self.table = db.t.audit_log

    def append(
        self,
        *,
        time: int,
        actor: str,
        action: str,
        outcome: str = "ok",
        subject: str = "",
        member: str | None = None,
        security: bool = False,
        request_id: str = "",
        client: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Seal and append one entry (its own transaction); returns it as stored."""
        t = self.table
        with self.db.transaction() as conn:
            if conn.dialect.name == "postgresql":
                lock = zlib.crc32(f"marginflow-audit:{t.name}".encode())
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
            last = conn.execute(sa.select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1))
            head = last.first()
            fields: dict[str, Any] = {
                "seq": 1 if head is None else int(head.seq) + 1,
                "time": int(time),
                "actor": actor,
                "action": action,
                "outcome": outcome,
                "subject": subject,
                "member": member,
                "security": bool(security),
                "request_id": request_id,
                "client": client,
                "detail": canonical(detail or {}),
                "prev_hash": GENESIS if head is None else str(head.hash),
            }
            fields["hash"] = seal(self.key, fields)
            conn.execute(sa.insert(t), fields)
        return AuditEntry(**fields)

    def entries(
        self,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int | None = None,
        member: str | None = None,
        action: str | None = None,
        descending: bool = False,
    ) -> list[AuditEntry]:
        """Entries by sequence number (``member``: only those about that member)."""
        t = self.table
        query = sa.select(t).where(t.c.seq > after_seq)
        if before_seq is not None:
            query = query.where(t.c.seq < before_seq)
        if member is not None:
            query = query.where(t.c.member == member)
        if action is not None:
            query = query.where(t.c.action == action)
        query = query.order_by(t.c.seq.desc() if descending else t.c.seq)
        if limit is not None:
            query = query.limit(limit)
        return [_entry(r) for r in self.db._rows(query)]

    def count(self, *, member: str | None = None, action: str | None = None) -> int:
        t = self.table
        query = sa.select(sa.func.count()).select_from(t)
        if member is not None:
            query = query.where(t.c.member == member)
        if action is not None:
            query = query.where(t.c.action == action)
        return int(self.db._rows(query)[0][0])

    def _all(self, batch: int = 10_000) -> Iterator[AuditEntry]:
        after = -(2**62)
        while True:
            t = self.table
            query = sa.select(t).where(t.c.seq > after).order_by(t.c.seq).limit(batch)
            rows = [_entry(r) for r in self.db._rows(query)]
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1].seq

    def verify(self, *, anchor: tuple[int, str] | None = None) -> Verification:
        """Walk the chain and name every entry where it breaks: an entry whose fields no
        longer match its seal (altered), a gap in the sequence or a ``prev_hash`` that is
        not the previous entry's seal (removed or reordered). ``anchor`` (seq, seal) from an
        earlier check catches the newest entries removed."""
        problems: list[Problem] = []
        prev_seq, prev_hash, count = 0, GENESIS, 0
        seals: dict[int, str] = {}
        for e in self._all():
            count += 1
            fields = {name: getattr(e, name) for name in _SEALED}
            if not hmac.compare_digest(seal(self.key, fields), e.hash):
                problems.append(Problem(e.seq, "altered: its fields do not match its seal"))
            if e.seq != prev_seq + 1:
                if e.seq <= prev_seq:
                    why = f"out of order: follows entry {prev_seq}"
                else:
                    gap = f"{prev_seq + 1}" + (f"-{e.seq - 1}" if e.seq - 1 > prev_seq + 1 else "")
                    why = f"entries {gap} before it were removed"
                problems.append(Problem(e.seq, why))
            elif e.prev_hash != prev_hash:
                problems.append(
                    Problem(e.seq, f"does not follow entry {prev_seq}: removed or reordered")
                )
            seals[e.seq] = e.hash
            prev_seq, prev_hash = e.seq, e.hash
        if anchor is not None:
            seq, want = anchor
            if seq > prev_seq:
                problems.append(
                    Problem(seq, f"removed: the log ends at entry {prev_seq}, the anchor at {seq}")
                )
            elif seals.get(seq) != want:
                problems.append(Problem(seq, "does not match the anchor's seal"))
        return Verification(count, prev_seq, prev_hash, tuple(problems))


def _entry(row: Any) -> AuditEntry:
    v = dict(row._mapping)
    v["security"] = bool(v["security"])
    return AuditEntry(**v)
