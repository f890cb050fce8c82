"""The sink's tables as they were before the store layer: margins (latest and history),
member partials, dead letters, SIMM results and the append-only risk-parameter audit.

Revision ID: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(prefix: str) -> None:
    t = prefix

    def margin() -> list[sa.Column[Any]]:
        return [
            sa.Column("member", sa.Text, nullable=False),
            sa.Column("margin", sa.Double, nullable=False),
            sa.Column("model", sa.Text, nullable=False),
            sa.Column("source_partition", sa.Integer, nullable=False),
        ]

    def times() -> list[sa.Column[Any]]:
        return [
            sa.Column("event_time", sa.BigInteger, nullable=False),
            sa.Column("computed_time", sa.BigInteger, nullable=False),
        ]

    op.create_table(
        f"{t}account_margin",
        sa.Column("account", sa.Text, primary_key=True),
        *margin(),
        sa.Column("position_version", sa.BigInteger, nullable=False),
        sa.Column("market_offset", sa.BigInteger, nullable=False),
        *times(),
    )
    op.create_table(
        f"{t}account_margin_history",
        sa.Column("account", sa.Text, primary_key=True),
        sa.Column("position_version", sa.BigInteger, primary_key=True),
        sa.Column("market_offset", sa.BigInteger, primary_key=True),
        *margin(),
        *times(),
    )
    op.create_table(
        f"{t}member_margin_partial",
        sa.Column("member", sa.Text, primary_key=True),
        sa.Column("source_partition", sa.Integer, primary_key=True),
        sa.Column("margin", sa.Double, nullable=False),
        sa.Column("accounts", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )
    op.create_table(
        f"{t}rejects",
        sa.Column("source_topic", sa.Text, primary_key=True),
        sa.Column("source_partition", sa.Integer, primary_key=True),
        sa.Column("source_offset", sa.BigInteger, primary_key=True),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )
    for name, key in (
        ("simm_result", ("party", "portfolio", "business_date")),
        ("simm_result_history", ("party", "portfolio", "business_date", "source_offset")),
    ):
        op.create_table(
            f"{t}{name}",
            *(
                sa.Column(c, sa.Text, nullable=False)
                for c in (
                    "party",
                    "portfolio",
                    "business_date",
                    "counterparty",
                    "submission_id",
                    "simm_version",
                )
            ),
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
            sa.PrimaryKeyConstraint(*key),
        )
    audit = f"{t}risk_parameter_audit"
    op.create_table(
        audit,
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
    # an audit trail is only added to: the database itself refuses UPDATE and DELETE
    message = f"{audit} is append-only"
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {audit}_no_{verb.lower()} BEFORE {verb} ON {audit} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    else:
        op.execute(
            f"CREATE OR REPLACE FUNCTION {audit}_refuse() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN RAISE EXCEPTION '{message}'; END $$"
        )
        op.execute(
            f"CREATE OR REPLACE TRIGGER {audit}_append_only BEFORE UPDATE OR DELETE "
            f"ON {audit} FOR EACH ROW EXECUTE FUNCTION {audit}_refuse()"
        )


def downgrade(prefix: str) -> None:
    raise NotImplementedError("the store is not downgraded: restore a backup instead")
