"""The pages in a real browser: Debian's Chromium driven by Playwright against the service
run by uvicorn on a free local port, over a copy of the demo day (the tests change it:
parameter changes, new margins), with screenshots kept as artefacts.

Chromium comes from Debian (``make browser``), never from ``playwright install``. Without
``/usr/bin/chromium`` the tests are skipped, except under CI (``CI`` set), where that is a
failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from marginflow.engine.settings import MarginSettings
from marginflow.io.book import load_book, load_id, reference_files
from marginflow.service.app import create_app
from marginflow.service.bootstrap import demo_users
from marginflow.service.context import ServiceContext, now_ns
from marginflow.service.passwords import generate_password, hash_password
from marginflow.service.roles import Role
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.pipeline import build_pipeline
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.topics import Topology
from tests.service.conftest import service_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SETTINGS = MarginSettings(lookback=250)  # as the demo day of tests/service/conftest.py
PARTITIONS = 2
ROOT = Path(__file__).resolve().parents[3]
LEAD = "risk.lead"  # holds both risk roles: may propose, and approve others' proposals


def artifacts_dir() -> Path:
    """Where screenshots go: ``$MARGINFLOW_ARTIFACTS`` or ``var/test-artifacts/screenshots``."""
    given = os.environ.get("MARGINFLOW_ARTIFACTS")
    path = Path(given) if given else ROOT / "var" / "test-artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        return  # the browser fixture fails each test: CI must have the browser
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is absent: `make browser` installs it")
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_users(ctx: ServiceContext, members: list[str]) -> dict[str, str]:
    """The demo's users (and :data:`LEAD`) with fresh passwords, made or reset: the copied
    store may hold them already, made by the API tests' fixture."""
    wanted = [
        (name, tuple(str(r) for r in roles), member, display)
        for name, roles, member, display in demo_users(members, "BANK-A")
    ]
    wanted.append((LEAD, (str(Role.RISK_ANALYST), str(Role.RISK_APPROVER)), None, "Head of risk"))
    out: dict[str, str] = {}
    for username, roles, member, display in wanted:
        password = generate_password()
        if ctx.access.user(username) is None:
            ctx.access.add_user(
                username,
                password_hash=hash_password(password),
                roles=list(roles),
                member=member,
                display_name=display,
                now=now_ns(),
            )
        else:
            ctx.access.set_password(username, hash_password(password), now=now_ns())
            ctx.access.record_success(username)
        out[username] = password
    return out


@dataclass
class Web:
    """The running service: its address, users' passwords, and the demo folder it serves."""

    url: str
    directory: Path
    passwords: dict[str, str]
    members: list[str]
    ctx: ServiceContext
    shots: Path = field(default_factory=artifacts_dir)

    def run_pipeline(self, *, idle_exit: float = 1.0, timeout: float = 300.0) -> None:
        """Catch the demo's pipeline up with the log (a published parameter change, say),
        built as ``run_demo`` builds it, resuming from its committed offsets and state."""
        log = EmbeddedLog(self.directory / "log")
        book_dir = self.directory / "book"
        book = load_book(book_dir).book
        load = load_id(reference_files(book_dir), SETTINGS.to_json())[0]
        pipeline = build_pipeline(
            log=log,
            topology=Topology(partitions=PARTITIONS),
            state_dir=self.directory / "state",
            db_url=f"sqlite:///{self.directory / 'margins.db'}",
            setup=MarginSetup(book, SETTINGS, load),
        )
        try:
            pipeline.run(idle_exit=idle_exit, timeout=timeout)
        finally:
            pipeline.close()
            pipeline.db.close()
            log.close()


@contextmanager
def serve(directory: Path, **config: object) -> Iterator[Web]:
    """The service over the demo folder ``directory`` on a free local port, with the demo's
    users (fresh passwords), until the block ends."""
    app = create_app(service_config(directory, events_poll_seconds=0.2, **config))
    ctx: ServiceContext = app.state.ctx
    ids = [m.member for m in ctx.db.member_margins()]
    members = ids[1:] + ids[:1]  # as the API tests' fixture: m001.user and m002.user
    passwords = ensure_users(ctx, members)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
            ws="none",
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    try:
        yield Web(f"http://127.0.0.1:{port}", directory, passwords, members, ctx)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def web(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    directory = tmp_path_factory.mktemp("web") / "demo"
    shutil.copytree(demo_dir, directory, ignore=shutil.ignore_patterns(".lock"))
    with serve(directory) as running:
        yield running


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is absent under CI: `make browser` must install it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Session:
    """One user's browser context and page, recording what the page logged."""

    page: Any
    context: Any
    web: Web
    username: str
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def go(self, path: str) -> None:
        self.page.goto(self.web.url + path)

    def sign_in(self, then: str = "/") -> None:
        self.go(f"/login?next={then}")
        self.page.fill("#username", self.username)
        self.page.fill("#password", self.web.passwords[self.username])
        self.page.click("#sign-in")
        self.page.wait_for_url(re.compile(re.escape(self.web.url + then) + r"(\?.*)?$"))

    def shot(self, name: str) -> Path:
        path = self.web.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]


@pytest.fixture
def signed_in(browser: Any, web: Web) -> Iterator[Callable[..., Session]]:
    """``signed_in(username)``: a fresh browser context signed in as ``username``."""
    made: list[Session] = []

    def open_as(username: str, *, then: str = "/", sign_in: bool = True) -> Session:
        context = browser.new_context(
            ignore_https_errors=True, viewport={"width": 1280, "height": 900}
        )
        page = context.new_page()
        page.set_default_timeout(30_000)
        s = Session(page, context, web, username)
        page.on("console", lambda m: s.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: s.console.append(f"pageerror: {e}"))

        def on_dialog(d: Any) -> None:
            s.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", on_dialog)
        if sign_in:
            s.sign_in(then)
        made.append(s)
        return s

    yield open_as
    for s in made:
        s.context.close()
