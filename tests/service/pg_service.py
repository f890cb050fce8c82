"""The service over PostgreSQL: the demo day's stored results copied from the SQLite store
into fresh tables (a prefix of their own), the app over them and its first-run users, for
the tests that are about the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from marginflow.service.app import create_app
from marginflow.service.bootstrap import first_run_users
from marginflow.store import Database
from tests.postgres import postgres_or_skip
from tests.service.conftest import Service, service_config

COPIED = (
    "account_margin",
    "account_margin_history",
    "member_margin_partial",
    "position",
    "simm_result",
    "simm_result_history",
)


def copy_results(source: Database, target: Database) -> None:
    """The stream's stored results of ``source`` into ``target`` (same schema)."""
    for name in COPIED:
        rows = [dict(r._mapping) for r in source._rows(sa.select(getattr(source.t, name)))]
        if rows:
            with target.transaction() as conn:
                conn.execute(sa.insert(getattr(target.t, name)), rows)


@contextmanager
def postgres_service(sqlite: Service, directory: Path) -> Iterator[Service]:
    """``sqlite``'s data and users in PostgreSQL (skips when no server answers)."""
    dsn = postgres_or_skip()
    config = service_config(
        sqlite.directory,
        db_url=dsn,
        prefix=f"s{uuid.uuid4().hex[:8]}_",
        directory=directory / "service",
    )
    app = create_app(config)
    ctx = app.state.ctx
    try:
        copy_results(sqlite.app.state.ctx.db, ctx.db)
        made = first_run_users(ctx, sqlite.members, simm_party="BANK-A")
        yield Service(app, directory, {c.username: c for c in made}, list(sqlite.members))
    finally:
        ctx.db.drop()
        ctx.close()
