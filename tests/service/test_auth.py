"""Authentication and its controls against the running service: secrets stored only as
hashes, session cookies and CSRF, bearer tokens that expire and rotate, API keys, lockout
with backoff, the sign-in rate, the password policy, what a member administrator may do,
and four eyes on risk-parameter changes all the way to the log."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from marginflow.service.app import create_app
from marginflow.service.context import now_ns
from marginflow.service.passwords import generate_password, hash_password
from marginflow.service.secrets_store import rotate_signing
from marginflow.service.tokens import issue_token
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec
from marginflow.stream.log import open_log
from marginflow.stream.topics import MARKET
from tests.service.conftest import Service, service_config


def _add_user(service: Service, username: str, roles: list[str], member: str | None = None) -> str:
    password = generate_password()
    service.app.state.ctx.access.add_user(
        username,
        password_hash=hash_password(password),
        roles=roles,
        member=member,
        now=now_ns(),
    )
    return password


def _login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def _token(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


@pytest.fixture
def replica(service: Service, request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    """A second app over the same store and secrets, with the settings the test names
    (``@pytest.mark.parametrize("replica", [{...}], indirect=True)``)."""
    app = create_app(service_config(service.directory, **request.param))
    yield app
    app.state.ctx.close()


def _entries(service: Service, action: str, actor: str) -> list[Any]:
    return [e for e in service.app.state.ctx.audit.entries(action=action) if e.actor == actor]


# -- secrets at rest --------------------------------------------------------------------------
def _store_bytes(service: Service) -> bytes:
    """The bytes of the store's files (and its write-ahead log), read by another process:
    closing any descriptor of a SQLite file drops every POSIX lock this process's
    connections hold on it, so the test must not open the file itself."""
    db = service.directory / "margins.db"
    files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    return subprocess.run(["cat", *map(str, files)], capture_output=True, check=True).stdout


def test_passwords_are_stored_only_as_argon2_hashes(service: Service) -> None:
    users = service.app.state.ctx.access.users()
    assert users
    for user in users:
        assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), user.username
    stored = _store_bytes(service)
    for username, cred in service.credentials.items():
        assert cred.password.encode() not in stored, f"{username}'s password is in the store"


# -- sessions and CSRF ------------------------------------------------------------------------
def _cookie(response: Any, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


@pytest.mark.parametrize("replica", [{"secure_cookies": True}], indirect=True)
def test_session_cookies_are_http_only_strict_and_secure(
    service: Service, replica: FastAPI
) -> None:
    client = TestClient(replica, base_url="https://testserver")
    r = _login(client, "ops", service.password("ops"))
    assert r.status_code == 200, r.text
    session = _cookie(r, "mf_session").lower()
    assert "httponly" in session
    assert "samesite=strict" in session
    assert "secure" in session
    csrf = _cookie(r, "mf_csrf").lower()
    assert "httponly" not in csrf  # the pages read it to send it back
    assert "samesite=strict" in csrf
    assert "secure" in csrf
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_plain_http_cookies_lack_secure_only_when_configured(service: Service) -> None:
    r = _login(service.client(), "ops", service.password("ops"))
    assert "secure" not in _cookie(r, "mf_session").lower()
    assert "httponly" in _cookie(r, "mf_session").lower()


def test_a_session_change_needs_the_csrf_token(service: Service) -> None:
    client = service.client()
    r = _login(client, "auditor", service.password("auditor"))
    csrf = r.json()["csrf_token"]
    assert client.cookies.get("mf_csrf") == csrf
    assert client.get("/api/v1/auth/me").json()["via"] == "session"
    missing = client.post("/api/v1/auth/api-keys", json={"name": "x"})
    assert missing.status_code == 403
    assert missing.json()["error"]["field"] == "X-CSRF-Token"
    wrong = client.post(
        "/api/v1/auth/api-keys", json={"name": "x"}, headers={"X-CSRF-Token": "A" * 43}
    )
    assert wrong.status_code == 403
    other = service.client()
    theirs = _login(other, "ops", service.password("ops")).json()["csrf_token"]
    assert (
        client.post(
            "/api/v1/auth/api-keys", json={"name": "x"}, headers={"X-CSRF-Token": theirs}
        ).status_code
        == 403
    ), "another session's token was accepted"
    ok = client.post("/api/v1/auth/api-keys", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201, ok.text
    out = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


# -- bearer tokens ----------------------------------------------------------------------------
def test_an_expired_bearer_token_is_refused(service: Service) -> None:
    keys = service.app.state.ctx.secrets.signing_keys
    old = issue_token(
        keys, subject="ops", roles=["operations"], member=None, ttl_seconds=60,
        now=int(time.time()) - 3600,
    )  # fmt: skip
    r = service.client().get("/api/v1/auth/me", headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401
    assert "expired" in r.json()["error"]["reason"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_token_of_a_rotated_out_key_is_refused(service: Service, tmp_path: Path) -> None:
    """Rotation keeps the newest three keys: after three rotations the first-run key no
    longer verifies, while a token of a key still kept does."""
    directory = tmp_path / "service"
    shutil.copytree(service.directory / "service", directory)
    first = service.client("ops").headers["Authorization"]
    rotate_signing(directory)
    app = create_app(service_config(service.directory, directory=directory))
    kept = issue_token(
        app.state.ctx.secrets.signing_keys, subject="ops", roles=["operations"], member=None
    )
    app.state.ctx.close()
    rotate_signing(directory)
    rotate_signing(directory)
    app = create_app(service_config(service.directory, directory=directory))
    try:
        client = TestClient(app)
        r = client.get("/api/v1/auth/me", headers={"Authorization": first})
        assert r.status_code == 401
        assert "key" in r.json()["error"]["reason"]
        good = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {kept}"})
        assert good.status_code == 200, good.text
    finally:
        app.state.ctx.close()


def test_a_token_of_a_disabled_user_is_refused(service: Service) -> None:
    password = _add_user(service, "soon.gone", ["operations"])
    client = service.client()
    token = _token(client, "soon.gone", password).json()["access_token"]
    service.app.state.ctx.access.set_disabled("soon.gone", True)
    service.app.state.users._rows.clear()  # the two-second cache of users
    r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


# -- API keys ---------------------------------------------------------------------------------
def test_an_api_key_works_is_stored_hashed_and_stops_when_revoked(service: Service) -> None:
    owner = service.client("auditor")
    made = owner.post("/api/v1/auth/api-keys", json={"name": "<script>ci</script>", "days": 1})
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["key_id"]
    stored = service.app.state.ctx.access.api_key(key_id)
    assert stored is not None
    assert key not in stored.key_hash
    # the secret is all after "mf_<key_id>_" (it may hold "_" itself)
    assert key.split("_", 2)[2].encode() not in _store_bytes(service)
    anonymous = service.client()
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        me = anonymous.get("/api/v1/auth/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "auditor"
        assert me.json()["via"] == "api-key"
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert anonymous.get("/api/v1/auth/me", headers={"X-API-Key": forged}).status_code == 401
    listed = owner.get("/api/v1/auth/api-keys").json()
    assert any(k["key_id"] == key_id and k["name"] == "<script>ci</script>" for k in listed)
    assert all("key" not in k for k in listed), "a listing shows a secret"
    assert service.client("ops").delete(f"/api/v1/auth/api-keys/{key_id}").status_code == 404
    assert owner.delete(f"/api/v1/auth/api-keys/{key_id}").status_code == 204
    r = anonymous.get("/api/v1/auth/me", headers={"X-API-Key": key})
    assert r.status_code == 401
    assert "revoked" in r.json()["error"]["reason"]
    assert _entries(service, "auth.api_key_revoked", "auditor")


# -- lockout and rate ------------------------------------------------------------------------
@pytest.mark.parametrize("replica", [{"lock_after": 3, "lock_seconds": 60}], indirect=True)
def test_lockout_after_repeated_failures_doubles(service: Service, replica: FastAPI) -> None:
    password = _add_user(service, "lock.me", ["operations"])
    client = TestClient(replica)
    for _ in range(2):
        assert _token(client, "lock.me", "not-the-password-1A!").status_code == 401
    third = _token(client, "lock.me", "not-the-password-1A!")
    assert third.status_code == 401  # the failure that locks is still answered as wrong
    locked = _token(client, "lock.me", password)
    assert locked.status_code == 429, "the right password worked on a locked account"
    assert 55 <= int(locked.headers["retry-after"]) <= 60
    assert "locked" in locked.json()["error"]["reason"]
    outcomes = [e.outcome for e in _entries(service, "auth.login", "lock.me")]
    assert outcomes == ["failed", "failed", "failed", "locked"]
    access = replica.state.ctx.access
    # time passes: the lock runs out, and the next failure locks for twice as long
    with access.db.transaction() as conn:
        t = access.db.t.user
        conn.execute(t.update().where(t.c.username == "lock.me").values(locked_until=0))
    assert _token(client, "lock.me", "still-not-it-1A!").status_code == 401
    again = _token(client, "lock.me", password)
    assert again.status_code == 429
    assert 115 <= int(again.headers["retry-after"]) <= 120
    user = access.user("lock.me")
    assert user is not None
    assert user.failed_logins == 4
    with access.db.transaction() as conn:
        conn.execute(t.update().where(t.c.username == "lock.me").values(locked_until=0))
    assert _token(client, "lock.me", password).status_code == 200
    user = access.user("lock.me")
    assert user is not None
    assert user.failed_logins == 0


@pytest.mark.parametrize("replica", [{"login_per_minute": 3}], indirect=True)
def test_sign_ins_are_rate_limited_per_client(service: Service, replica: FastAPI) -> None:
    mine = TestClient(replica, client=("203.0.113.7", 40000))
    for _ in range(3):
        assert _token(mine, "nobody-here", "x").status_code == 401
    r = _token(mine, "ops", service.password("ops"))
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    other = TestClient(replica, client=("203.0.113.8", 40000))
    assert _token(other, "ops", service.password("ops")).status_code == 200
    limited = [
        e for e in service.app.state.ctx.audit.entries(action="auth.login")
        if e.outcome == "rate-limited" and e.client == "203.0.113.7"
    ]  # fmt: skip
    assert limited


# -- password policy --------------------------------------------------------------------------
def test_the_password_policy_holds_on_change_and_on_creation(service: Service) -> None:
    password = _add_user(service, "policy.user", ["operations"])
    client = service.client()
    token = _token(client, "policy.user", password).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    for weak in ("short1A!", "policy.user-Password1", "aaaaaaaaaaaaaaaa"):
        r = client.post("/api/v1/auth/password", json={"current": password, "new": weak})
        assert r.status_code == 422, weak
        assert r.json()["error"]["field"] == "new"
    wrong = client.post(
        "/api/v1/auth/password", json={"current": "wrong-one-1A!x", "new": "A good one 4 sure!"}
    )
    assert wrong.status_code == 401
    good = client.post(
        "/api/v1/auth/password", json={"current": password, "new": "A good one 4 sure!"}
    )
    assert good.status_code == 204, good.text
    assert _token(service.client(), "policy.user", "A good one 4 sure!").status_code == 200
    admin = service.client("admin")
    r = admin.post(
        "/api/v1/users",
        json={"username": "weak.one", "roles": ["operations"], "password": "password1234"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "password"
    made = admin.post("/api/v1/users", json={"username": "strong.one", "roles": ["operations"]})
    assert made.status_code == 201
    assert made.json()["password"], "a generated password is shown once"


# -- member administrators ------------------------------------------------------------------------
def test_a_member_administrator_makes_only_its_own_members_users(service: Service) -> None:
    own, other = service.members[:2]
    madmin = service.client(f"{own.lower()}.admin")
    made = madmin.post("/api/v1/users", json={"username": "own.trader", "roles": ["member-user"]})
    assert made.status_code == 201, made.text
    assert made.json()["member"] == own
    again = madmin.post(
        "/api/v1/users",
        json={"username": "own.admin2", "roles": ["member-admin"], "member": own},
    )
    assert again.status_code == 201
    theirs = madmin.post(
        "/api/v1/users",
        json={"username": "their.trader", "roles": ["member-user"], "member": other},
    )
    assert theirs.status_code == 404
    for roles in (["operations"], ["risk-approver"], ["admin"], ["member-user", "auditor"]):
        r = madmin.post("/api/v1/users", json={"username": "climber", "roles": roles})
        assert r.status_code in (403, 422), roles
    assert service.app.state.ctx.access.user("climber") is None
    listed = {u["username"]: u["member"] for u in madmin.get("/api/v1/users").json()}
    assert set(listed.values()) == {own}
    assert "own.trader" in listed
    assert service.client(f"{own.lower()}.user").get("/api/v1/users").status_code == 403


# -- four eyes --------------------------------------------------------------------------------
def _market_changes(service: Service) -> list[ev.RiskParameterChange]:
    ctx = service.app.state.ctx
    log = open_log(f"embedded://{service.directory / 'log'}")
    topic = ctx.topology.name(MARKET)
    end = log.end_offsets([(topic, 0)])[(topic, 0)]
    reader = log.consumer()
    reader.assign({(topic, 0): 0})
    codec = Codec(ctx.topology.spec(MARKET).events)
    found: list[ev.RiskParameterChange] = []
    seen = 0
    while seen < end:
        batch = reader.consume(1000, 1.0)
        if not batch:
            break
        seen = batch[-1].offset + 1
        found += [
            e for r in batch if isinstance(e := codec.try_decode(r.value), ev.RiskParameterChange)
        ]
    reader.close()
    log.close()
    return found


def test_a_change_takes_two_people_and_reaches_the_log(service: Service) -> None:
    both = _add_user(service, "two.hats", ["risk-analyst", "risk-approver"])
    anon = service.client()
    token = _token(anon, "two.hats", both).json()["access_token"]
    two_hats = service.client()
    two_hats.headers["Authorization"] = f"Bearer {token}"
    made = two_hats.post(
        "/api/v1/parameters/proposals",
        json={"parameter": "confidence", "value": 0.985, "reason": "four eyes test"},
    )
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    own = two_hats.post(f"/api/v1/parameters/proposals/{pid}/approve", json={})
    assert own.status_code == 403
    assert "four eyes" in own.json()["error"]["reason"]
    refused = _entries(service, "parameters.approved", "two.hats")
    assert refused
    assert refused[-1].outcome == "refused"
    assert refused[-1].subject == pid
    analyst = service.client("risk.analyst")
    assert analyst.post(f"/api/v1/parameters/proposals/{pid}/approve", json={}).status_code == 403
    assert (
        service.client("ops")
        .post(f"/api/v1/parameters/proposals/{pid}/approve", json={})
        .status_code
        == 403
    )
    still = service.client("auditor").get(f"/api/v1/parameters/proposals/{pid}").json()
    assert still["status"] == "proposed"
    approved = service.client("risk.approver").post(
        f"/api/v1/parameters/proposals/{pid}/approve", json={"note": "ok <b>by me</b>"}
    )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "approved"
    assert body["proposed_by"] == "two.hats"
    assert body["decided_by"] == "risk.approver"
    assert body["decision_note"] == "ok <b>by me</b>"
    again = service.client("risk.approver").post(
        f"/api/v1/parameters/proposals/{pid}/reject", json={}
    )
    assert again.status_code == 409
    changes = [c for c in _market_changes(service) if c.change_id == pid]
    assert changes, "the approved change is not on the market topic"
    change = changes[-1]
    assert change.requested_by == "two.hats"
    assert change.approved_by == "risk.approver"
    assert change.parameter == "confidence"
    assert change.value == pytest.approx(0.985)
    assert _entries(service, "parameters.approved", "risk.approver")[-1].subject == pid
