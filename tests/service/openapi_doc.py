"""The service's OpenAPI document and its operations, for tests generated from it (the
authorisation matrix, schemathesis): one parametrised test per operation, known at
collection time from an app over an empty store (the routes do not depend on the data)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marginflow.service.app import create_app
from marginflow.service.config import ServiceConfig

METHODS = ("get", "post", "put", "patch", "delete")


def document() -> dict[str, Any]:
    """The OpenAPI document of the service."""
    with tempfile.TemporaryDirectory(prefix="mf-openapi-") as tmp:
        config = ServiceConfig(db_url=f"sqlite:///{Path(tmp) / 'x.db'}", directory=Path(tmp))
        app = create_app(config)
        try:
            return app.openapi()
        finally:
            app.state.ctx.close()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any] = field(repr=False, hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def permission(self) -> str | None:
        value = self.spec.get("x-permission")
        return None if value is None else str(value)


DOCUMENT = document()
OPERATIONS = [
    Operation(method, path, spec)
    for path, item in sorted(DOCUMENT["paths"].items())
    for method, spec in item.items()
    if method in METHODS
]
