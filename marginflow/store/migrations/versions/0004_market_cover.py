"""What a margin's micro-batch covered on the market topic: the first market offset it read
(``market_from``; the margin's ``market_offset`` is the last), the price and vol ticks among
them and the underlying moves they were coalesced into. Null in margins stored before.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from marginflow.store.schema import MARKET_COVER

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(prefix: str) -> None:
    for table in (f"{prefix}account_margin", f"{prefix}account_margin_history"):
        for name in MARKET_COVER:
            op.add_column(table, sa.Column(name, sa.BigInteger))


def downgrade(prefix: str) -> None:
    raise NotImplementedError("the store is not downgraded: restore a backup instead")
