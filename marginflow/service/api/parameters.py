"""Risk-parameter changes under four eyes: propose, approve, reject, withdraw; and the
changes the calculators applied (as the sink audited them from the log)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, Field

from marginflow.app import parameters as use
from marginflow.core.errors import ValidationError
from marginflow.service.api.models import MAX_INT64, Page, iso
from marginflow.service.auth import Caller, require
from marginflow.service.context import now_ns
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission
from marginflow.store.rows import Proposal as StoredProposal

router = APIRouter(prefix="/api/v1/parameters", tags=["risk parameters"])
Reader = Annotated[Caller, Depends(require(Permission.PARAMETERS_READ))]
Proposer = Annotated[Caller, Depends(require(Permission.PARAMETERS_PROPOSE))]
Approver = Annotated[Caller, Depends(require(Permission.PARAMETERS_APPROVE))]


class NewProposal(BaseModel):
    model: str = Field(default="es", max_length=16)
    parameter: str = Field(min_length=1, max_length=64)
    value: float | str = Field(description="a number, or text for a named choice")
    reason: str = Field(default="", max_length=2000)


class Decision(BaseModel):
    note: str = Field(default="", max_length=2000)


class Proposal(BaseModel):
    id: str
    model: str
    parameter: str
    value: float | str
    reason: str
    proposed_by: str
    proposed: str
    status: str
    decided_by: str | None
    decided: str | None
    decision_note: str

    @classmethod
    def of(cls, p: StoredProposal) -> Proposal:
        return cls(
            id=p.id,
            model=p.model,
            parameter=p.parameter,
            value=p.value,
            reason=p.reason,
            proposed_by=p.proposed_by,
            proposed=iso(p.proposed_time),
            status=p.status,
            decided_by=p.decided_by,
            decided=None if p.decided_time is None else iso(p.decided_time),
            decision_note=p.decision_note,
        )


class Applied(BaseModel):
    change_id: str
    model: str
    parameter: str
    value: float | str
    requested_by: str
    approved_by: str
    effective: str
    market_offset: int


@router.get("/proposals", response_model=Page[Proposal])
def proposals(
    caller: Reader,
    status: Annotated[str | None, Query(pattern="^(proposed|approved|rejected|withdrawn)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0,
) -> Page[Proposal]:
    rows = caller.ctx.proposals.list(status=status, limit=limit, offset=offset)
    total = caller.ctx.proposals.count(status=status)
    return Page[Proposal](
        items=[Proposal.of(p) for p in rows], total=total, limit=limit, offset=offset
    )


@router.get("/proposals/{proposal_id}", response_model=Proposal)
def proposal(proposal_id: str, caller: Reader) -> Proposal:
    found = caller.ctx.proposals.get(proposal_id)
    if found is None:
        raise ServiceError(404, f"no proposal {proposal_id!r}", field="proposal_id")
    return Proposal.of(found)


@router.post("/proposals", response_model=Proposal, status_code=201)
def propose(
    form: NewProposal,
    caller: Proposer,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> Proposal:
    """Propose a change of one margin-model parameter. It takes effect only when someone
    else with the approver role approves it. ``Idempotency-Key`` makes a retry safe."""
    now = now_ns()
    made = use.propose(
        caller.ctx.proposals,
        model=form.model,
        parameter=form.parameter,
        value=form.value,
        reason=form.reason,
        by=caller.username,
        now=now,
        idempotency_key=None if idempotency_key is None else f"{caller.username}:{idempotency_key}",
    )
    if made.proposed_time != now:  # a client's retry: the proposal made the first time
        return Proposal.of(made)
    caller.audit(
        "parameters.proposed",
        subject=made.id,
        security=True,
        detail={"model": made.model, "parameter": made.parameter, "value": made.value},
    )
    return Proposal.of(made)


def _decide(caller: Caller, proposal_id: str, approve: bool, note: str) -> Proposal:
    action = "parameters.approved" if approve else "parameters.rejected"
    try:
        done = use.decide(
            caller.ctx.proposals,
            proposal_id,
            approve=approve,
            by=caller.username,
            now=now_ns(),
            note=note,
            producer=caller.ctx.producer(),
            topology=caller.ctx.topology,
        )
    except use.FourEyesError as exc:
        caller.audit(
            action,
            subject=proposal_id,
            outcome="refused",
            security=True,
            detail={"reason": exc.reason},
        )
        raise ServiceError(403, exc.reason, field=exc.field) from None
    except use.DecidedError as exc:
        raise ServiceError(409, exc.reason, field=exc.field) from None
    except ValidationError as exc:
        raise ServiceError(404, exc.reason, field="proposal_id") from None
    caller.audit(
        action,
        subject=done.id,
        security=True,
        detail={"parameter": done.parameter, "value": done.value, "proposed_by": done.proposed_by},
    )
    return Proposal.of(done)


@router.post("/proposals/{proposal_id}/approve", response_model=Proposal)
def approve(proposal_id: str, form: Decision, caller: Approver) -> Proposal:
    """Approve a proposal (not your own): the change is published on the log and the
    calculators apply it in order with the market data."""
    return _decide(caller, proposal_id, True, form.note)


@router.post("/proposals/{proposal_id}/reject", response_model=Proposal)
def reject(proposal_id: str, form: Decision, caller: Approver) -> Proposal:
    return _decide(caller, proposal_id, False, form.note)


@router.post("/proposals/{proposal_id}/withdraw", response_model=Proposal)
def withdraw(proposal_id: str, caller: Proposer) -> Proposal:
    """Take back your own proposal while it awaits a decision."""
    try:
        done = use.withdraw(caller.ctx.proposals, proposal_id, by=caller.username, now=now_ns())
    except use.DecidedError as exc:
        raise ServiceError(409, exc.reason, field=exc.field) from None
    except ValidationError as exc:
        raise ServiceError(404, exc.reason, field="proposal_id") from None
    caller.audit("parameters.withdrawn", subject=proposal_id, security=True)
    return Proposal.of(done)


@router.get("/applied", response_model=list[Applied])
def applied(caller: Reader) -> list[Applied]:
    """The changes the calculators applied, in log order (the sink's audit of the log)."""
    return [
        Applied(
            change_id=c.change_id,
            model=c.model,
            parameter=c.parameter,
            value=c.value,
            requested_by=c.requested_by,
            approved_by=c.approved_by,
            effective=iso(c.effective_time),
            market_offset=c.source_offset,
        )
        for c in caller.ctx.db.risk_parameter_audit()
    ]
