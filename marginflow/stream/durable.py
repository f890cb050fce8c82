"""Small durable files, checksummed: the one CRC (CRC32C, as Kafka's record batches use),
JSON documents that carry their own checksum, and an atomic replace that leaves nothing
half-written behind when the disk is full or read-only.

A checked JSON file is still JSON (``jq .data`` reads it)::

    {"crc32c":"0a1b2c3d","data":<the document, compact>}

The checksum covers the exact bytes of the document, so any byte changed anywhere in the
file is detected: in the document by the checksum, in the frame by the frame check.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import google_crc32c

from marginflow.core.errors import (
    MSG_BAD_CHECKSUM,
    MSG_OLD_FORMAT,
    MSG_WRITE_FAILED,
    DamagedFileError,
    MarginflowError,
)

_JSON_HEAD = b'{"crc32c":"'
_JSON_MID = b'","data":'
_JSON_DOC = len(_JSON_HEAD) + 8 + len(_JSON_MID)  # where the document starts


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data``; hardware-accelerated where the CPU has it."""
    return int(google_crc32c.value(data))


def checked_json(document: Any) -> bytes:
    """``document`` as a checked JSON file's bytes."""
    doc = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return _JSON_HEAD + b"%08x" % crc32c(doc) + _JSON_MID + doc + b"}"


def load_checked_json(
    path: Path, raw: bytes, error: type[DamagedFileError] = DamagedFileError
) -> Any:
    """The document of a checked JSON file's bytes ``raw``; ``error`` naming ``path`` and
    the byte if anything in it was changed."""
    if not raw.startswith(_JSON_HEAD):
        with contextlib.suppress(ValueError):
            json.loads(raw)  # plain JSON: a file of format 1, before checksums
            raise error(path, 0, MSG_OLD_FORMAT.format(found=1, expected=2))
        raise error(path, 0, "not a checksummed marginflow file")
    if raw[_JSON_DOC - len(_JSON_MID) : _JSON_DOC] != _JSON_MID:
        raise error(path, len(_JSON_HEAD), "bad checksum field")
    if not raw.endswith(b"}"):
        raise error(path, max(len(raw) - 1, 0), "truncated")
    doc = raw[_JSON_DOC:-1]
    try:
        stated = int(raw[len(_JSON_HEAD) : len(_JSON_HEAD) + 8], 16)
    except ValueError:
        raise error(path, len(_JSON_HEAD), "bad checksum field") from None
    if crc32c(doc) != stated:
        raise error(path, _JSON_DOC, MSG_BAD_CHECKSUM)
    try:
        return json.loads(doc)
    except ValueError as exc:  # a checksum that matches a document we never wrote
        raise error(path, _JSON_DOC, f"not JSON ({exc})") from None


def write_failed(path: Path, exc: OSError, error: type[MarginflowError]) -> MarginflowError:
    """The one-line error of a failed write (ENOSPC, EROFS, EACCES, EFBIG, ...)."""
    reason = exc.strerror or str(exc)
    return error(MSG_WRITE_FAILED.format(path=path, reason=reason))


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (a rename is durable only once its entry is on disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, parts: list[bytes], *, sync: bool, error: type[MarginflowError]
) -> None:
    """Replace ``path`` with ``parts`` joined: written to a temporary file, fsynced (if
    ``sync``), renamed over ``path``, and the directory fsynced. A failure (a full or
    read-only disk) removes the temporary file and raises ``error`` naming ``path``; the
    old file is then untouched."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            with open(tmp, "wb") as f:
                for part in parts:
                    f.write(part)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # on a read-only disk there is none
                tmp.unlink()
            raise
        if sync:
            fsync_path(path.parent)
    except OSError as exc:
        raise write_failed(path, exc, error) from exc
