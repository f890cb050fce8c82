"""Testing endpoints that stream (server-sent events) with in-process clients.

Starlette's TestClient and schemathesis's ASGI transport wait for the whole response, and an
event stream never ends. :func:`first_bytes_of_streams` wraps the app so that a
``text/event-stream`` response ends after its first bytes (its status, headers and first
event are what a test looks at); the endpoint's task is then cancelled, as it is when a
browser goes away. Other responses pass through untouched.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVENT_STREAM = b"text/event-stream"
FIRST_BYTES_WAIT = 5.0
"""Seconds a stream may stay silent after its headers before it is cut short anyway (a
guard against a hung test, not a limit anything is measured against)."""


def first_bytes_of_streams(app: ASGIApp) -> ASGIApp:
    """``app`` with every event-stream response cut after its first non-empty chunk."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        state: dict[str, Any] = {"streaming": False, "done": False}

        async with anyio.create_task_group() as group:

            async def end(body: bytes = b"") -> None:
                state["done"] = True
                await send({"type": "http.response.body", "body": body, "more_body": False})
                group.cancel_scope.cancel()

            async def guard() -> None:
                await anyio.sleep(FIRST_BYTES_WAIT)
                if not state["done"]:
                    await end()

            async def forward(message: Message) -> None:
                if state["done"]:
                    return
                if message["type"] == "http.response.start":
                    headers = dict(message.get("headers", []))
                    state["streaming"] = headers.get(b"content-type", b"").startswith(EVENT_STREAM)
                    await send(message)
                    if state["streaming"]:
                        group.start_soon(guard)
                    return
                if state["streaming"] and message["type"] == "http.response.body":
                    if message.get("body"):
                        await end(message["body"])
                    elif not message.get("more_body", False):
                        await end()
                    return
                await send(message)

            async def run() -> None:
                await app(scope, receive, forward)
                group.cancel_scope.cancel()  # the guard, if any, has nothing left to do

            group.start_soon(run)

    return wrapped
