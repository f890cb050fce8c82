"""The files the service keeps, sealed: an uploaded CRIF, an upload it refused, an export.

Each is one row of the store's blob table holding an AES-GCM envelope
(:mod:`marginflow.service.crypto`). The envelope's associated data is ``<kind>:<id>``
(:func:`context_of`), so a blob copied into another row, or relabelled as another kind,
fails to open. The key id travels in the envelope *and* in the row's ``key_id``, so
:func:`reencrypt_all` finds the blobs still under an old key without opening any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from marginflow.service.crypto import Keyring, decrypt, encrypt, envelope_kid, reencrypt
from marginflow.store import Database
from marginflow.store.blobs import Blobs
from marginflow.store.rows import Blob


def context_of(kind: str, blob_id: str) -> bytes:
    """The associated data that seals blob ``blob_id`` of ``kind`` (``export:EXP-…``,
    ``crif-upload:CRIF-…``, ``crif-rejected:CRIF-…``)."""
    return f"{kind}:{blob_id}".encode()


def seal(
    blobs: Blobs,
    keyring: Keyring,
    *,
    blob_id: str,
    kind: str,
    owner: str,
    member: str | None,
    name: str,
    content_type: str,
    data: bytes,
    detail: dict[str, Any],
    created_time: int,
) -> Blob:
    """Encrypt ``data`` under the current data key and store it with ``detail`` (JSON)."""
    blob = Blob(
        id=blob_id,
        kind=kind,
        owner=owner,
        member=member,
        name=name,
        content_type=content_type,
        size=len(data),
        key_id=keyring.current.kid,
        content=encrypt(keyring, data, context=context_of(kind, blob_id)),
        detail=json.dumps(detail, allow_nan=False),
        created_time=created_time,
    )
    blobs.put(blob)
    return blob


def open_blob(keyring: Keyring, blob: Blob) -> bytes:
    """The plaintext of ``blob`` (DecryptionError if it was altered, moved or its key is
    gone)."""
    return decrypt(keyring, blob.content, context=context_of(blob.kind, blob.id))


@dataclass(frozen=True, slots=True)
class Reencrypted:
    """What :func:`reencrypt_all` did: blobs in the store, moved to the current key."""

    blobs: int
    moved: int
    key_id: str


def reencrypt_all(db: Database, keyring: Keyring, *, batch: int = 100) -> Reencrypted:
    """Seal again, under ``keyring``'s current key, every blob still under an older one.

    One blob at a time (a blob is up to an upload's size), each in its own transaction:
    an interrupted run leaves every blob readable and a second run finishes the job. A
    blob that fails to open stops the run with its DecryptionError naming the key, since
    re-encrypting around it would hide the damage."""
    t = db.t.blob
    blobs = Blobs(db)
    current = keyring.current.kid
    moved = 0
    while True:
        ids = [
            r[0]
            for r in db._rows(
                sa.select(t.c.id).where(t.c.key_id != current).order_by(t.c.id).limit(batch)
            )
        ]
        if not ids:
            break
        for blob_id in ids:
            blob = blobs.get(blob_id)
            if blob is None:  # removed meanwhile
                continue
            sealed = reencrypt(keyring, blob.content, context=context_of(blob.kind, blob.id))
            blobs.replace_content(blob.id, sealed, envelope_kid(sealed))
            moved += 1
    total = int(db._rows(sa.select(sa.func.count()).select_from(t))[0][0])
    return Reencrypted(total, moved, current)
