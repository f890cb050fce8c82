"""The service's tables: users, API keys and web sessions (secrets kept only hashed), the
hash-chained audit log (append-only: triggers refuse UPDATE and DELETE), risk-parameter
proposals awaiting a second person's approval, and encrypted blobs (uploaded CRIFs, the
uploads refused, exports).

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from marginflow.store.schema import service_tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MESSAGE = "the audit log is append-only"


def upgrade(prefix: str) -> None:
    bind = op.get_bind()
    md = sa.MetaData()
    for table in service_tables(md, prefix):
        table.create(bind)
    history = f"{prefix}account_margin_history"
    op.create_index(f"{history}_computed", history, ["computed_time"])
    log = f"{prefix}audit_log"
    if bind.dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {log}_no_{verb.lower()} BEFORE {verb} ON {log} "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
    else:
        op.execute(
            f"CREATE OR REPLACE FUNCTION {log}_refuse() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$"
        )
        op.execute(
            f"CREATE OR REPLACE TRIGGER {log}_append_only BEFORE UPDATE OR DELETE "
            f"ON {log} FOR EACH ROW EXECUTE FUNCTION {log}_refuse()"
        )


def downgrade(prefix: str) -> None:
    raise NotImplementedError("the store is not downgraded: restore a backup instead")
