"""A streamed demo day in a store, the service over it, and its first-run users: one per
role, two members' users, and a SIMM party's user."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from marginflow.engine.settings import MarginSettings
from marginflow.service.app import create_app
from marginflow.service.bootstrap import Credential, first_run_users
from marginflow.service.config import ServiceConfig
from marginflow.sim.demo import run_demo
from marginflow.sim.synthetic_book import BookSpec

BOOK = BookSpec(members=3, accounts=24, underlyings=5, series=80, sod_positions=120, seed=9)


@dataclass
class Service:
    app: FastAPI
    directory: Path
    credentials: dict[str, Credential]
    members: list[str]

    def password(self, username: str) -> str:
        return self.credentials[username].password

    def client(self, username: str | None = None) -> TestClient:
        """A client signed in as ``username`` with a bearer token (None: anonymous)."""
        client = TestClient(self.app, raise_server_exceptions=False)
        if username is not None:
            r = client.post(
                "/api/v1/auth/token",
                json={"username": username, "password": self.password(username)},
            )
            assert r.status_code == 200, r.text
            client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return client


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("service-demo")
    run_demo(
        root,
        spec=BOOK,
        settings=MarginSettings(lookback=250),
        trades_count=600,
        market_moves=30,
        partitions=2,
    )
    return root


def service_config(demo_dir: Path, **changes: object) -> ServiceConfig:
    values: dict[str, object] = {
        "db_url": f"sqlite:///{demo_dir / 'margins.db'}",
        "directory": demo_dir / "service",
        "log": f"embedded://{demo_dir / 'log'}",
        "partitions": 2,
        "secure_cookies": False,
        "login_per_minute": 100_000,
        "heavy_per_minute": 100_000,
    }
    values.update(changes)
    return ServiceConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def service(demo_dir: Path) -> Iterator[Service]:
    app = create_app(service_config(demo_dir))
    ctx = app.state.ctx
    ids = [m.member for m in ctx.db.member_margins()]  # M000, M001, M002
    members = ids[1:] + ids[:1]  # the first-run users are then m001.* and m002.user
    made = first_run_users(ctx, members, simm_party="BANK-A")
    yield Service(app, demo_dir, {c.username: c for c in made}, members)
    ctx.close()
