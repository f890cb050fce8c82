"""What makes a stored margin traceable: each margin's breakdown, the fingerprints of the
settings and book load it used and its business date; the positions of every account at
every version; every market-topic event in log order; the start-of-day book loads (the
files the calculators read) and their settings.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(prefix: str) -> None:
    t = prefix
    for table in (f"{t}account_margin", f"{t}account_margin_history"):
        for name in ("es", "var", "apc", "concentration"):
            op.add_column(table, sa.Column(name, sa.Double))
        for name in ("driver", "settings", "book_load", "business_date"):
            op.add_column(table, sa.Column(name, sa.Text, nullable=False, server_default=""))
    history = f"{t}account_margin_history"
    op.create_index(f"{history}_member", history, ["member", "event_time"])
    op.create_index(f"{history}_time", history, ["account", "event_time"])
    op.create_table(
        f"{t}position",
        sa.Column("account", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("instrument", sa.Text, primary_key=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )
    op.create_table(
        f"{t}market_event",
        sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("underlying", sa.Text, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        f"{t}book_load",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("book", sa.Text, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("valuation_date", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("loaded_time", sa.BigInteger, nullable=False),
    )
    op.create_table(
        f"{t}book_file",
        sa.Column("book", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )


def downgrade(prefix: str) -> None:
    raise NotImplementedError("the store is not downgraded: restore a backup instead")
