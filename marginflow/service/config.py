"""The service's settings: where its store, log and secrets are, and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything ``marginflow serve`` can vary.

    ``directory`` holds the generated secrets (``secrets/``, mode 0700) and the self-signed
    certificate; ``log`` is where approved risk-parameter changes are published
    (``embedded:///dir`` or ``kafka://host:port``; None: approvals are refused, the rest
    works). Times are seconds."""

    db_url: str
    directory: Path
    prefix: str = "mf_"
    log: str | None = None
    topic_prefix: str = "mf."
    partitions: int = 4
    session_seconds: int = 8 * 3600
    token_seconds: int = 15 * 60
    api_key_days: int = 90
    max_body: int = 1 * MiB  # any request body
    max_upload: int = 16 * MiB  # a CRIF upload
    lock_after: int = 5  # failed sign-ins in a row before the account is locked
    lock_seconds: int = 60  # the first lock; doubles with each further failure
    login_per_minute: int = 20  # sign-in attempts per client address
    heavy_per_minute: int = 60  # what-if, reproduce, explain, SIMM, export, query per user
    query_rows: int = 10_000  # the most rows an ad hoc query returns
    query_days: int = 31  # the longest time range an ad hoc query covers
    query_seconds: float = 5.0  # statement timeout of an ad hoc query (PostgreSQL)
    secure_cookies: bool = True  # False only for plain-HTTP tests
    events_poll_seconds: float = 0.5  # how often the live feed looks for new margins
