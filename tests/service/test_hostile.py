"""Hostile input: oversized bodies, malformed JSON, text that looks like markup, forged
request ids and garbage in query strings. Each is refused with the one error body, echoed
only as data, and never answered with a 5xx."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.service.config import MiB
from marginflow.service.middleware import CSP
from tests.service.conftest import Service
from tests.service.openapi_doc import OPERATIONS
from tests.service.streams import first_bytes_of_streams

HOSTILE = [
    "<script>alert(1)</script>",
    "[bold red]loud[/bold red] [/x]",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    ":100: :smile:",
    "=cmd|' /C calc'!A0",
    "\u202eevil\u202c",
]
"""Text that a careless renderer would run: HTML, Rich markup, terminal escapes, emoji
codes, a spreadsheet formula, a bidirectional override."""


def _error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = r.json()["error"]
    assert error["status"] == status
    assert error["request_id"] == r.headers["x-request-id"]
    return error


# -- oversized bodies -----------------------------------------------------------------------
def test_a_body_over_the_limit_is_refused_by_its_length(service: Service) -> None:
    client = service.client("risk.analyst")
    big = b"x" * (MiB + 1)
    r = client.post(
        "/api/v1/parameters/proposals", content=big, headers={"content-type": "application/json"}
    )
    error = _error(r, 413)
    assert error["code"] == "too_large"
    assert str(MiB) in error["reason"]


def test_a_chunked_body_over_the_limit_is_refused_while_read(service: Service) -> None:
    client = service.client("risk.analyst")

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * (128 * 1024)

    r = client.post(
        "/api/v1/parameters/proposals",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in r.request.headers
    assert _error(r, 413)["code"] == "too_large"


def test_an_anonymous_oversized_body_is_refused_before_sign_in(service: Service) -> None:
    r = service.client().post("/api/v1/auth/login", content=b"{" * (MiB + 10))
    assert _error(r, 413)["code"] == "too_large"


def test_an_upload_over_its_own_limit_is_refused(service: Service) -> None:
    uploads = [o for o in OPERATIONS if o.method == "post" and o.path.endswith("/simm/uploads")]
    assert uploads, "no CRIF upload endpoint"
    limit = service.app.state.ctx.config.max_upload
    client = service.client(f"{service.members[0].lower()}.user")
    r = client.post(uploads[0].path, files={"file": ("big.csv", b"x" * (limit + 1), "text/csv")})
    assert _error(r, 413)["code"] == "too_large"


# -- malformed input --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"parameter": "confidence", "value": ', "body"),
        ('{"parameter": 7, "value": 0.99}', "parameter"),
        ('{"value": 0.99}', "parameter"),
        ('{"parameter": "confidence", "value": [1]}', "value"),
        ('{"parameter": "confidence", "value": 0.99, "reason": 5}', "reason"),
        ("[]", "body"),
        ("\x00\x01", "body"),
    ],
)
def test_malformed_json_is_answered_422_naming_the_field(
    service: Service, body: str, field: str
) -> None:
    client = service.client("risk.analyst")
    r = client.post(
        "/api/v1/parameters/proposals",
        content=body.encode(),
        headers={"content-type": "application/json"},
    )
    error = _error(r, 422)
    assert error["field"] is not None
    assert error["field"].split(".")[0] == field


# -- user text is data --------------------------------------------------------------------
@pytest.mark.parametrize("text", HOSTILE)
def test_a_proposal_reason_comes_back_literally(service: Service, text: str) -> None:
    client = service.client("risk.analyst")
    made = client.post(
        "/api/v1/parameters/proposals",
        json={"parameter": "confidence", "value": 0.99, "reason": text},
    )
    assert made.status_code == 201, made.text
    assert made.json()["reason"] == text
    read = client.get(f"/api/v1/parameters/proposals/{made.json()['id']}")
    assert read.json()["reason"] == text
    assert read.headers["content-type"].startswith("application/json")
    assert read.headers["x-content-type-options"] == "nosniff"


def test_a_display_name_and_a_refused_username_come_back_literally(service: Service) -> None:
    admin = service.client("admin")
    for i, text in enumerate(HOSTILE):
        r = admin.post(
            "/api/v1/users",
            json={"username": f"hostile{i}", "roles": ["operations"], "display_name": text},
        )
        assert r.status_code == 201, r.text
    listed = {u["username"]: u["display_name"] for u in admin.get("/api/v1/users").json()}
    assert [listed[f"hostile{i}"] for i in range(len(HOSTILE))] == HOSTILE
    r = service.client().post(
        "/api/v1/auth/token", json={"username": HOSTILE[0], "password": "wrong-password"}
    )
    assert _error(r, 401)["reason"] == "wrong username or password"
    client = service.client("ops")
    sneaky = "<img src=x onerror=alert(1)>"
    r = client.get(f"/api/v1/accounts/{sneaky}")
    assert _error(r, 404)["reason"] == f"no account {sneaky!r}"


def test_pages_escape_what_users_sent(service: Service) -> None:
    """Every page (a GET route outside the API without path parameters) that answers HTML
    shows the hostile proposal reasons and display names escaped, never as markup."""
    pages = [
        ctx.path
        for ctx in iter_route_contexts(service.app.routes)
        if isinstance(ctx.original_route, APIRoute)
        and "GET" in (ctx.methods or ())
        and ctx.path
        and not ctx.path.startswith("/api/")
        and "{" not in ctx.path
    ]
    client = service.client("auditor")
    for name in ("risk.analyst", "admin"):  # sessions with CSRF, as the browser holds
        client.cookies.clear()
        r = client.post(
            "/api/v1/auth/login",
            json={"username": name, "password": service.password(name)},
        )
        assert r.status_code == 200
        for path in pages:
            page = client.get(path)
            if not page.headers.get("content-type", "").startswith("text/html"):
                continue
            assert "<script>alert(1)</script>" not in page.text, path
            assert "\x1b[31m" not in page.text, path


# -- headers ----------------------------------------------------------------------------------
def test_every_response_carries_the_security_headers(service: Service) -> None:
    anonymous, ops = service.client(), service.client("ops")
    responses = [
        anonymous.get("/healthz"),
        anonymous.get("/metrics"),
        anonymous.get("/api/v1/openapi.json"),
        anonymous.get("/api/v1/accounts"),  # 401
        anonymous.get("/no/such/page"),  # 404 outside any route
        anonymous.post("/api/v1/auth/login", content=b"{"),  # 422
        anonymous.post("/api/v1/auth/login", content=b"x" * (MiB + 1)),  # 413
        anonymous.put("/healthz"),  # 405
        ops.get("/api/v1/accounts"),
        ops.get("/api/v1/accounts/NOPE"),
        ops.get("/api/v1/audit/entries"),  # 403
    ]
    for r in responses:
        assert r.headers.get("content-security-policy") == CSP, (r.request.url, r.status_code)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP


def _raw_request_id(service: Service, value: bytes) -> str:
    """The request id answered to a request sending ``value`` as X-Request-ID, sent below
    the HTTP client (which refuses to send a line break)."""
    answered: dict[str, str] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = {k.decode(): v.decode("latin-1") for k, v in message["headers"]}
            answered["id"] = headers["x-request-id"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"x-request-id", value)],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    # a thread of its own: Playwright's session (the browser tests) keeps an event loop
    # running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, service.app(scope, receive, send)).result()
    return answered["id"]


def test_a_well_formed_request_id_is_kept(service: Service) -> None:
    r = service.client().get("/healthz", headers={"X-Request-ID": "trace-42.a_b"})
    assert r.headers["x-request-id"] == "trace-42.a_b"
    assert _raw_request_id(service, b"abc-123") == "abc-123"


@pytest.mark.parametrize(
    "value",
    [
        b"abc\ndef",
        b"abc\r\nX-Injected: 1",
        b"<script>",
        b"a" * 65,
        b"",
        b"caf\xc3\xa9",
        b"with space",
        b"\x1b[31m",
    ],
)
def test_a_malformed_request_id_is_replaced(service: Service, value: bytes) -> None:
    answered = _raw_request_id(service, value)
    assert answered != value.decode("latin-1")
    assert len(answered) == 32
    assert all(c in "0123456789abcdef" for c in answered)


# -- garbage in query strings ---------------------------------------------------------------
GETS = [o for o in OPERATIONS if o.method == "get" and "{" not in o.path]
_garbage = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


def _streams_cut(service: Service, username: str) -> TestClient:
    """A client signed in as ``username`` over the app with event streams cut after their
    first bytes (the live feed is one of the GETs, and a stream never ends)."""
    signed = service.client(username)
    client = TestClient(first_bytes_of_streams(service.app), raise_server_exceptions=False)
    client.headers["Authorization"] = signed.headers["Authorization"]
    return client


@pytest.fixture(scope="module")
def house(service: Service) -> TestClient:
    return _streams_cut(service, "auditor")


@pytest.mark.parametrize("op", GETS, ids=lambda o: o.path)
def test_garbage_in_query_parameters_is_never_a_server_error(
    service: Service, house: TestClient, op: Any
) -> None:
    declared = [p["name"] for p in op.spec.get("parameters", []) if p["in"] == "query"]
    names = st.sampled_from(declared) | _garbage if declared else _garbage
    member = _streams_cut(service, f"{service.members[0].lower()}.user")

    @given(query=st.dictionaries(names, _garbage, max_size=4))
    @settings(
        max_examples=15,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(query: dict[str, str]) -> None:
        for client in (house, member):
            r = client.get(op.path, params=query)
            assert r.status_code < 500, (op.path, query, r.status_code, r.text[:200])
            if r.status_code >= 400 and "json" in r.headers.get("content-type", ""):
                assert json.loads(r.text)["error"]["status"] == r.status_code

    run()


INTS = [2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]


def test_huge_integers_in_query_parameters_are_never_a_server_error(service: Service) -> None:
    """Every integer query parameter of every GET, at and past the store's 64-bit range,
    with path parameters naming things that exist."""
    ctx = service.app.state.ctx
    account = ctx.db.current_margins(member=service.members[0], limit=1)[0][0].account
    proposal = service.client("risk.analyst").post(
        "/api/v1/parameters/proposals", json={"parameter": "confidence", "value": 0.99}
    )
    known = {
        "account": account,
        "subject": account,
        "member": service.members[0],
        "proposal_id": proposal.json()["id"],
    }
    callers = [service.client(name) for name in ("auditor", "risk.analyst", "ops")]
    tried = 0
    for op in OPERATIONS:
        params = op.spec.get("parameters", [])
        ints = [
            p["name"]
            for p in params
            if p["in"] == "query" and "integer" in json.dumps(p.get("schema", {}))
        ]
        path_names = [p["name"] for p in params if p["in"] == "path"]
        if op.method != "get" or not ints or not all(n in known for n in path_names):
            continue
        path = op.path
        for name in path_names:
            path = path.replace("{" + name + "}", known[name])
        for name in ints:
            for value in INTS:
                answers = [c.get(path, params={name: str(value)}) for c in callers]
                assert all(r.status_code < 500 for r in answers), (path, name, value)
                tried += 1
    assert tried > 0
