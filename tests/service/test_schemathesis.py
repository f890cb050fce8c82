"""Schemathesis against the service's OpenAPI document, in process: every operation with
generated inputs (valid and not), signed in as a clearing-house user with broad read
permissions and as a member's administrator. No answer may be a 5xx, and every answer must
match the schema the document gives for its status.

The service runs over a copy of the session's demo day (store, log and secrets), so what
the generated requests change (users, keys, proposals, approvals published to the log)
stays in the copy. Bounded: a fixed number of examples per operation, derandomised, so
a run is repeatable and takes a few minutes at most.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from marginflow.app import parameters as use
from marginflow.service.app import create_app
from marginflow.service.context import now_ns
from marginflow.service.passwords import generate_password, hash_password
from tests.service.conftest import Service, service_config
from tests.service.openapi_doc import OPERATIONS, Operation
from tests.service.streams import first_bytes_of_streams

EXAMPLES = 25

IDENTITIES = {
    # username: (roles, member: index into the demo's members, None for the clearing house)
    "fuzz.house": (["auditor", "operations", "risk-analyst"], None),
    "fuzz.approver": (["risk-approver"], None),
    "fuzz.member": (["member-admin"], 0),
}


@dataclass
class Fuzzed:
    schema: Any
    headers: dict[str, dict[str, str]]
    known: dict[str, list[str]]  # path parameter -> ids that exist (own and other member's)


@pytest.fixture(scope="module")
def fuzzed(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """The app over a copy of the demo day, a bearer header per identity, and ids that
    exist for path parameters (random ones are nearly always not found)."""
    root = tmp_path_factory.mktemp("fuzzed")
    # SQLite's own backup: opening and closing the file in this process would drop the
    # locks the session's connections hold on it
    with (
        sqlite3.connect(service.directory / "margins.db") as src,
        sqlite3.connect(root / "margins.db") as dst,
    ):
        src.backup(dst)
    shutil.copytree(service.directory / "log", root / "log")
    shutil.copytree(service.directory / "service", root / "service")
    app = create_app(service_config(root, token_seconds=3600))
    ctx = app.state.ctx
    client = TestClient(app)
    headers: dict[str, dict[str, str]] = {}
    for username, (roles, member) in IDENTITIES.items():
        password = generate_password()
        ctx.access.add_user(
            username,
            password_hash=hash_password(password),
            roles=roles,
            member=None if member is None else service.members[member],
            now=now_ns(),
        )
        r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        headers[username] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    own, other = service.members[:2]
    accounts = [ctx.db.current_margins(member=m, limit=1)[0][0].account for m in (own, other)]
    keys = [
        client.post("/api/v1/auth/api-keys", json={}, headers=h).json()["key_id"]
        for h in headers.values()
    ]
    proposals = [
        use.propose(
            ctx.proposals,
            model="es",
            parameter="confidence",
            value=0.975,
            reason="fuzz",
            by="risk.analyst",
            now=now_ns(),
        ).id
        for _ in range(2)
    ]
    known = {
        "account": accounts,
        "subject": accounts,
        "member": [own, other],
        "key_id": keys,
        "proposal_id": proposals,
        "portfolio": sorted({s.portfolio for s in ctx.db.simm_results().values()}),
    }
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", first_bytes_of_streams(app))
    yield Fuzzed(schema, headers, known)
    ctx.close()


def strategy(op: Operation, fuzzed: Fuzzed) -> st.SearchStrategy[Any]:
    """Cases with generated inputs, valid and not, and valid ones whose path names things
    that exist."""
    operation = fuzzed.schema[op.path][op.method]
    options = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    names = [p["name"] for p in op.spec.get("parameters", []) if p["in"] == "path"]
    if names and all(fuzzed.known.get(n) for n in names):
        for i in range(max(len(fuzzed.known[n]) for n in names)):
            fixed = {n: fuzzed.known[n][i % len(fuzzed.known[n])] for n in names}
            options.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed))
    return st.one_of(options)


BOOK_WIDE = frozenset(
    {"/api/v1/stress", "/api/v1/stress/report", "/api/v1/backtest", "/api/v1/backtest/report"}
)
"""Operations that recompute the whole stored book (a back-test of up to 1,000 days takes
tens of seconds on the demo day): fewer examples, and the time each may take."""
BOOK_WIDE_EXAMPLES = 4
BOOK_WIDE_SECONDS = 300.0


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda o: o.name)
def test_no_operation_answers_a_server_error(op: Operation, fuzzed: Fuzzed) -> None:
    wide = op.path in BOOK_WIDE
    extra: dict[str, Any] = {"timeout": BOOK_WIDE_SECONDS} if wide else {}

    @given(case=strategy(op, fuzzed))
    @settings(
        max_examples=BOOK_WIDE_EXAMPLES if wide else EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: Any) -> None:
        for headers in fuzzed.headers.values():
            response = case.call(headers=headers, **extra)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

    run()
