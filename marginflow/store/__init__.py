"""The store: what the platform computed and everything it was computed from, so any
stored margin can be read back, reproduced and explained without the log.

SQLAlchemy over SQLite (embedded) and PostgreSQL (production), the schema kept by Alembic
migrations (``marginflow/store/migrations``); reads return the typed rows of
:mod:`marginflow.store.rows`. The stream's sink writes through it; the use cases of
:mod:`marginflow.app` and the service read it.
"""

from marginflow.store.database import Database, check_prefix, migrate, revision
from marginflow.store.rows import (
    AuditedChange,
    BookLoad,
    MarketRecord,
    MemberMargin,
    MemberPartial,
    PositionChange,
    Reject,
    SimmLine,
    StoredMargin,
    StoredSimm,
)

__all__ = [
    "AuditedChange",
    "BookLoad",
    "Database",
    "MarketRecord",
    "MemberMargin",
    "MemberPartial",
    "PositionChange",
    "Reject",
    "SimmLine",
    "StoredMargin",
    "StoredSimm",
    "check_prefix",
    "migrate",
    "revision",
]
