"""One error body for every failure the API answers:

``{"error": {"status": 404, "code": "not_found", "field": "account", "reason": "...",
"request_id": "..."}}``

``field`` names the input at fault (a path or query parameter, a body field, a CRIF column)
or is null; ``reason`` is one line for a person; ``request_id`` is the id the log lines of
the request carry. A 5xx says only that something failed and names the request id: the
detail is in the log, never in the response.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from marginflow.core.errors import MarginflowError, ValidationError
from marginflow.service.logs import log, request_id
from marginflow.service.scope import NotFoundError

CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class ServiceError(Exception):
    """A refusal the API answers with ``status``."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.reason, self.field, self.headers = status, reason, field, headers
        super().__init__(reason)


def body(status: int, reason: str, field: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "status": status,
            "code": CODES.get(status, "error"),
            "field": field,
            "reason": reason,
            "request_id": request_id(),
        }
    }


def respond(
    status: int, reason: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body(status, reason, field), status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or None


def install(app: FastAPI) -> None:
    """Answer every error with the one body."""

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        return respond(exc.status, exc.reason, exc.field, exc.headers)

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, exc: NotFoundError) -> JSONResponse:
        return respond(404, f"no {exc.field} {exc.value!r}", exc.field)

    @app.exception_handler(ValidationError)
    async def _invalid(_: Request, exc: ValidationError) -> JSONResponse:
        return respond(422, exc.reason, exc.field)

    @app.exception_handler(MarginflowError)
    async def _refused(_: Request, exc: MarginflowError) -> JSONResponse:
        return respond(422, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = tuple(first.get("loc", ()))
        field = _location(loc) or ("body" if loc[:1] == ("body",) else None)
        reason = str(first.get("msg", "invalid request"))
        if first.get("type") == "json_invalid":
            # loc names the character where parsing stopped, not a field
            where = loc[1] if len(loc) > 1 else "?"
            why = str((first.get("ctx") or {}).get("error", "")) or reason
            field, reason = "body", f"not valid JSON at character {where}: {why}"
        return respond(422, reason, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error")
        return respond(exc.status_code, reason, None, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"event": "error"})
        return respond(500, "the request failed; quote its request id to the operators")
