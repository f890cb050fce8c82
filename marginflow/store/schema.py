"""The store's tables at the newest migration, as SQLAlchemy Core metadata for one table
prefix. The migrations in ``migrations/versions`` build the same tables step by step (a
test compares the two); a change here goes with a new migration.

Times are UTC nanoseconds since the epoch (``BIGINT``); amounts are in the currency of the
result (``DOUBLE PRECISION``, which keeps an IEEE double exactly on both SQLite and
PostgreSQL, so a stored margin compares bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True, slots=True)
class Tables:
    """Every table of one prefix."""

    metadata: sa.MetaData
    account_margin: sa.Table
    account_margin_history: sa.Table
    member_margin_partial: sa.Table
    rejects: sa.Table
    simm_result: sa.Table
    simm_result_history: sa.Table
    risk_parameter_audit: sa.Table
    position: sa.Table
    market_event: sa.Table
    book_load: sa.Table
    book_file: sa.Table


def _margin_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("member", sa.Text, nullable=False),
        sa.Column("margin", sa.Double, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("computed_time", sa.BigInteger, nullable=False),
        # the breakdown and what the margin was computed from (migration 0002)
        sa.Column("es", sa.Double),
        sa.Column("var", sa.Double),
        sa.Column("apc", sa.Double),
        sa.Column("concentration", sa.Double),
        sa.Column("driver", sa.Text, nullable=False, server_default=""),
        sa.Column("settings", sa.Text, nullable=False, server_default=""),
        sa.Column("book_load", sa.Text, nullable=False, server_default=""),
        sa.Column("business_date", sa.Text, nullable=False, server_default=""),
    ]


def _simm_columns() -> list[sa.Column[Any]]:
    text = ("counterparty", "submission_id", "simm_version")
    return [
        *(sa.Column(name, sa.Text, nullable=False) for name in text),
        sa.Column("mpor_days", sa.Integer, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("collect_im", sa.Double, nullable=False),
        sa.Column("post_im", sa.Double, nullable=False),
        sa.Column("collect_regulation", sa.Text, nullable=False),
        sa.Column("post_regulation", sa.Text, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("breakdown", sa.Text, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("computed_time", sa.BigInteger, nullable=False),
    ]


def tables(prefix: str) -> Tables:
    """The tables of ``prefix`` (already validated by the caller)."""
    md = sa.MetaData()
    key = [sa.Column("account", sa.Text, primary_key=True)]
    account_margin = sa.Table(
        f"{prefix}account_margin",
        md,
        *key,
        sa.Column("position_version", sa.BigInteger, nullable=False),
        sa.Column("market_offset", sa.BigInteger, nullable=False),
        *_margin_columns(),
    )
    history = sa.Table(
        f"{prefix}account_margin_history",
        md,
        sa.Column("account", sa.Text, primary_key=True),
        sa.Column("position_version", sa.BigInteger, primary_key=True),
        sa.Column("market_offset", sa.BigInteger, primary_key=True),
        *_margin_columns(),
        sa.Index(f"{prefix}account_margin_history_member", "member", "event_time"),
        sa.Index(f"{prefix}account_margin_history_time", "account", "event_time"),
    )
    partial = sa.Table(
        f"{prefix}member_margin_partial",
        md,
        sa.Column("member", sa.Text, primary_key=True),
        sa.Column("source_partition", sa.Integer, primary_key=True),
        sa.Column("margin", sa.Double, nullable=False),
        sa.Column("accounts", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )
    rejects = sa.Table(
        f"{prefix}rejects",
        md,
        sa.Column("source_topic", sa.Text, primary_key=True),
        sa.Column("source_partition", sa.Integer, primary_key=True),
        sa.Column("source_offset", sa.BigInteger, primary_key=True),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )
    simm_key = ("party", "portfolio", "business_date")
    simm = sa.Table(
        f"{prefix}simm_result",
        md,
        *(sa.Column(name, sa.Text, primary_key=True) for name in simm_key),
        *_simm_columns(),
    )
    simm_history = sa.Table(
        f"{prefix}simm_result_history",
        md,
        *(sa.Column(name, sa.Text, nullable=False) for name in simm_key),
        *_simm_columns(),
        sa.PrimaryKeyConstraint(*simm_key, "source_offset"),
    )
    audit = sa.Table(
        f"{prefix}risk_parameter_audit",
        md,
        sa.Column("change_id", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("parameter", sa.Text, nullable=False),
        sa.Column("value_number", sa.Double),
        sa.Column("value_text", sa.Text),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("approved_by", sa.Text, nullable=False),
        sa.Column("effective_time", sa.BigInteger, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("source_topic", sa.Text, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("recorded_time", sa.BigInteger, nullable=False),
        sa.CheckConstraint("approved_by <> requested_by"),
    )
    position = sa.Table(
        f"{prefix}position",
        md,
        sa.Column("account", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("instrument", sa.Text, primary_key=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )
    market_event = sa.Table(
        f"{prefix}market_event",
        md,
        sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("underlying", sa.Text, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    book_load = sa.Table(
        f"{prefix}book_load",
        md,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("book", sa.Text, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("valuation_date", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("loaded_time", sa.BigInteger, nullable=False),
    )
    book_file = sa.Table(
        f"{prefix}book_file",
        md,
        sa.Column("book", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )
    return Tables(
        md,
        account_margin,
        history,
        partial,
        rejects,
        simm,
        simm_history,
        audit,
        position,
        market_event,
        book_load,
        book_file,
    )
