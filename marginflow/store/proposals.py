"""Risk-parameter proposals: a change proposed by one person waits here until a different
person approves or rejects it (four eyes). A decision is a conditional update (only a
proposal still ``proposed`` can be decided), so two approvers racing on two replicas cannot
both decide it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from marginflow.store.database import Database
from marginflow.store.rows import Proposal

STATUSES = ("proposed", "approved", "rejected", "withdrawn")


def _proposal(row: Any) -> Proposal:
    v = dict(row._mapping)
    number, text = v.pop("value_number"), v.pop("value_text")
    v["value"] = text if number is None else float(number)
    return Proposal(**v)


class Proposals:
    """The proposals of one store."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = db.t.parameter_proposal

    def add(self, proposal: Proposal) -> Proposal:
        """Store ``proposal``; with an idempotency key already used, the proposal stored
        under it is returned instead (a client's retry)."""
        if proposal.idempotency_key is not None:
            found = self.by_key(proposal.idempotency_key)
            if found is not None:
                return found
        v = {name: getattr(proposal, name) for name in proposal.__slots__ if name != "value"}
        number = isinstance(proposal.value, float | int) and not isinstance(proposal.value, bool)
        v["value_number"] = float(proposal.value) if number else None
        v["value_text"] = None if number else str(proposal.value)
        try:
            with self.db.transaction() as conn:
                conn.execute(sa.insert(self.table), v)
        except sa.exc.IntegrityError:
            if proposal.idempotency_key is not None:
                found = self.by_key(proposal.idempotency_key)
                if found is not None:
                    return found
            raise
        return proposal

    def get(self, proposal_id: str) -> Proposal | None:
        t = self.table
        rows = self.db._rows(sa.select(t).where(t.c.id == proposal_id))
        return _proposal(rows[0]) if rows else None

    def by_key(self, key: str) -> Proposal | None:
        t = self.table
        rows = self.db._rows(sa.select(t).where(t.c.idempotency_key == key))
        return _proposal(rows[0]) if rows else None

    def list(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Proposal]:
        t = self.table
        query = sa.select(t)
        if status is not None:
            query = query.where(t.c.status == status)
        query = query.order_by(t.c.proposed_time.desc(), t.c.id).limit(limit).offset(offset)
        return [_proposal(r) for r in self.db._rows(query)]

    def count(self, *, status: str | None = None) -> int:
        t = self.table
        query = sa.select(sa.func.count()).select_from(t)
        if status is not None:
            query = query.where(t.c.status == status)
        return int(self.db._rows(query)[0][0])

    def decide(
        self, proposal_id: str, *, status: str, by: str, now: int, note: str = ""
    ) -> Proposal | None:
        """Move a ``proposed`` proposal to ``status``; None if it was no longer proposed
        (someone decided it first) or does not exist."""
        t = self.table
        with self.db.transaction() as conn:
            done = conn.execute(
                sa.update(t)
                .where(t.c.id == proposal_id, t.c.status == "proposed")
                .values(status=status, decided_by=by, decided_time=now, decision_note=note)
            )
        return self.get(proposal_id) if done.rowcount else None
