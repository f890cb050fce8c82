"""Every store test runs against both databases: SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from marginflow.store import Database
from tests.postgres import postgres_or_skip


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return postgres_or_skip()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}_"


@pytest.fixture
def db(url: str, prefix: str) -> Iterator[Database]:
    store = Database(url, prefix=prefix)
    try:
        yield store
    finally:
        store.drop()
        store.close()
