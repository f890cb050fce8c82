"""Alembic's environment for the store: run programmatically by
:func:`marginflow.store.database.migrate`, which passes the connection and the table prefix
in ``config.attributes``; each table prefix keeps its own version table."""

from __future__ import annotations

from alembic import context

config = context.config
prefix: str = config.attributes["prefix"]
context.configure(
    connection=config.attributes["connection"],
    version_table=f"{prefix}alembic_version",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations(prefix=prefix)
