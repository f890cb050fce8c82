"""Encryption at rest for uploaded CRIFs and exports: AES-256-GCM in a small envelope.

Envelope (all of it stored as one blob)::

    b"MFE1"            4 bytes   magic and format version
    kid length         1 byte    n, 1..64
    kid                n bytes   ASCII id of the data key that sealed the blob
    nonce              12 bytes  random, fresh for every encryption
    ciphertext + tag   rest      AES-256-GCM output, the 16-byte tag last

Why these choices:

* **AES-256-GCM** is authenticated: a changed byte anywhere in the ciphertext, tag or
  nonce, or a key id pointing at another key, fails to open instead of decrypting to
  garbage. Random 96-bit nonces are safe for far more blobs (2^32 per key) than a
  service stores between rotations.
* **The caller's context is the associated data** (for example ``b"crif-upload:<id>"``):
  it is authenticated but not stored, so a blob copied into another record's row fails to
  open there, which a ciphertext alone cannot prevent.
* **The key id travels in the blob** so the keyring can rotate: the newest key seals,
  every key that ever sealed stays in the ring and opens its blobs, and :func:`reencrypt`
  moves a blob to the newest key when old keys are to be retired.
* Keys come from ``MARGINFLOW_DATA_KEYS`` (``kid:base64key,…``, newest last: for a secret
  manager that injects environment variables) or else from a key file of mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from marginflow.core.errors import ConfigurationError, DecryptionError
from marginflow.service._files import read_private, write_private

MAGIC = b"MFE1"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
ENV_VAR = "MARGINFLOW_DATA_KEYS"

# Letters, digits and . _ - only: a kid must survive the "kid:key,kid:key" variable and logs.
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")

MSG_BAD_MAGIC = "not a marginflow encrypted blob (bad magic)"
MSG_TRUNCATED = "encrypted blob is truncated"
MSG_BAD_KID = "encrypted blob has a malformed key id"
MSG_UNKNOWN_KID = "encrypted with data key {kid!r}, which is not in the keyring"
MSG_AUTHENTICATION = (
    "authentication failed with data key {kid!r}: the blob was altered or belongs to "
    "another context"
)


@dataclass(frozen=True, slots=True)
class DataKey:
    """One AES-256 key (32 bytes) named ``kid``."""

    kid: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KID.fullmatch(self.kid):
            raise ConfigurationError(
                f"data key id {self.kid!r} must be 1 to 64 letters, digits, '.', '_' or '-'"
            )
        if len(self.key) != KEY_BYTES:
            raise ConfigurationError(
                f"data key {self.kid!r} is {len(self.key)} bytes, need {KEY_BYTES}"
            )

    @classmethod
    def generate(cls) -> DataKey:
        """A fresh random key with a random 16-hex-digit id."""
        return cls(secrets.token_hex(8), AESGCM.generate_key(bit_length=256))


@dataclass(frozen=True, slots=True)
class Keyring:
    """Data keys, oldest first: the newest encrypts, any of them decrypts its own blobs."""

    keys: tuple[DataKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigurationError("a keyring needs at least one data key")
        kids = [key.kid for key in self.keys]
        if len(set(kids)) != len(kids):
            raise ConfigurationError("keyring: a data key id appears twice")

    @classmethod
    def generate(cls) -> Keyring:
        """A keyring of one fresh key."""
        return cls((DataKey.generate(),))

    @property
    def current(self) -> DataKey:
        """The key that encrypts (the newest)."""
        return self.keys[-1]

    def find(self, kid: str) -> DataKey | None:
        """The key named ``kid``, or ``None``."""
        return next((key for key in self.keys if key.kid == kid), None)

    def rotated(self) -> Keyring:
        """A keyring with a fresh key appended; no key is dropped, old blobs stay readable."""
        while True:
            fresh = DataKey.generate()
            if self.find(fresh.kid) is None:
                return Keyring((*self.keys, fresh))


def encrypt(keyring: Keyring, plaintext: bytes, *, context: bytes) -> bytes:
    """Seal ``plaintext`` with the current key; ``context`` must be given again to open it."""
    key = keyring.current
    kid = key.kid.encode("ascii")
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(key.key).encrypt(nonce, plaintext, context)
    return MAGIC + bytes([len(kid)]) + kid + nonce + sealed


def envelope_kid(blob: bytes) -> str:
    """The id of the data key ``blob`` names (DecryptionError if the envelope is malformed)."""
    return _parse(blob)[0]


def _parse(blob: bytes) -> tuple[str, bytes, bytes]:
    if blob[: len(MAGIC)] != MAGIC:
        raise DecryptionError(MSG_BAD_MAGIC)
    start = len(MAGIC) + 1
    if len(blob) < start:
        raise DecryptionError(MSG_TRUNCATED)
    end = start + blob[len(MAGIC)]
    try:
        kid = blob[start:end].decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError(MSG_BAD_KID) from None
    if not _KID.fullmatch(kid):
        raise DecryptionError(MSG_BAD_KID)
    if len(blob) < end + NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(MSG_TRUNCATED, kid=kid)
    return kid, blob[end : end + NONCE_BYTES], blob[end + NONCE_BYTES :]


def decrypt(keyring: Keyring, blob: bytes, *, context: bytes) -> bytes:
    """Open a blob from :func:`encrypt` with the same ``context``; DecryptionError otherwise."""
    kid, nonce, sealed = _parse(blob)
    key = keyring.find(kid)
    if key is None:
        raise DecryptionError(MSG_UNKNOWN_KID.format(kid=kid), kid=kid)
    try:
        return AESGCM(key.key).decrypt(nonce, sealed, context)
    except InvalidTag:
        raise DecryptionError(MSG_AUTHENTICATION.format(kid=kid), kid=kid) from None


def reencrypt(keyring: Keyring, blob: bytes, *, context: bytes) -> bytes:
    """``blob`` opened with the key it names and sealed again with the current key."""
    return encrypt(keyring, decrypt(keyring, blob, context=context), context=context)


def _decode_key(text: str) -> bytes:
    # Standard base64 with padding, as write_key_file and `openssl rand -base64 32` produce.
    return base64.b64decode(text.strip(), validate=True)


def _from_env(value: str) -> Keyring:
    if not value.strip():
        raise ConfigurationError(f"{ENV_VAR} is set but empty")
    keys = []
    for number, item in enumerate(value.split(","), start=1):
        kid, colon, encoded = item.strip().partition(":")
        try:
            if not colon:
                raise ValueError
            key = _decode_key(encoded)
        except (ValueError, binascii.Error):
            # Never echo the value: it is key material.
            raise ConfigurationError(
                f"{ENV_VAR}: item {number} is not kid:base64key (comma-separated, newest last)"
            ) from None
        try:
            keys.append(DataKey(kid, key))
        except ConfigurationError as error:
            raise ConfigurationError(f"{ENV_VAR}: {error}") from None
    try:
        return Keyring(tuple(keys))
    except ConfigurationError as error:
        raise ConfigurationError(f"{ENV_VAR}: {error}") from None


def _from_file(path: Path) -> Keyring:
    raw = read_private(path)
    try:
        items = json.loads(raw)["keys"]
        if not isinstance(items, list):
            raise TypeError
        pairs = [(item["kid"], item["key"]) for item in items]
        if not all(isinstance(kid, str) and isinstance(key, str) for kid, key in pairs):
            raise TypeError
        decoded = [(kid, _decode_key(key)) for kid, key in pairs]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise ConfigurationError(
            f'{path}: not of the form {{"keys": [{{"kid": ..., "key": base64}}]}}'
        ) from None
    try:
        return Keyring(tuple(DataKey(kid, key) for kid, key in decoded))
    except ConfigurationError as error:
        raise ConfigurationError(f"{path}: {error}") from None


def load_keyring(*, env: Mapping[str, str], key_file: Path | None) -> Keyring:
    """The data keys from ``env[MARGINFLOW_DATA_KEYS]`` if set, else from ``key_file``.

    ConfigurationError in one line naming the variable or the file when a value is
    malformed, a key is not 32 bytes, the file is missing or group/others may read it.
    """
    if ENV_VAR in env:
        return _from_env(env[ENV_VAR])
    if key_file is None:
        raise ConfigurationError(f"no data keys: set {ENV_VAR} or give a key file")
    return _from_file(key_file)


def write_key_file(path: Path, keyring: Keyring) -> None:
    """Write ``keyring`` to ``path`` as JSON, atomically, mode 0600."""
    document = {
        "keys": [
            {"kid": key.kid, "key": base64.b64encode(key.key).decode("ascii")}
            for key in keyring.keys
        ]
    }
    write_private(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def keyring_to_env(keyring: Keyring) -> str:
    """``keyring`` in the form of ``MARGINFLOW_DATA_KEYS``, for moving keys to a secret store."""
    return ",".join(
        f"{key.kid}:{base64.b64encode(key.key).decode('ascii')}" for key in keyring.keys
    )
