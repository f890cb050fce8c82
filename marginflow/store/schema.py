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
    # the service's (migration 0003)
    user: sa.Table
    api_key: sa.Table
    session: sa.Table
    audit_log: sa.Table
    parameter_proposal: sa.Table
    blob: sa.Table


MARKET_COVER = ("market_from", "market_ticks", "market_moves")
"""The columns of a margin saying what its micro-batch covered on the market topic."""


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
        # what the micro-batch that computed it covered on the market topic (0004)
        *(sa.Column(name, sa.BigInteger) for name in MARKET_COVER),
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
        # the service's live feed reads margins in the order they were computed (0003)
        sa.Index(f"{prefix}account_margin_history_computed", "computed_time"),
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
        *service_tables(md, prefix),
    )


def service_tables(md: sa.MetaData, prefix: str) -> tuple[sa.Table, ...]:
    """The service's tables (migration 0003 makes them from this same function): users,
    API keys (hashed), web sessions (ids and CSRF tokens hashed), the hash-chained audit log,
    risk-parameter proposals and encrypted blobs (uploaded CRIFs, rejected uploads,
    exports)."""
    p = prefix
    user = sa.Table(
        f"{p}user",
        md,
        sa.Column("username", sa.Text, primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False, server_default=""),
        sa.Column("member", sa.Text),  # None: a clearing-house user (sees every member)
        sa.Column("roles", sa.Text, nullable=False),  # comma-separated role names
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_time", sa.BigInteger, nullable=False),
        sa.Column("password_time", sa.BigInteger, nullable=False),
    )
    api_key = sa.Table(
        f"{p}api_key",
        md,
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("username", sa.Text, nullable=False, index=True),
        sa.Column("key_hash", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("created_time", sa.BigInteger, nullable=False),
        sa.Column("expires_time", sa.BigInteger, nullable=False),
        sa.Column("revoked_time", sa.BigInteger),
    )
    session = sa.Table(
        f"{p}session",
        md,
        sa.Column("id_digest", sa.Text, primary_key=True),
        sa.Column("username", sa.Text, nullable=False, index=True),
        sa.Column("csrf_digest", sa.Text, nullable=False),
        sa.Column("created_time", sa.BigInteger, nullable=False),
        sa.Column("expires_time", sa.BigInteger, nullable=False),
    )
    audit_log = sa.Table(
        f"{p}audit_log",
        md,
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("member", sa.Text),
        sa.Column("security", sa.Boolean, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False, server_default=""),
        sa.Column("client", sa.Text, nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
        sa.Column("prev_hash", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Index(f"{p}audit_log_time", "time"),
    )
    proposal = sa.Table(
        f"{p}parameter_proposal",
        md,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("parameter", sa.Text, nullable=False),
        sa.Column("value_number", sa.Double),
        sa.Column("value_text", sa.Text),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("proposed_by", sa.Text, nullable=False),
        sa.Column("proposed_time", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),  # proposed|approved|rejected|withdrawn
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_time", sa.BigInteger),
        sa.Column("decision_note", sa.Text, nullable=False, server_default=""),
        sa.Column("idempotency_key", sa.Text, unique=True),
        sa.CheckConstraint(
            "decided_by IS NULL OR status = 'withdrawn' OR decided_by <> proposed_by"
        ),
    )
    blob = sa.Table(
        f"{p}blob",
        md,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),  # crif-upload | crif-rejected | export
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("member", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),  # AES-GCM envelope
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_time", sa.BigInteger, nullable=False),
        sa.Index(f"{p}blob_kind", "kind", "member", "created_time"),
    )
    return user, api_key, session, audit_log, proposal, blob
