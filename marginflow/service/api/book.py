"""Members, accounts, positions and stored margins (now, over time, by member and firm),
each list pageable, filterable and exportable."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from marginflow.service.api.models import (
    MAX_INT64,
    Firm,
    Margin,
    Member,
    MemberAt,
    Page,
    Position,
    Positions,
)
from marginflow.service.auth import Caller, require
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission
from marginflow.service.tables import Format, export

router = APIRouter(prefix="/api/v1", tags=["book and margins"])
Reader = Annotated[Caller, Depends(require(Permission.READ))]
Limit = Annotated[int, Query(ge=1, le=1000, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]
Fmt = Annotated[Format, Query(description="json, or csv / parquet to download (audited)")]
When = Annotated[dt.datetime | None, Query(description="ISO 8601 time; UTC if no offset is given")]
MARGIN_COLUMNS = list(Margin.model_fields)


def ns(moment: dt.datetime | None, field: str) -> int | None:
    """An ISO time as UTC nanoseconds (naive means UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        value = int(moment.timestamp() * 1_000_000) * 1000
    except (OverflowError, OSError, ValueError):
        value = None
    # Times are stored as signed 64-bit nanoseconds (1677-09-21 to 2262-04-11 UTC).
    if value is None or not -(2**63) <= value < 2**63:
        raise ServiceError(422, "time out of range (1678 to 2262)", field=field)
    return value


def _margins_out(
    caller: Caller, rows: list[Margin], total: int, limit: int, offset: int, fmt: Format, name: str
) -> Page[Margin] | Response:
    if fmt is Format.JSON:
        return Page[Margin](items=rows, total=total, limit=limit, offset=offset)
    data: list[dict[str, Any]] = [r.model_dump() for r in rows]
    return export(caller, data, columns=MARGIN_COLUMNS, fmt=fmt, name=name, subject=name)


@router.get("/members", response_model=list[Member])
def members(caller: Reader) -> list[Member]:
    """The members in your scope with their current margin (sum of their accounts')."""
    return [Member.of(m) for m in caller.scope.members()]


@router.get("/members/{member}", response_model=Member)
def member(member: str, caller: Reader) -> Member:
    return Member.of(caller.scope.member_margin(member))


@router.get("/members/{member}/margin-at", response_model=MemberAt)
def member_margin_at(member: str, caller: Reader, at: When = None) -> MemberAt:
    """The member's margin in force at ``at`` (default now): each account's latest by then."""
    moment = at or dt.datetime.now(dt.UTC)
    when = ns(moment, "at")
    assert when is not None
    total, rows = caller.scope.member_margin_at(member, when)
    return MemberAt(
        member=member, at=moment.isoformat(), margin=total, accounts=[Margin.of(m) for m in rows]
    )


@router.get("/firm", response_model=Firm)
def firm(caller: Reader) -> Firm:
    """The clearing house's total margin and every member's (house users only)."""
    total = caller.scope.firm()
    if total is None:
        raise ServiceError(403, "the firm total is for clearing-house users")
    return Firm(margin=total, members=[Member.of(m) for m in caller.scope.members()])


@router.get("/accounts", response_model=Page[Margin])
def accounts(
    caller: Reader,
    member: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Fmt = Format.JSON,
) -> Page[Margin] | Response:
    """Accounts in your scope with their current margin, by account id."""
    rows, total = caller.scope.accounts(member=member, limit=limit, offset=offset)
    return _margins_out(
        caller, [Margin.of(m) for m in rows], total, limit, offset, format, "accounts"
    )


@router.get("/accounts/{account}", response_model=Margin)
async def account(account: str, caller: Reader) -> Margin:
    """The account's current margin with its breakdown."""
    return Margin.of(await caller.ctx.read(caller.scope.account, account))


@router.get("/accounts/{account}/positions", response_model=Positions)
def positions(
    account: str,
    caller: Reader,
    version: Annotated[int | None, Query(ge=0, le=MAX_INT64)] = None,
) -> Positions:
    """The account's holdings at position ``version`` (default: its latest margin's)."""
    current = caller.scope.account(account)
    held = caller.scope.positions(account, version)
    caller.privileged_read("positions", account, current.member)
    return Positions(
        account=account,
        member=current.member,
        version=current.position_version if version is None else version,
        positions=[Position(instrument=i, quantity=q) for i, q in sorted(held.items())],
    )


@router.get("/margins", response_model=Page[Margin])
async def margin_history(
    caller: Reader,
    account: Annotated[str | None, Query(max_length=64)] = None,
    member: Annotated[str | None, Query(max_length=64)] = None,
    business_date: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    start: Annotated[dt.datetime | None, Query(alias="from")] = None,
    end: Annotated[dt.datetime | None, Query(alias="to")] = None,
    newest_first: bool = False,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Fmt = Format.JSON,
) -> Page[Margin] | Response:
    """Stored margins over time (every result the stream produced), filtered by account,
    member, business date and time range, in event-time order."""
    rows, total = await caller.ctx.read(
        caller.scope.margin_history,
        account=account,
        member=member,
        business_date=business_date,
        start=ns(start, "from"),
        end=ns(end, "to"),
        limit=limit,
        offset=offset,
        newest_first=newest_first,
    )
    margins = [Margin.of(m) for m in rows]
    if format is Format.JSON:
        return Page[Margin](items=margins, total=total, limit=limit, offset=offset)
    return await run_in_threadpool(  # an export writes an encrypted copy and the audit
        _margins_out, caller, margins, total, limit, offset, format, "margins"
    )


class Instrument(BaseModel):
    instrument: str
    underlying: str


@router.get("/instruments", response_model=Page[Instrument])
def instruments(
    caller: Reader,
    underlying: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[Instrument]:
    """The series of the latest start-of-day load (reference data: the same for every
    member), by id, optionally on one underlying."""
    from marginflow.store.loads import stored_instruments

    loads = caller.ctx.db.book_loads()
    of = stored_instruments(caller.ctx.db, loads[-1]) if loads else {}
    rows = sorted((i, u) for i, u in of.items() if underlying is None or u == underlying)
    page = rows[offset : offset + limit]
    return Page[Instrument](
        items=[Instrument(instrument=i, underlying=u) for i, u in page],
        total=len(rows),
        limit=limit,
        offset=offset,
    )
