"""Structured logs a SIEM can ingest: one JSON object per line on standard error, each with
the time (UTC, ISO 8601), level, logger, message, the request id of the request being
served (from a context variable, so every line a request causes carries it) and, for
security events (sign-ins and their failures, denials, lockouts, changes of risk parameters,
users or keys, exports), ``"security": true`` and an ``event`` name."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import Any

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

log = logging.getLogger("marginflow.service")
security_log = logging.getLogger("marginflow.service.security")

# uvicorn's ``color_message`` repeats the message with ANSI colour escapes: not for a SIEM
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def request_id() -> str:
    """The id of the request being served ("" outside one)."""
    return _request_id.get()


def set_request_id(value: str) -> contextvars.Token[str]:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str]) -> None:
    _request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; extra fields given with ``extra=`` are kept."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: int = logging.INFO) -> None:
    """Send the service's and the server's logs to standard error as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("marginflow", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our access line carries more


def security_event(event: str, message: str, **fields: Any) -> None:
    """Log a security event (marked for the SIEM)."""
    security_log.warning(message, extra={"security": True, "event": event, **fields})
