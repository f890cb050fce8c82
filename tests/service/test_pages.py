"""The pages as HTTP answers (the browser tests drive them in Chromium): a browser without
a session is sent to sign in while the API answers 401 in JSON, every page carries the
Content-Security-Policy and no inline script, style or handler, the navigation follows the
roles, and text from the request is escaped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from marginflow.service.web.pages import NAV, WEB
from tests.service.conftest import Service

PAGES = ["/", "/what-if", "/simm", "/parameters", "/ops", "/audit", "/accounts/A0000"]
INLINE = [
    re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),  # a script without src
    re.compile(r"<style\b", re.IGNORECASE),
    re.compile(r"\sstyle\s*=", re.IGNORECASE),
    re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),  # onclick=, onerror=...
    re.compile(r"javascript:", re.IGNORECASE),
]


def browser(service: Service, username: str | None) -> TestClient:
    """A client signed in with a web session (cookies), as a browser is."""
    client = TestClient(service.app, raise_server_exceptions=False)
    if username is not None:
        r = client.post(
            "/api/v1/auth/login",
            json={"username": username, "password": service.password(username)},
        )
        assert r.status_code == 200, r.text
    return client


def nav(html: str) -> list[str]:
    block = html.split('<nav aria-label="pages">', 1)[1].split("</nav>", 1)[0]
    return re.findall(r">([^<]+)</a>", block)


@pytest.mark.parametrize("path", PAGES)
def test_a_page_without_a_session_sends_the_browser_to_sign_in(service: Service, path: str) -> None:
    r = browser(service, None).get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/login?next={path}"


def test_the_api_without_a_session_still_answers_401_in_json(service: Service) -> None:
    r = browser(service, None).get("/api/v1/accounts")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


def test_the_sign_in_page_is_public_and_keeps_the_destination_out_of_the_markup(
    service: Service,
) -> None:
    r = browser(service, None).get('/login?next="><script>alert(1)</script>')
    assert r.status_code == 200
    assert "<script>alert(1)" not in r.text
    assert 'id="login-form"' in r.text


@pytest.mark.parametrize("path", [*PAGES, "/login"])
def test_every_page_has_the_csp_and_nothing_inline(service: Service, path: str) -> None:
    client = browser(service, "m001.user" if path != "/ops" else "ops")
    if path in ("/parameters", "/audit"):
        client = browser(service, "auditor")
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 200, (path, r.status_code)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["cache-control"] == "no-store"
    for pattern in INLINE:
        assert not pattern.search(r.text), (path, pattern.pattern)


def test_no_template_or_script_writes_markup() -> None:
    """User text reaches the DOM as text only: no innerHTML, outerHTML, insertAdjacentHTML,
    document.write or eval in the pages' scripts, and no template marks a value safe."""
    for script in (WEB / "static" / "js").glob("*.js"):
        text = script.read_text()
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in text, (script.name, banned)
    for template in (WEB / "templates").glob("*.html"):
        text = template.read_text()
        assert "|safe" not in text, template.name
        assert "autoescape false" not in text, template.name
        for pattern in INLINE:
            assert not pattern.search(text), (template.name, pattern.pattern)


@pytest.mark.parametrize(
    ("username", "shown"),
    [
        ("m001.user", ["Margins", "What-if", "SIMM", "Stress", "Back-test"]),
        ("risk.analyst", ["Margins", "What-if", "SIMM", "Stress", "Back-test", "Parameters"]),
        ("risk.approver", ["Margins", "Stress", "Back-test", "Parameters"]),
        ("ops", ["Margins", "Lag and drift"]),
        ("auditor", ["Margins", "Parameters", "Audit log"]),
        ("admin", ["Lag and drift"]),
    ],
)
def test_the_navigation_shows_only_the_pages_the_roles_allow(
    service: Service, username: str, shown: list[str]
) -> None:
    client = browser(service, username)
    r = client.get("/", follow_redirects=True)
    assert r.status_code == 200
    assert nav(r.text) == shown
    for path, label, _ in NAV:
        status = client.get(path, follow_redirects=False).status_code
        assert status == (200 if label in shown else 303 if path == "/" else 403), (path, status)


def test_a_user_who_may_not_read_margins_lands_on_a_page_they_may_see(service: Service) -> None:
    r = browser(service, "admin").get("/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ops"


def test_a_page_the_roles_do_not_allow_is_refused_with_a_page(service: Service) -> None:
    r = browser(service, "m001.user").get("/audit")
    assert r.status_code == 403
    assert "text/html" in r.headers["content-type"]
    assert "your roles do not allow audit" in r.text
    assert nav(r.text) == ["Margins", "What-if", "SIMM", "Stress", "Back-test"]


def test_text_from_the_request_is_escaped_in_the_page(service: Service) -> None:
    r = browser(service, "m001.user").get("/accounts/<img src=x onerror=alert(1)>")
    assert r.status_code == 200  # the page; its script asks the API, which says not found
    assert "<img" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text


def test_static_files_are_served_with_their_types_and_nothing_else(service: Service) -> None:
    client = browser(service, None)
    js = client.get("/static/js/common.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")
    for missing in ("/static/nope.js", "/static/../pages.py", "/static/%2e%2e/pages.py"):
        r = client.get(missing)
        assert r.status_code == 404, missing
        assert r.json()["error"]["code"] == "not_found"


def test_pages_are_not_in_the_api_document_but_declare_a_permission(service: Service) -> None:
    from fastapi import routing

    from marginflow.service.app import _permission_of

    paths = browser(service, None).get("/api/v1/openapi.json").json()["paths"]
    assert "/api/v1/events/margins" in paths
    assert not any(p == "/" or p.startswith(("/login", "/static", "/accounts/")) for p in paths)
    routes = {
        c.path: c.original_route
        for c in routing.iter_route_contexts(service.app.routes)
        if isinstance(c.original_route, routing.APIRoute)
    }
    assert _permission_of(routes["/api/v1/events/margins"]) == "read"
    for path, _, permission in NAV[1:]:
        assert _permission_of(routes[path]) == str(permission), path
    assert _permission_of(routes["/"]) == "self"  # then READ, or the first page allowed
    assert _permission_of(routes["/accounts/{account}"]) == "read"


def test_the_package_ships_the_pages() -> None:
    import tomllib

    data = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    shipped = data["tool"]["setuptools"]["package-data"]["marginflow"]
    assert {"**/*.html", "**/*.js", "**/*.css"} <= set(shipped)
