"""The audit trail: entries (a member's auditor-facing view is not offered: the trail is
the clearing house's) and a verification of the chain."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from marginflow.service.api.models import MAX_INT64, Page, iso
from marginflow.service.auth import Caller, require
from marginflow.service.roles import Permission
from marginflow.store.rows import AuditEntry

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Auditor = Annotated[Caller, Depends(require(Permission.AUDIT))]


class Entry(BaseModel):
    seq: int
    time: str
    actor: str
    action: str
    outcome: str
    subject: str
    member: str | None
    security: bool
    request_id: str
    client: str
    detail: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, e: AuditEntry) -> Entry:
        return cls(
            seq=e.seq,
            time=iso(e.time),
            actor=e.actor,
            action=e.action,
            outcome=e.outcome,
            subject=e.subject,
            member=e.member,
            security=e.security,
            request_id=e.request_id,
            client=e.client,
            detail=json.loads(e.detail),
            hash=e.hash,
        )


class Verified(BaseModel):
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: list[str]


@router.get("/entries", response_model=Page[Entry])
def entries(
    caller: Auditor,
    action: Annotated[str | None, Query(max_length=64)] = None,
    member: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_INT64, description="entries before this seq")
    ] = None,
) -> Page[Entry]:
    """Newest first; page back with ``before`` (the last seq seen)."""
    log = caller.ctx.audit
    rows = log.entries(
        member=member, action=action, before_seq=before, descending=True, limit=limit
    )
    caller.audit("audit.read", security=True, detail={"action": action, "member": member})
    return Page[Entry](
        items=[Entry.of(e) for e in rows],
        total=log.count(member=member, action=action),
        limit=limit,
        offset=0,
    )


@router.get("/verify", response_model=Verified)
def verify(caller: Auditor) -> Verified:
    """Walk the chain now: every altered, removed or reordered entry is named."""
    v = caller.ctx.audit.verify()
    caller.audit("audit.verified", outcome="ok" if v.ok else "broken", security=True)
    return Verified(
        ok=v.ok,
        entries=v.entries,
        head_seq=v.head_seq,
        head_hash=v.head_hash,
        problems=[str(p) for p in v.problems],
    )
