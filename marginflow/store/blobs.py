"""Files the service keeps (uploaded CRIFs, the uploads it refused, exports), stored as
AES-GCM envelopes made by the service; the store never sees a plaintext or a key."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from marginflow.store.database import Database
from marginflow.store.rows import Blob


def _blob(row: Any) -> Blob:
    v = dict(row._mapping)
    v["content"] = bytes(v["content"])
    return Blob(**v)


class Blobs:
    """The blobs of one store."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = db.t.blob

    def put(self, blob: Blob) -> None:
        with self.db.transaction() as conn:
            conn.execute(sa.insert(self.table), {n: getattr(blob, n) for n in blob.__slots__})

    def get(self, blob_id: str) -> Blob | None:
        t = self.table
        rows = self.db._rows(sa.select(t).where(t.c.id == blob_id))
        return _blob(rows[0]) if rows else None

    def list(
        self, *, kind: str | None = None, member: str | None = None, limit: int = 100
    ) -> list[Blob]:
        """Newest first; ``member`` None lists every member's."""
        t = self.table
        query = sa.select(t)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        if member is not None:
            query = query.where(t.c.member == member)
        query = query.order_by(t.c.created_time.desc(), t.c.id).limit(limit)
        return [_blob(r) for r in self.db._rows(query)]

    def replace_content(self, blob_id: str, content: bytes, key_id: str) -> None:
        """Swap in a re-encrypted envelope (key rotation)."""
        t = self.table
        with self.db.transaction() as conn:
            conn.execute(
                sa.update(t).where(t.c.id == blob_id).values(content=content, key_id=key_id)
            )
