"""Encryption at rest: blobs round-trip for any bytes and context; any change to a blob, a
wrong context or a missing key is a DecryptionError naming the key; keyrings rotate
without losing old keys and load from the variable or a private key file."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.errors import ConfigurationError, DecryptionError, MarginflowError
from marginflow.service.crypto import (
    ENV_VAR,
    MAGIC,
    DataKey,
    Keyring,
    decrypt,
    encrypt,
    envelope_kid,
    keyring_to_env,
    load_keyring,
    reencrypt,
    write_key_file,
)

RING = Keyring.generate().rotated()  # two keys: the newest encrypts
CONTEXT = b"crif-upload:42"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@settings(deadline=None)
@given(st.binary(max_size=4096), st.binary(max_size=64))
def test_round_trip_for_any_bytes_and_context(plaintext: bytes, context: bytes) -> None:
    assert decrypt(RING, encrypt(RING, plaintext, context=context), context=context) == plaintext


def test_the_envelope_has_the_documented_layout() -> None:
    blob = encrypt(RING, b"hello", context=CONTEXT)
    kid = RING.current.kid.encode()
    assert blob[:4] == MAGIC == b"MFE1"
    assert blob[4] == len(kid)
    assert blob[5 : 5 + len(kid)] == kid
    assert len(blob) == 4 + 1 + len(kid) + 12 + len(b"hello") + 16
    assert envelope_kid(blob) == RING.current.kid


def test_nonces_are_fresh() -> None:
    blobs = {encrypt(RING, b"same", context=CONTEXT) for _ in range(50)}
    assert len(blobs) == 50


@settings(deadline=None)
@given(st.binary(max_size=256), st.data())
def test_any_flipped_byte_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    blob = bytearray(encrypt(RING, plaintext, context=CONTEXT))
    index = data.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecryptionError):
        decrypt(RING, bytes(blob), context=CONTEXT)


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_a_wrong_context_is_refused_naming_the_key(context: bytes, other: bytes) -> None:
    if context == other:
        return
    blob = encrypt(RING, b"margin", context=context)
    with pytest.raises(DecryptionError) as caught:
        decrypt(RING, blob, context=other)
    assert caught.value.kid == RING.current.kid
    assert repr(RING.current.kid) in caught.value.reason
    assert "\n" not in str(caught.value)


@given(st.binary(max_size=80))
def test_every_truncation_is_refused(plaintext: bytes) -> None:
    blob = encrypt(RING, plaintext, context=CONTEXT)
    for end in range(len(blob)):
        with pytest.raises(DecryptionError):
            decrypt(RING, blob[:end], context=CONTEXT)


def test_a_blob_from_another_keyring_names_the_unknown_key() -> None:
    other = Keyring.generate()
    blob = encrypt(other, b"x", context=CONTEXT)
    with pytest.raises(DecryptionError, match="not in the keyring") as caught:
        decrypt(RING, blob, context=CONTEXT)
    assert caught.value.kid == other.current.kid
    assert other.current.kid in str(caught.value)


@pytest.mark.parametrize("blob", [b"", b"MFE", b"MFE2\x01a", b"PK\x03\x04zipfile"])
def test_bad_magic_is_refused(blob: bytes) -> None:
    with pytest.raises(DecryptionError, match="bad magic"):
        decrypt(RING, blob, context=CONTEXT)


def test_a_malformed_kid_is_refused() -> None:
    with pytest.raises(DecryptionError, match="malformed key id"):
        decrypt(RING, MAGIC + b"\x02\xff\xfe" + bytes(40), context=CONTEXT)
    with pytest.raises(DecryptionError, match="malformed key id"):
        decrypt(RING, MAGIC + b"\x00" + bytes(40), context=CONTEXT)


def test_decryption_error_is_a_marginflow_error() -> None:
    assert issubclass(DecryptionError, MarginflowError)


# ------------------------------------------------------------------------------ keyring


def test_rotation_keeps_old_keys_and_old_blobs_readable() -> None:
    ring = Keyring.generate()
    old = encrypt(ring, b"yesterday", context=CONTEXT)
    newer = ring.rotated().rotated().rotated().rotated()
    assert newer.keys[: len(ring.keys)] == ring.keys
    assert len(newer.keys) == 5
    assert len(newer.current.kid) == 16
    assert envelope_kid(encrypt(newer, b"today", context=CONTEXT)) == newer.current.kid
    assert decrypt(newer, old, context=CONTEXT) == b"yesterday"


def test_reencrypt_moves_a_blob_to_the_current_key() -> None:
    ring = Keyring.generate()
    old = encrypt(ring, b"payload", context=CONTEXT)
    newer = ring.rotated()
    moved = reencrypt(newer, old, context=CONTEXT)
    assert envelope_kid(old) == ring.current.kid
    assert envelope_kid(moved) == newer.current.kid
    assert decrypt(Keyring((newer.current,)), moved, context=CONTEXT) == b"payload"
    with pytest.raises(DecryptionError):
        reencrypt(newer, old, context=b"crif-upload:43")


def test_keys_and_keyrings_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="is 16 bytes, need 32"):
        DataKey("k1", bytes(16))
    for kid in ("", "a" * 65, "a:b", "a,b", "é"):
        with pytest.raises(ConfigurationError, match="data key id"):
            DataKey(kid, bytes(32))
    with pytest.raises(ConfigurationError):
        Keyring(())
    with pytest.raises(ConfigurationError, match="twice"):
        Keyring((DataKey("k1", bytes(32)), DataKey("k1", bytes(32))))


def test_key_bytes_stay_out_of_reprs() -> None:
    assert RING.current.key.hex() not in repr(RING)
    assert repr(RING.current.key) not in repr(RING)


# ------------------------------------------------------------------------------ loading


def test_keys_load_from_the_variable_newest_last() -> None:
    first, second = os.urandom(32), os.urandom(32)
    ring = load_keyring(env={ENV_VAR: f"old:{_b64(first)}, new:{_b64(second)}"}, key_file=None)
    assert ring.keys == (DataKey("old", first), DataKey("new", second))
    assert ring.current.kid == "new"


def test_the_variable_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "data-keys.json"
    write_key_file(path, Keyring.generate())
    key = os.urandom(32)
    ring = load_keyring(env={ENV_VAR: f"env:{_b64(key)}"}, key_file=path)
    assert ring.keys == (DataKey("env", key),)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", f"^{ENV_VAR} is set but empty$"),
        ("nocolon", f"^{ENV_VAR}: item 1 is not kid:base64key"),
        (f"a:{_b64(bytes(32))},b:not base64!", f"^{ENV_VAR}: item 2 is not kid:base64key"),
        (f"a:{_b64(bytes(16))}", f"^{ENV_VAR}: data key 'a' is 16 bytes, need 32$"),
        (f"a:{_b64(bytes(32))},a:{_b64(bytes(32))}", f"^{ENV_VAR}: keyring: .* twice$"),
        (f"a b:{_b64(bytes(32))}", f"^{ENV_VAR}: data key id 'a b' must be"),
    ],
)
def test_a_malformed_variable_is_one_line_naming_it(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_keyring(env={ENV_VAR: value}, key_file=None)
    assert "\n" not in str(caught.value)


def test_the_variable_error_never_echoes_key_material() -> None:
    secret = _b64(os.urandom(24))  # 24 bytes: wrong length
    with pytest.raises(ConfigurationError) as caught:
        load_keyring(env={ENV_VAR: f"k:{secret}"}, key_file=None)
    assert secret not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        load_keyring(env={ENV_VAR: f"k{secret}"}, key_file=None)
    assert secret not in str(caught.value)


def test_a_key_file_round_trips_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data-keys.json"
    path.write_text("old and world-readable")
    path.chmod(0o644)
    write_key_file(path, RING)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(env={}, key_file=path) == RING
    document = json.loads(path.read_text())
    assert [item["kid"] for item in document["keys"]] == [key.kid for key in RING.keys]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data-keys.json"]  # no temporaries


def test_keyring_to_env_is_what_load_keyring_reads() -> None:
    assert load_keyring(env={ENV_VAR: keyring_to_env(RING)}, key_file=None) == RING


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{}",
        '{"keys": "abc"}',
        '{"keys": [{"kid": "a"}]}',
        '{"keys": [{"kid": "a", "key": "%%%"}]}',
        '{"keys": [{"kid": 1, "key": "AAAA"}]}',
        "\xff not utf-8",
    ],
)
def test_a_malformed_key_file_is_one_line_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(content.encode("latin-1"))
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match=f"^{re.escape(str(path))}: ") as caught:
        load_keyring(env={}, key_file=path)
    assert "\n" not in str(caught.value)


def test_a_short_key_in_the_file_names_the_file_and_the_kid(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"kid": "k7", "key": _b64(bytes(31))}]}))
    path.chmod(0o600)
    with pytest.raises(
        ConfigurationError, match=f"^{re.escape(str(path))}: data key 'k7' is 31 bytes, need 32$"
    ):
        load_keyring(env={}, key_file=path)


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_key_file(path, RING)
    path.chmod(0o640)
    with pytest.raises(
        ConfigurationError, match=f"^{re.escape(str(path))}: group or others may access it"
    ):
        load_keyring(env={}, key_file=path)


def test_missing_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match=f"^{re.escape(str(tmp_path / 'none.json'))}: does not exist$"
    ):
        load_keyring(env={}, key_file=tmp_path / "none.json")
    with pytest.raises(ConfigurationError, match=ENV_VAR):
        load_keyring(env={}, key_file=None)
