"""The service's own secrets, made on its first start and kept in ``<directory>/secrets``.

::

    secrets/                mode 0700
        signing-keys.json   token signing keys (tokens.SigningKeys.to_json), 0600
        audit.key           32 random bytes keying the HMAC over the audit chain, 0600
        data-keys.json      data keys for encryption at rest (crypto.write_key_file), 0600;
                            absent when MARGINFLOW_DATA_KEYS provides them

Why these choices:

* **Made on first start**, so a fresh install is secure with no setup step; an operator
  who keeps keys in a secret manager sets ``MARGINFLOW_DATA_KEYS`` instead of the file.
* **All or nothing**: a folder holding some of the files but not all is refused, naming
  what is missing, instead of a lost file being replaced by a fresh key. A new audit key
  would make the whole audit chain look tampered, and new data keys would hide that old
  uploads can no longer be read.
* **Group- or other-readable files and folders are refused**, as ``ssh`` refuses a private
  key: a secret that others can read must be treated as leaked.
* **One lock** (``flock`` on ``secrets/.lock``) around first creation and rotation, so
  workers starting together agree on one set of keys and two rotations do not lose one.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from marginflow.core.errors import ConfigurationError
from marginflow.service._files import (
    PRIVATE_FILE_MODE,
    private_directory,
    read_private,
    write_private,
)
from marginflow.service.crypto import ENV_VAR, Keyring, load_keyring, write_key_file
from marginflow.service.tokens import SigningKeys

SECRETS_DIR = "secrets"
SIGNING_KEYS_FILE = "signing-keys.json"
AUDIT_KEY_FILE = "audit.key"
DATA_KEYS_FILE = "data-keys.json"
AUDIT_KEY_BYTES = 32
_LOCK_FILE = ".lock"

MSG_INCOMPLETE = (
    "{directory}: {missing} missing while other secrets exist; restore it from a backup, or "
    "remove the folder to start afresh (what was encrypted or signed with it is then lost)"
)
MSG_DATA_KEYS_FROM_ENV = (
    f"data keys come from {ENV_VAR}: rotate them there (append a new kid:base64key)"
)


@dataclass(frozen=True, slots=True)
class ServiceSecrets:
    """The service's keys: token signing, audit chain HMAC, and data encryption."""

    signing_keys: SigningKeys
    audit_key: bytes = field(repr=False)
    data_keys: Keyring


def secrets_directory(directory: Path) -> Path:
    """Where the secrets of the service directory ``directory`` live."""
    return directory / SECRETS_DIR


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _load_signing(folder: Path) -> SigningKeys:
    path = folder / SIGNING_KEYS_FILE
    return SigningKeys.from_json(read_private(path), source=str(path))


def _load_audit(folder: Path) -> bytes:
    path = folder / AUDIT_KEY_FILE
    key = read_private(path)
    if len(key) != AUDIT_KEY_BYTES:
        raise ConfigurationError(f"{path}: is {len(key)} bytes, need {AUDIT_KEY_BYTES}")
    return key


def _load(folder: Path, env: Mapping[str, str]) -> ServiceSecrets:
    if ENV_VAR in env:
        data_keys = load_keyring(env=env, key_file=None)
    else:
        data_keys = load_keyring(env={}, key_file=folder / DATA_KEYS_FILE)
    return ServiceSecrets(_load_signing(folder), _load_audit(folder), data_keys)


def load_or_create(
    directory: Path, *, env: Mapping[str, str] | None = None, now: int | None = None
) -> tuple[ServiceSecrets, bool]:
    """The secrets of service directory ``directory``, and whether they were created now.

    ``env`` defaults to the process environment (``MARGINFLOW_DATA_KEYS`` there overrides
    the data key file); ``now`` (unix seconds) dates a first signing key.
    """
    environ = os.environ if env is None else env
    folder = secrets_directory(directory)
    private_directory(folder)
    with _locked(folder):
        wanted = [SIGNING_KEYS_FILE, AUDIT_KEY_FILE]
        if ENV_VAR not in environ:
            wanted.append(DATA_KEYS_FILE)
        # data-keys.json counts as existing even when the variable overrides it.
        present = [
            name
            for name in (SIGNING_KEYS_FILE, AUDIT_KEY_FILE, DATA_KEYS_FILE)
            if (folder / name).exists()
        ]
        if not present:
            write_private(folder / SIGNING_KEYS_FILE, SigningKeys.generate(now).to_json().encode())
            write_private(folder / AUDIT_KEY_FILE, secrets.token_bytes(AUDIT_KEY_BYTES))
            if ENV_VAR not in environ:
                write_key_file(folder / DATA_KEYS_FILE, Keyring.generate())
            return _load(folder, environ), True
        missing = [name for name in wanted if name not in present]
        if missing:
            raise ConfigurationError(
                MSG_INCOMPLETE.format(directory=folder, missing=", ".join(missing))
            )
        return _load(folder, environ), False


def load_audit_key(directory: Path) -> bytes:
    """The audit chain's key of service directory ``directory``, read only: nothing is
    created (a verifier must not mint a fresh key, which would make the whole chain look
    forged); ConfigurationError naming the file when it is missing or not private."""
    return _load_audit(secrets_directory(directory))


def rotate_signing(directory: Path, *, now: int | None = None) -> SigningKeys:
    """Add a new signing key (it signs from now on; the oldest beyond 3 is dropped)."""
    folder = secrets_directory(directory)
    private_directory(folder)
    with _locked(folder):
        keys = _load_signing(folder)
        rotated = keys.rotated(int(time.time()) if now is None else now)
        write_private(folder / SIGNING_KEYS_FILE, rotated.to_json().encode())
        return rotated


def rotate_data(directory: Path, *, env: Mapping[str, str] | None = None) -> Keyring:
    """Add a new data key to the key file (it encrypts from now on; none is dropped).

    ConfigurationError when ``MARGINFLOW_DATA_KEYS`` provides the keys: the file is not
    what the service reads then.
    """
    environ = os.environ if env is None else env
    if ENV_VAR in environ:
        raise ConfigurationError(MSG_DATA_KEYS_FROM_ENV)
    folder = secrets_directory(directory)
    private_directory(folder)
    with _locked(folder):
        path = folder / DATA_KEYS_FILE
        rotated = load_keyring(env={}, key_file=path).rotated()
        write_key_file(path, rotated)
        return rotated
