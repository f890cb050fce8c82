"""Private files: secrets written atomically with mode 0600 and read only when private.

Writes go to a temporary file created with ``O_CREAT | O_EXCL`` (never through an existing
file or symlink an attacker planted) and mode 0600 from the first byte, then are fsynced and
renamed over the target, so a reader sees the old content or the new, never half of it, and
a crash leaves no readable partial secret. Reads check the mode on the open descriptor (no
gap between the check and the read) and refuse a file that group or others may access:
a secret someone else could read is no longer a secret, and an operator expects the refusal
(as ``ssh`` does for a private key).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from marginflow.core.errors import ConfigurationError

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

MSG_MISSING = "{path}: does not exist"
MSG_NOT_FILE = "{path}: is not a regular file"
MSG_NOT_DIRECTORY = "{path}: is not a directory"
MSG_TOO_OPEN = "{path}: group or others may access it (mode {mode:04o}); run chmod {want:o} on it"
MSG_UNREADABLE = "{path}: cannot be read: {error}"


def _refuse_open_mode(path: Path, mode: int, want: int) -> None:
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigurationError(MSG_TOO_OPEN.format(path=path, mode=stat.S_IMODE(mode), want=want))


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; the file has mode 0600 throughout."""
    write_atomic(path, data, mode=PRIVATE_FILE_MODE)


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically; it ends with exactly ``mode``.

    The temporary file is created 0600 whatever ``mode`` is, and widened only once written.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        # The umask may have removed bits from the creation mode; fchmod makes it exact.
        os.fchmod(fd, mode)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private(path: Path) -> bytes:
    """The bytes of ``path``; ConfigurationError naming it if missing, not a file or not 0600."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigurationError(MSG_MISSING.format(path=path)) from None
    except OSError as error:
        raise ConfigurationError(MSG_UNREADABLE.format(path=path, error=error.strerror)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(MSG_NOT_FILE.format(path=path))
        _refuse_open_mode(path, info.st_mode, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "rb", closefd=False) as source:
            return source.read()
    finally:
        os.close(fd)


def private_directory(directory: Path) -> None:
    """Create ``directory`` with mode 0700 if missing; refuse one group or others may access."""
    try:
        directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as error:
        raise ConfigurationError(
            MSG_UNREADABLE.format(path=directory, error=error.strerror)
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(MSG_NOT_DIRECTORY.format(path=directory))
    _refuse_open_mode(directory, info.st_mode, PRIVATE_DIR_MODE)
