"""``marginflow keys``: after a data key rotation the old files stay readable and new ones
use the new key; ``reencrypt`` moves every stored file to the newest key (on SQLite and
PostgreSQL), after which the old keys can be retired; a signing key rotation keeps the
tokens already issued valid."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer

from marginflow.cli import keys_cmd
from marginflow.core.errors import DecryptionError
from marginflow.service.crypto import Keyring, envelope_kid
from marginflow.service.sealed import open_blob, seal
from marginflow.service.secrets_store import load_or_create
from marginflow.service.tokens import issue_token, verify_token
from marginflow.store import Database
from marginflow.store.blobs import Blobs
from tests.cli_runner import invoke
from tests.postgres import postgres_or_skip

ENV: dict[str, str] = {}  # data keys from the key file, whatever the test process holds


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return postgres_or_skip()


@pytest.fixture
def prefix() -> str:
    return f"k{uuid.uuid4().hex[:8]}_"


@pytest.fixture
def db(url: str, prefix: str) -> Iterator[Database]:
    store = Database(url, prefix=prefix)
    try:
        yield store
    finally:
        store.drop()
        store.close()


@pytest.fixture(autouse=True)
def _no_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARGINFLOW_DATA_KEYS", raising=False)


def keys(*args: str) -> dict[str, object]:
    app = typer.Typer()
    keys_cmd.register(app)
    result = invoke(["keys", *args, "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, object] = json.loads(result.output)
    return document


def put(db: Database, ring: Keyring, blob_id: str, kind: str, data: bytes) -> None:
    seal(
        Blobs(db),
        ring,
        blob_id=blob_id,
        kind=kind,
        owner="bank-a.user",
        member="BANK-A",
        name=f"{blob_id}.csv",
        content_type="text/csv",
        data=data,
        detail={},
        created_time=1,
    )


def test_rotation_keeps_old_files_readable_and_reencrypt_moves_them(
    db: Database, url: str, prefix: str, tmp_path: Path
) -> None:
    directory = tmp_path / "service"
    first = load_or_create(directory, env=ENV)[0].data_keys
    put(db, first, "CRIF-1", "crif-upload", b"TradeID,PortfolioID\n")
    put(db, first, "EXP-1", "export", b"account,margin\n")
    put(db, first, "CRIF-2", "crif-rejected", b"not a crif")

    rotated = keys("rotate-data", "--dir", str(directory))
    ring = load_or_create(directory, env=ENV)[0].data_keys
    assert rotated == {"current": ring.current.kid, "keys": [first.current.kid, ring.current.kid]}
    assert ring.current.kid != first.current.kid
    blobs = Blobs(db)
    for blob_id, data in (("CRIF-1", b"TradeID,PortfolioID\n"), ("EXP-1", b"account,margin\n")):
        old = blobs.get(blob_id)
        assert old is not None
        assert old.key_id == first.current.kid
        assert open_blob(ring, old) == data  # old files stay readable
    put(db, ring, "CRIF-3", "crif-upload", b"new")
    new = blobs.get("CRIF-3")
    assert new is not None
    assert new.key_id == envelope_kid(new.content) == ring.current.kid  # new ones: new key

    done = keys("reencrypt", "--dir", str(directory), "--db", url, "--db-prefix", prefix)
    assert done == {"blobs": 4, "reencrypted": 3, "key": ring.current.kid}
    newest_only = Keyring((ring.current,))  # the old key can now be retired
    expected = {
        "CRIF-1": b"TradeID,PortfolioID\n",
        "EXP-1": b"account,margin\n",
        "CRIF-2": b"not a crif",
        "CRIF-3": b"new",
    }
    t = db.t.blob
    stored = {r[0]: r[1] for r in db._rows(sa.select(t.c.id, t.c.key_id))}
    assert stored == dict.fromkeys(expected, ring.current.kid)
    for blob_id, data in expected.items():
        blob = blobs.get(blob_id)
        assert blob is not None
        assert envelope_kid(blob.content) == ring.current.kid
        assert open_blob(newest_only, blob) == data
    again = keys("reencrypt", "--dir", str(directory), "--db", url, "--db-prefix", prefix)
    assert again["reencrypted"] == 0


def test_reencrypt_stops_at_a_damaged_file_and_names_the_key(db: Database, tmp_path: Path) -> None:
    directory = tmp_path / "service"
    ring = load_or_create(directory, env=ENV)[0].data_keys
    put(db, ring, "EXP-9", "export", b"x")
    keys("rotate-data", "--dir", str(directory))
    t = db.t.blob
    with db.transaction() as conn:  # relabelled as another kind: its context no longer fits
        conn.execute(sa.update(t).where(t.c.id == "EXP-9").values(kind="crif-upload"))
    from marginflow.service.sealed import reencrypt_all

    with pytest.raises(DecryptionError, match="authentication failed"):
        reencrypt_all(db, load_or_create(directory, env=ENV)[0].data_keys)


def test_a_signing_key_rotation_keeps_issued_tokens_valid(tmp_path: Path) -> None:
    directory = tmp_path / "service"
    before = load_or_create(directory, env=ENV)[0].signing_keys
    token = issue_token(before, subject="ops", roles=["operations"], member=None)
    rotated = keys("rotate-signing", "--dir", str(directory))
    after = load_or_create(directory, env=ENV)[0].signing_keys
    assert rotated["current"] == after.current.kid != before.current.kid
    assert verify_token(after, token).subject == "ops"  # issued before: still valid
    fresh = issue_token(after, subject="ops", roles=["operations"], member=None)
    assert verify_token(after, fresh).subject == "ops"


def test_keys_needs_a_service_directory(tmp_path: Path) -> None:
    app = typer.Typer()
    keys_cmd.register(app)
    result = invoke(["keys", "rotate-data", "--dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no secrets here" in result.output
    assert not (tmp_path / "none").exists()
