"""Recomputing use cases over a stored margin: the full breakdown with the scenario P&L
distribution, what-if margin for hypothetical trades (series not yet listed defined
inline), reproduce and explain. Each calls the same ``marginflow.app`` function as the CLI;
they recompute, so they count against the caller's rate of heavy requests."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from marginflow.app.explain import explain as explain_change
from marginflow.app.inspect import Listing, account_detail, what_if
from marginflow.app.reproduce import reproduce_margin
from marginflow.margin.base import Breakdown
from marginflow.service.api.book import ns
from marginflow.service.api.models import MAX_INT64, Margin, Position
from marginflow.service.auth import Caller, heavy, require
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission

router = APIRouter(prefix="/api/v1", tags=["analysis"])
Reader = Annotated[Caller, Depends(require(Permission.READ))]
Planner = Annotated[Caller, Depends(require(Permission.WHAT_IF))]
Explainer = Annotated[Caller, Depends(require(Permission.EXPLAIN))]
When = Annotated[dt.datetime | None, Query(description="ISO 8601; UTC if no offset")]


class Contribution(BaseModel):
    instrument: str
    quantity: float
    amount: float


class BreakdownOut(BaseModel):
    """Components of the margin (book currency), the driving scenario and its loss, and
    each position's Euler share of the ES (shares add up to the ES; negative: a hedge)."""

    components: dict[str, float]
    driving_scenario: str | None
    driving_loss: float | None
    contributions: list[Contribution]

    @classmethod
    def of(cls, b: Breakdown) -> BreakdownOut:
        return cls(
            components={k: float(v) for k, v in b.components.items()},
            driving_scenario=b.driving_scenario,
            driving_loss=b.driving_loss,
            contributions=[
                Contribution(instrument=c.instrument, quantity=c.quantity, amount=c.amount)
                for c in b.top_positions
            ],
        )


class ScenarioOut(BaseModel):
    label: str
    pnl: float
    tail_share: float


class Detail(BaseModel):
    """A stored margin recomputed: breakdown, every scenario's P&L (profit positive) with
    its share of the ES tail (> 0 inside the tail), and the positions."""

    margin: Margin
    confidence: float
    breakdown: BreakdownOut
    scenarios: list[ScenarioOut]
    positions: list[Position]


class TradeIn(BaseModel):
    instrument: str = Field(min_length=1, max_length=64)
    quantity: float = Field(allow_inf_nan=False, ge=-1e9, le=1e9)


class ListingIn(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    underlying: str = Field(min_length=1, max_length=32)
    kind: str = Field(pattern="^(call|put|future|equity)$")
    strike: float | None = Field(default=None, gt=0, le=1e9, allow_inf_nan=False)
    expiry: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    style: str = Field(default="american", pattern="^(american|european)$")
    multiplier: float = Field(default=100.0, gt=0, le=1e6, allow_inf_nan=False)


class WhatIfIn(BaseModel):
    trades: list[TradeIn] = Field(min_length=1, max_length=200)
    listings: list[ListingIn] = Field(default_factory=list, max_length=20)


class WhatIfOut(BaseModel):
    account: str
    member: str
    before: float
    after: float
    change: float
    breakdown_after: BreakdownOut


def _recompute(caller: Caller, request: Request, fn: Any) -> Any:
    heavy(request, caller)
    ctx = caller.ctx
    with ctx.engine_lock:
        return fn(ctx.engines)


@router.get("/accounts/{account}/detail", response_model=Detail)
def detail(account: str, request: Request, caller: Reader, at: When = None) -> Detail:
    """The account's margin (in force at ``at``, default the latest) recomputed with every
    position's contribution and the P&L under every scenario."""
    stored = caller.scope.margin(account, at=ns(at, "at"))
    caller.privileged_read("scenario P&L", account, stored.member)
    found = _recompute(
        caller, request, lambda cache: account_detail(caller.ctx.db, stored, cache=cache)
    )
    return Detail(
        margin=Margin.of(stored),
        confidence=found.confidence,
        breakdown=BreakdownOut.of(found.margin.breakdown),
        scenarios=[
            ScenarioOut(label=s.label, pnl=s.pnl, tail_share=s.tail_share) for s in found.scenarios
        ],
        positions=[Position(instrument=i, quantity=q) for i, q in sorted(found.positions.items())],
    )


@router.post("/accounts/{account}/what-if", response_model=WhatIfOut)
def what_if_margin(account: str, form: WhatIfIn, request: Request, caller: Planner) -> WhatIfOut:
    """The account's margin now and if ``trades`` were added (nothing is booked). A series
    not yet listed is defined in ``listings`` and can then be traded here."""
    stored = caller.scope.account(account)
    listings = [Listing(**x.model_dump()) for x in form.listings]
    trades = [(t.instrument, t.quantity) for t in form.trades]
    result = _recompute(
        caller,
        request,
        lambda cache: what_if(caller.ctx.db, stored, trades, listings=listings, cache=cache),
    )
    caller.audit("margin.what_if", subject=account, detail={"trades": len(trades)})
    return WhatIfOut(
        account=result.account,
        member=result.member,
        before=result.before,
        after=result.after,
        change=result.change,
        breakdown_after=BreakdownOut.of(result.breakdown_after),
    )


@router.get("/accounts/{account}/reproduce")
def reproduce(
    account: str,
    request: Request,
    caller: Explainer,
    version: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
    at: When = None,
) -> dict[str, Any]:
    """Recompute a stored margin from the store alone and compare it bit for bit
    (``ok`` false names each difference)."""
    stored = caller.scope.margin(account, version=version, at=ns(at, "at"))

    def run(cache: dict[str, Any]) -> Any:
        from marginflow.app.inspect import inputs_for

        return reproduce_margin(caller.ctx.db, stored, inputs_for(caller.ctx.db, stored, cache))

    out: dict[str, Any] = _recompute(caller, request, run).to_json()
    return out


@router.get("/explain/{subject}")
def explain(
    subject: str,
    request: Request,
    caller: Explainer,
    start: Annotated[dt.datetime, Query(alias="from")],
    end: Annotated[dt.datetime | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """Split the change of an account's or member's margin between two times into trades,
    market and risk parameters, in both orders."""
    scope = caller.scope
    if not (scope.sees_member(subject) and caller.ctx.db.member_margins(subject)):
        scope.account(subject)  # an account in scope, or 404
    t0 = ns(start, "from") or 0
    t1 = ns(end or dt.datetime.now(dt.UTC), "to") or 0
    if t1 <= t0:
        raise ServiceError(422, "must be after from", field="to")
    out: dict[str, Any] = _recompute(
        caller, request, lambda _: explain_change(caller.ctx.db, subject, t0, t1)
    ).to_json()
    return out
