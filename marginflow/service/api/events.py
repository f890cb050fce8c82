"""The live feed: margins as they are stored, as Server-Sent Events, for the caller's scope.

``GET /api/v1/events/margins`` (``text/event-stream``) sends

* ``event: margin`` with a stored margin (the :class:`~marginflow.service.api.models.Margin`
  body: account, member, margin, time and the breakdown) for each account whose margin was
  stored since the last poll, the newest per account;
* ``event: member`` with ``{member, margin, accounts, firm}`` whenever a member's total
  changes (``firm`` is the clearing house's total, null for a member's user);
* ``event: resync`` with ``{reason}`` when more accounts changed in one poll than the feed
  sends one by one: the page reads the API again instead;
* a comment line every ~15 s, so proxies keep the connection open; the caller's session
  or token is checked again then, so signing out (or expiry) ends the stream.

The store is polled every ``config.events_poll_seconds``. Margins are read in arrival order
(:meth:`~marginflow.service.scope.Scope.margin_arrivals`) from the newest stored when the
stream opened, and the last few seconds are read again each poll for a margin a slower
partition stored late.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from marginflow.service.api.models import Margin
from marginflow.service.auth import Caller, authenticate, require
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission
from marginflow.service.scope import ArrivalKey, Scope, arrival_key
from marginflow.store import StoredMargin

router = APIRouter(prefix="/api/v1/events", tags=["live feed"])
Reader = Annotated[Caller, Depends(require(Permission.READ))]

HEARTBEAT_SECONDS = 15.0
LATE_NS = 5 * 1_000_000_000  # how far back each poll looks again for late-stored margins
BATCH = 2000  # the most margins read per query
MOST_EVENTS = 500  # accounts changed in one poll beyond which the page is told to resync
RETRY_MS = 3000  # the browser's reconnection delay


def frame(event: str, data: Any) -> bytes:
    """One SSE message; the JSON body is one line, so no field can break the framing."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Feed:
    """What one stream has sent: the arrival cursor, the keys of the margins sent in the
    last :data:`LATE_NS`, and each member's total as last sent."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.cursor = scope.last_arrival()
        self.recent: dict[ArrivalKey, None] = {}
        self._late()  # what was stored just before the stream opened is not news
        self.totals = {m.member: (m.margin, m.accounts) for m in scope.members()}

    def _late_floor(self) -> ArrivalKey:
        return ArrivalKey(max(0, self.cursor.computed_time - LATE_NS), "", -1, -1)

    def poll(self) -> list[bytes]:
        """The messages for what was stored since the last poll (runs in a thread)."""
        arrived = self._late() + self._new()
        floor = self._late_floor()
        self.recent = {k: None for k in self.recent if k > floor}
        out: list[bytes] = []
        newest: dict[str, StoredMargin] = {}
        for m in arrived:
            held = newest.get(m.account)
            if held is None or _version(m) >= _version(held):
                newest[m.account] = m
        if len(newest) > MOST_EVENTS:
            out.append(frame("resync", {"reason": f"{len(newest)} accounts changed"}))
        else:
            out += [frame("margin", Margin.of(m).model_dump()) for m in newest.values()]
        return out + self._members()

    def _new(self) -> list[StoredMargin]:
        rows = self.scope.margin_arrivals(after=self.cursor, limit=BATCH)
        for m in rows:
            self.recent[arrival_key(m)] = None
        if rows:
            self.cursor = arrival_key(rows[-1])
        return rows

    def _late(self) -> list[StoredMargin]:
        rows = self.scope.margin_arrivals(after=self._late_floor(), upto=self.cursor, limit=BATCH)
        late = [m for m in rows if arrival_key(m) not in self.recent]
        for m in late:
            self.recent[arrival_key(m)] = None
        return late

    def _members(self) -> list[bytes]:
        now = {m.member: (m.margin, m.accounts) for m in self.scope.members()}
        changed = [m for m, v in now.items() if self.totals.get(m) != v]
        self.totals = now
        if not changed:
            return []
        firm = sum(v[0] for v in now.values()) if self.scope.principal.house else None
        return [
            frame(
                "member",
                {"member": m, "margin": now[m][0], "accounts": now[m][1], "firm": firm},
            )
            for m in sorted(changed)
        ]


def _version(m: StoredMargin) -> tuple[int, int, int]:
    return (m.event_time, m.position_version, m.market_offset)


def _still_signed_in(request: Request) -> bool:
    try:
        authenticate(request)
    except ServiceError:
        return False
    return True


async def stream(request: Request, feed: Feed, poll_seconds: float) -> AsyncIterator[bytes]:
    """Poll ``feed`` until the client goes away or its credentials stop being valid."""
    yield f"retry: {RETRY_MS}\n: live margins\n\n".encode()
    beat = time.monotonic()
    while True:
        if await request.is_disconnected():
            return
        for message in await run_in_threadpool(feed.poll):
            yield message
        if time.monotonic() - beat >= HEARTBEAT_SECONDS:
            if not await run_in_threadpool(_still_signed_in, request):
                yield frame("signed-out", {"reason": "the session ended: sign in again"})
                return
            beat = time.monotonic()
            yield b": heartbeat\n\n"
        await anyio.sleep(poll_seconds)


@router.get(
    "/margins",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"}},
)
async def margins(request: Request, caller: Reader) -> StreamingResponse:
    """Margins and member totals as they are stored, for your scope, as Server-Sent
    Events (``margin``, ``member``, ``resync``; a comment every 15 s)."""
    feed = await run_in_threadpool(Feed, caller.scope)
    return StreamingResponse(
        stream(request, feed, caller.ctx.config.events_poll_seconds),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},  # no proxy buffering: events go out at once
    )
