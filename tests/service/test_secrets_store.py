"""First-run secrets: made once with private modes, loaded the same afterwards, the data
keys overridden by the variable, group-readable or incomplete secrets refused, and
rotations persisted."""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path

import pytest

from marginflow.core.errors import ConfigurationError
from marginflow.service.crypto import ENV_VAR, DataKey, decrypt, encrypt
from marginflow.service.secrets_store import (
    AUDIT_KEY_FILE,
    DATA_KEYS_FILE,
    SIGNING_KEYS_FILE,
    load_or_create,
    rotate_data,
    rotate_signing,
    secrets_directory,
)
from marginflow.service.tokens import issue_token, verify_token

T0 = 1_750_000_000
FILES = [AUDIT_KEY_FILE, DATA_KEYS_FILE, SIGNING_KEYS_FILE]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _env_keys() -> tuple[dict[str, str], DataKey]:
    key = DataKey("from-env", os.urandom(32))
    return {ENV_VAR: f"{key.kid}:{base64.b64encode(key.key).decode()}"}, key


def test_the_first_run_creates_private_secrets(tmp_path: Path) -> None:
    secrets, created = load_or_create(tmp_path, env={}, now=T0)
    assert created
    folder = secrets_directory(tmp_path)
    assert folder == tmp_path / "secrets"
    assert _mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == FILES
    for name in FILES:
        assert _mode(folder / name) == 0o600, name
    assert len(secrets.audit_key) == 32
    assert len(secrets.signing_keys.keys) == 1
    assert secrets.signing_keys.current.created == T0
    assert len(secrets.data_keys.keys) == 1
    assert secrets.audit_key.hex() not in repr(secrets)


def test_a_later_run_loads_the_same_secrets(tmp_path: Path) -> None:
    first, _ = load_or_create(tmp_path, env={}, now=T0)
    again, created = load_or_create(tmp_path, env={}, now=T0 + 60)
    assert not created
    assert again == first
    token = issue_token(first.signing_keys, subject="a", roles=[], member=None, now=T0)
    assert verify_token(again.signing_keys, token, now=T0).subject == "a"
    blob = encrypt(first.data_keys, b"crif", context=b"crif-upload:1")
    assert decrypt(again.data_keys, blob, context=b"crif-upload:1") == b"crif"


def test_the_variable_overrides_the_data_keys(tmp_path: Path) -> None:
    env, key = _env_keys()
    secrets, created = load_or_create(tmp_path, env=env, now=T0)
    assert created
    assert secrets.data_keys.keys == (key,)
    assert not (secrets_directory(tmp_path) / DATA_KEYS_FILE).exists()
    again, created = load_or_create(tmp_path, env=env)
    assert not created
    assert again == secrets


def test_the_variable_also_overrides_an_existing_key_file(tmp_path: Path) -> None:
    load_or_create(tmp_path, env={}, now=T0)
    env, key = _env_keys()
    secrets, created = load_or_create(tmp_path, env=env)
    assert not created
    assert secrets.data_keys.keys == (key,)


def test_a_missing_key_file_once_the_variable_is_gone_is_refused(tmp_path: Path) -> None:
    env, _ = _env_keys()
    load_or_create(tmp_path, env=env, now=T0)
    with pytest.raises(ConfigurationError, match=f"{DATA_KEYS_FILE} missing"):
        load_or_create(tmp_path, env={})


@pytest.mark.parametrize("lost", [AUDIT_KEY_FILE, SIGNING_KEYS_FILE, DATA_KEYS_FILE])
def test_an_incomplete_folder_is_refused_not_refilled(tmp_path: Path, lost: str) -> None:
    load_or_create(tmp_path, env={}, now=T0)
    (secrets_directory(tmp_path) / lost).unlink()
    with pytest.raises(ConfigurationError, match=f"^{re.escape(str(tmp_path))}.*: {lost} missing"):
        load_or_create(tmp_path, env={})
    assert not (secrets_directory(tmp_path) / lost).exists()


@pytest.mark.parametrize("name", FILES)
def test_a_secret_others_may_read_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    load_or_create(tmp_path, env={}, now=T0)
    path = secrets_directory(tmp_path) / name
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match=f"^{re.escape(str(path))}: group or others"):
        load_or_create(tmp_path, env={})


def test_a_secrets_folder_others_may_enter_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path, env={}, now=T0)
    folder = secrets_directory(tmp_path)
    folder.chmod(0o755)
    with pytest.raises(ConfigurationError, match=f"^{re.escape(str(folder))}: group or others"):
        load_or_create(tmp_path, env={})


def test_a_damaged_audit_key_is_named(tmp_path: Path) -> None:
    load_or_create(tmp_path, env={}, now=T0)
    path = secrets_directory(tmp_path) / AUDIT_KEY_FILE
    path.write_bytes(b"short")
    with pytest.raises(ConfigurationError, match=f"^{re.escape(str(path))}: is 5 bytes, need 32$"):
        load_or_create(tmp_path, env={})


def test_a_damaged_signing_key_file_is_named(tmp_path: Path) -> None:
    load_or_create(tmp_path, env={}, now=T0)
    path = secrets_directory(tmp_path) / SIGNING_KEYS_FILE
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match=f"^{re.escape(str(path))}: "):
        load_or_create(tmp_path, env={})


def test_rotate_signing_persists_and_keeps_three(tmp_path: Path) -> None:
    first, _ = load_or_create(tmp_path, env={}, now=T0)
    token = issue_token(first.signing_keys, subject="a", roles=[], member=None, now=T0)
    rotated = rotate_signing(tmp_path, now=T0 + 1)
    loaded, _ = load_or_create(tmp_path, env={})
    assert loaded.signing_keys == rotated
    assert rotated.current.created == T0 + 1
    assert verify_token(loaded.signing_keys, token, now=T0).subject == "a"
    rotate_signing(tmp_path, now=T0 + 2)
    last = rotate_signing(tmp_path, now=T0 + 3)
    assert len(last.keys) == 3
    assert last.find(first.signing_keys.current.kid) is None
    assert _mode(secrets_directory(tmp_path) / SIGNING_KEYS_FILE) == 0o600


def test_rotate_data_persists_and_keeps_every_key(tmp_path: Path) -> None:
    first, _ = load_or_create(tmp_path, env={}, now=T0)
    blob = encrypt(first.data_keys, b"old upload", context=b"crif-upload:1")
    for _ in range(4):
        rotated = rotate_data(tmp_path, env={})
    loaded, _ = load_or_create(tmp_path, env={})
    assert loaded.data_keys == rotated
    assert len(rotated.keys) == 5
    assert decrypt(loaded.data_keys, blob, context=b"crif-upload:1") == b"old upload"
    assert _mode(secrets_directory(tmp_path) / DATA_KEYS_FILE) == 0o600


def test_rotate_data_refuses_when_the_variable_provides_the_keys(tmp_path: Path) -> None:
    env, _ = _env_keys()
    load_or_create(tmp_path, env=env, now=T0)
    with pytest.raises(ConfigurationError, match=f"data keys come from {ENV_VAR}"):
        rotate_data(tmp_path, env=env)


def test_rotating_before_any_secrets_exist_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"{SIGNING_KEYS_FILE}: does not exist"):
        rotate_signing(tmp_path, now=T0)
    with pytest.raises(ConfigurationError, match=f"{DATA_KEYS_FILE}: does not exist"):
        rotate_data(tmp_path, env={})
