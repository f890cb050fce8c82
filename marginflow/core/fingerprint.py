"""Fingerprints: the SHA-256 of a value's canonical form, so equal inputs name themselves
alike in every process and on every machine (what a stored margin was computed from)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def fingerprint(doc: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``doc`` as canonical JSON: keys sorted, no blanks, floats by their
    shortest round-trip text. Equal documents give equal fingerprints, whatever the order
    of their keys."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def files_fingerprint(files: Mapping[str, bytes]) -> str:
    """SHA-256 (hex) of a set of files (name -> content): each name and length, then its
    bytes, in name order, so no two different sets share a stream of hashed bytes."""
    h = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        h.update(f"{name}\0{len(content)}\0".encode())
        h.update(content)
    return h.hexdigest()
