"""ASGI middleware: a request id on every request and log line, the security headers
(a strict Content-Security-Policy: scripts and styles only from this origin, nothing
inline), refusing oversized bodies with 413 before they are read, and the Prometheus
request-latency histogram per route template with one access log line per request."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marginflow.service.errors import body
from marginflow.service.logs import log, reset_request_id, set_request_id

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "marginflow_http_request_seconds",
            "Request latency by route template, method and status class",
            ("route", "method", "status"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.security = Counter(
            "marginflow_http_refused_total",
            "Requests refused (401, 403, 413, 429) by route template and status",
            ("route", "status"),
            registry=self.registry,
        )


def route_of(app: Any, scope: Scope) -> str:
    """The route template serving ``scope`` (``/api/v1/accounts/{account}``), so metrics
    have one series per route, not per account."""
    # The app's routes hold included routers, whose own routes are reached through their
    # contexts; never fall back to the request's path (one series per account, and ids in a
    # public document).
    for route in iter_route_contexts(getattr(app, "routes", ())):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(route.path or "unmatched")
    return "unmatched"


class ServiceMiddleware:
    """Request id, security headers, body limit, metrics and access log, in one pass."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        router: Any,
        metrics: Metrics,
        max_body: int,
        max_upload: int,
        hsts: bool,
    ) -> None:
        self.app, self.router, self.metrics = app, router, metrics
        self.max_body, self.max_upload, self.hsts = max_body, max_upload, hsts

    def _limit(self, path: str) -> int:
        return self.max_upload if path.endswith("/simm/uploads") else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        rid = given if _ID.fullmatch(given) else uuid.uuid4().hex
        token = set_request_id(rid)
        started = time.perf_counter()
        status = 500
        limit = self._limit(scope["path"])

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                extra = [*_HEADERS, (b"x-request-id", rid.encode())]
                if self.hsts:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                if scope["path"].startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        async def refuse_413() -> None:
            payload = json.dumps(body(413, _too_large(limit))).encode()
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})

        try:
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await refuse_413()
                return
            seen = 0

            async def counted() -> Message:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise _TooLargeError(limit)
                return message

            try:
                await self.app(scope, counted, send_with_headers)
            except _TooLargeError:
                await refuse_413()
        finally:
            seconds = time.perf_counter() - started
            # the router records the route it chose in the scope; match again only for a
            # request refused before routing (413)
            matched = scope.get("route")
            route = str(matched.path) if matched is not None else route_of(self.router, scope)
            method = scope.get("method", "")
            self.metrics.latency.labels(route, method, f"{status // 100}xx").observe(seconds)
            if status in (401, 403, 413, 429):
                self.metrics.security.labels(route, str(status)).inc()
            if route not in ("/healthz", "/readyz", "/metrics"):
                log.info(
                    "request",
                    extra={
                        "event": "http.request",
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "ms": round(seconds * 1000, 3),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
            reset_request_id(token)


class _TooLargeError(HTTPException):
    """A chunked body ran past the limit while being read. An HTTPException, so that
    FastAPI, reading the body for an endpoint, passes it on as it is (any other exception
    there becomes a 400) and the one error body answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit), headers={"connection": "close"})


def _too_large(limit: int) -> str:
    return f"the request body is over the limit of {limit} bytes"
