"""The PostgreSQL server the tests use (``MARGINFLOW_POSTGRES_DSN``, default the local
server with trust auth): a skip when none answers, a failure under CI, which starts one."""

from __future__ import annotations

import os

import pytest

POSTGRES_DSN = os.environ.get(
    "MARGINFLOW_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def postgres_or_skip() -> str:
    """The PostgreSQL DSN, or a skip (a failure under CI) when no server answers."""
    try:
        import psycopg

        psycopg.connect(POSTGRES_DSN, connect_timeout=3).close()
    except Exception as exc:  # any failure to connect means no server here
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL not reachable at {POSTGRES_DSN}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_DSN}: {exc}")
    return POSTGRES_DSN
