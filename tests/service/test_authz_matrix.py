"""The authorisation matrix: every operation of the app's OpenAPI document, called by every
first-run user and by nobody, on a resource of the caller's own member and of another
member. Generated from ``app.openapi()``, so a new endpoint is in it the moment it exists.

What each cell must answer:

* nobody signed in: 401 (a public operation: anything but 401/403);
* a role without the operation's ``x-permission`` (:data:`marginflow.service.roles.GRANTS`):
  403;
* a role with it: neither 401 nor 403; on another member's resource 404, as for something
  that does not exist (same reason with the id swapped), and nothing in the body names
  another member's accounts, portfolios or member id beyond what the request sent; on its
  own resource (or, for the clearing house, anyone's) not 404 either;
* every answer of a member's user, whatever its status, names no other member's account,
  portfolio or member id (so a list answered 200 holds only the caller's rows).

Inputs are filled from the OpenAPI schemas: path parameters from the fixtures below (by
parameter name: :data:`SCOPED`, :data:`PERSONAL`, :data:`HOUSE`), required query
parameters and body fields from their schemas, with hints by field name. An operation
without ``x-permission``, or with a path parameter no fixture fills, fails the test: a new
endpoint is added here consciously. :data:`OVERRIDES` lists the few operations whose rule
differs, each with its reason.

Event streams (``text/event-stream``) are read to their first bytes
(:func:`tests.service.streams.first_bytes_of_streams`).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from marginflow.app import parameters as proposals_use
from marginflow.service.context import now_ns
from marginflow.service.roles import Permission, parse_roles, permissions
from marginflow.service.tokens import new_api_key
from marginflow.store.rows import ApiKey
from tests.service.conftest import Service
from tests.service.openapi_doc import DOCUMENT, OPERATIONS, Operation
from tests.service.streams import first_bytes_of_streams

SCOPED = {
    "account": "account",
    "subject": "account",  # explain: an account (or a member) of the caller's scope
    "member": "member",
    "party": "member",
    "portfolio": "portfolio",
    "portfolio_id": "portfolio",
    "upload": "upload",
    "upload_id": "upload",
}
"""Inputs naming a member's data, by parameter or field name, and what they name."""

PERSONAL = {"key_id"}
"""Inputs naming something of one user's: another user's is not found, house or not."""

HOUSE = {"proposal_id"}
"""Inputs naming the clearing house's things, the same for every caller."""

OVERRIDES: dict[tuple[str, str], tuple[str, str]] = {
    ("get", "/api/v1/firm"): (
        "house-only",
        "the firm total is every member's: a member's user is refused (403) although it reads",
    ),
    ("post", "/api/v1/simm/uploads"): (
        "own-party",
        "an upload names the party it is for: a member's user naming another member's party "
        "is refused (403, or 422 when the upload is refused first); nothing is read",
    ),
}
"""(method, path) -> (rule, why): the operations whose expected answers differ."""

TINY_CRIF = (
    "TradeID,PortfolioID,ProductClass,RiskType,Qualifier,Bucket,Label1,Label2,"
    "Amount,AmountCurrency,AmountUSD\n"
    "T1,{portfolio},RatesFX,Risk_IRCurve,USD,1,5y,OIS,1000,USD,1000\n"
)
"""A one-line CRIF for upload endpoints (SIMM 2.x), for a portfolio of the matrix's own."""


# -- schemas to values ---------------------------------------------------------------------
def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = DOCUMENT["components"]["schemas"][name]
    return schema


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    schema = _resolve(schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(s) for s in schema[key]]
            return next((s for s in options if s.get("type") != "null"), options[0])
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(part))
        return merged
    return schema


_STRING_CANDIDATES = ("x", "call", "american", "json", "proposed", "2019-01-02", "USD", "1")


def _string(schema: dict[str, Any], where: str) -> str:
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("format") == "date-time":
        return "2019-01-02T12:00:00Z"
    if schema.get("format") == "date":
        return "2019-01-02"
    pattern = schema.get("pattern")
    size = max(int(schema.get("minLength", 1)), 1)
    candidates = [c * size if len(c) == 1 else c for c in _STRING_CANDIDATES]
    for candidate in candidates:
        if pattern is None or re.fullmatch(pattern.strip("^$"), candidate):
            return candidate
    raise AssertionError(f"{where}: no value for pattern {pattern!r}: add a hint")


def value_of(schema: dict[str, Any], where: str, hint: Callable[[str], Any | None]) -> Any:
    """A minimal valid value of ``schema`` (required fields only), hints first by name."""
    name = where.rsplit(".", 1)[-1]
    hinted = hint(name)
    if hinted is not None:
        return hinted
    schema = _non_null(schema)
    if "example" in schema:
        return schema["example"]
    if schema.get("examples"):
        return schema["examples"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {
            key: value_of(props[key], f"{where}.{key}", hint) for key in schema.get("required", [])
        }
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        return [value_of(schema.get("items", {}), f"{where}[]", hint) for _ in range(count)]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        low = float(schema.get("minimum", -1e300))
        if "exclusiveMinimum" in schema:
            low = float(schema["exclusiveMinimum"]) + 1e-6
        return min(max(1.0, low), float(schema.get("maximum", 1e300)))
    if kind == "boolean":
        return False
    if kind == "string" or kind is None:
        return _string(schema, where)
    raise AssertionError(f"{where}: no value for schema {schema}")


# -- who calls ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Who:
    """A caller: a first-run user (None: nobody), their member and permissions."""

    username: str | None
    member: str | None
    permissions: frozenset[Permission]

    @property
    def house(self) -> bool:
        return self.username is not None and self.member is None

    def __str__(self) -> str:
        return self.username or "anonymous"


@dataclass
class World:
    """The fixtures the cells draw on, over the session's demo day."""

    service: Service
    members: list[str]  # clearing members, largest margin first
    accounts: dict[str, list[str]]
    portfolios: dict[str, list[str]]
    instrument: str
    callers: list[Who]
    tokens: dict[str, str]
    uploads: dict[str, str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)
    client: TestClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = TestClient(
            first_bytes_of_streams(self.service.app), raise_server_exceptions=False
        )

    def own(self, who: Who) -> str:
        return who.member if who.member is not None else self.members[0]

    def other(self, who: Who) -> str:
        return self.members[1] if who.member != self.members[1] else self.members[0]

    def foreign_ids(self, who: Who) -> set[str]:
        """What a member's user must never read: other members' ids, accounts, portfolios."""
        if who.member is None:
            return set()
        out = {m for m in self.members if m != who.member}
        for member, names in [*self.accounts.items(), *self.portfolios.items()]:
            if member != who.member:
                out.update(names)
        return out

    def resource(self, kind: str, member: str) -> str | None:
        if kind == "member":  # a clearing member (a SIMM party has no margins to read)
            return member if member in self.members else None
        if kind == "account":
            return (self.accounts.get(member) or [None])[0]
        if kind == "portfolio":
            return (self.portfolios.get(member) or [None])[0]
        if kind == "upload":
            return self.upload(member)
        raise AssertionError(kind)

    def upload(self, member: str) -> str | None:
        """An upload of ``member``'s, made through the API by its user (None: no upload
        endpoint, or no user of that member)."""
        if member in self.uploads:
            return self.uploads[member]
        ops = [o for o in OPERATIONS if o.method == "post" and o.path.endswith("/uploads")]
        user = next((c for c in self.callers if c.member == member), None)
        if not ops or user is None or user.username is None:
            return None
        crif = TINY_CRIF.format(portfolio=f"MX-{member}")
        r = self.client.post(
            ops[0].path,
            files={"file": ("crif.csv", crif.encode(), "text/csv")},
            headers=self.auth(user),
        )
        assert r.status_code < 300, f"upload as {user}: {r.status_code} {r.text}"
        body = r.json()
        found = next((body[k] for k in ("id", "upload_id", "upload") if k in body), None)
        assert found is not None, f"upload answer names no id: {body}"
        self.uploads[member] = str(found)
        return self.uploads[member]

    def auth(self, who: Who) -> dict[str, str]:
        if who.username is None:
            return {}
        return {"Authorization": f"Bearer {self.tokens[who.username]}"}

    def api_key_of(self, username: str) -> str:
        """A fresh API key of ``username``'s (its id)."""
        key_id, _, digest = new_api_key()
        now = now_ns()
        access = self.service.app.state.ctx.access
        access.add_api_key(ApiKey(key_id, username, digest, "matrix", now, now + 86_400 * 10**9))
        return key_id

    def proposal(self) -> str:
        """A fresh proposal of the risk analyst's, awaiting a decision."""
        made = proposals_use.propose(
            self.service.app.state.ctx.proposals,
            model="es",
            parameter="confidence",
            value=0.99,
            reason="matrix",
            by="risk.analyst",
            now=now_ns(),
        )
        return made.id


@pytest.fixture(scope="module")
def world(service: Service) -> World:
    ctx = service.app.state.ctx
    db = ctx.db
    members = list(service.members)
    rows, _ = db.current_margins()
    accounts: dict[str, list[str]] = {}
    for m in rows:
        accounts.setdefault(m.member, []).append(m.account)
    # A SIMM portfolio for each clearing member too (the demo's are the banks').
    template = next(iter(db.simm_results().values()))
    db.write(
        simm=[
            replace(template, party=m, portfolio=f"{m}-PF9", source_offset=10**9 + i)
            for i, m in enumerate(members)
        ]
    )
    portfolios: dict[str, list[str]] = {}
    for s in db.simm_results().values():
        portfolios.setdefault(s.party, []).append(s.portfolio)
    first = accounts[members[0]][0]
    held = db.positions(first, db.current_margin(first).position_version)
    callers = [Who(None, None, frozenset())]
    tokens: dict[str, str] = {}
    for name, cred in service.credentials.items():
        callers.append(Who(name, cred.member, permissions(parse_roles(cred.roles))))
        r = service.client().post(
            "/api/v1/auth/token", json={"username": name, "password": cred.password}
        )
        assert r.status_code == 200, r.text
        tokens[name] = r.json()["access_token"]
    return World(
        service,
        members,
        accounts,
        portfolios,
        instrument=sorted(held)[0],
        callers=callers,
        tokens=tokens,
    )


# -- the cells -----------------------------------------------------------------------------
@dataclass
class Cell:
    op: Operation
    who: Who
    target: str  # "own", "other" or "-" (no input names a member's or a user's data)
    member: str | None  # the member whose data the request names
    personal: bool = False  # an input names a user's own thing (target: whose)
    sent: set[str] = field(default_factory=set)  # the member data named in the request

    def __str__(self) -> str:
        at = "" if self.target == "-" else f" on {self.target} ({self.member})"
        return f"{self.op.name} as {self.who}{at}"


class NotApplicableError(Exception):
    """The caller's member has no such resource (e.g. a SIMM party has no accounts)."""


def _params(op: Operation, where: str) -> list[dict[str, Any]]:
    return [p for p in op.spec.get("parameters", []) if p["in"] == where]


def _body_schema(op: Operation) -> tuple[str, dict[str, Any]] | None:
    content = op.spec.get("requestBody", {}).get("content", {})
    for media, spec in content.items():
        return media, _resolve(spec.get("schema", {}))
    return None


def scoped_inputs(op: Operation) -> tuple[bool, bool]:
    """(a required input names a member's data, an optional one does)."""
    required = optional = False
    for p in op.spec.get("parameters", []):
        if p["name"] in SCOPED:
            if p.get("required") or p["in"] == "path":
                required = True
            else:
                optional = True
    body = _body_schema(op)
    if body is not None:
        schema = _non_null(body[1])
        needed = set(schema.get("required", []))
        for name in schema.get("properties", {}):
            if name in SCOPED:
                if name in needed:
                    required = True
                else:
                    optional = True
    return required, optional


def cells_of(op: Operation, world: World) -> Iterator[Cell]:
    required, optional = scoped_inputs(op)
    personal = any(p["name"] in PERSONAL for p in _params(op, "path"))
    for who in world.callers:
        if personal:
            yield Cell(op, who, "own", None, personal=True)
            yield Cell(op, who, "other", None, personal=True)
            continue
        if not required:
            yield Cell(op, who, "-", None)
        if required or optional:
            yield Cell(op, who, "own", world.own(who))
            yield Cell(op, who, "other", world.other(who))


def request_of(cell: Cell, world: World) -> dict[str, Any]:
    """The keyword arguments of ``TestClient.request`` for ``cell``."""
    op, who = cell.op, cell.who
    creds = world.service.credentials
    login_as = who.username or f"{world.members[0].lower()}.user"

    def scoped(name: str) -> str:
        assert cell.member is not None
        value = world.resource(SCOPED[name], cell.member)
        if value is None:
            raise NotApplicableError(f"{cell.member} has no {SCOPED[name]}")
        cell.sent.add(value)
        return value

    def hint(name: str) -> Any | None:
        if name in SCOPED and cell.member is not None:
            return scoped(name)
        hints: dict[str, Callable[[], Any]] = {
            "username": lambda: (
                login_as if op.path.endswith(("/login", "/token")) else f"mx{next(world.counter)}"
            ),
            "password": lambda: creds[login_as].password,
            "current": lambda: creds[login_as].password,
            "new": lambda: creds[login_as].password,
            "roles": lambda: ["member-user"],
            "parameter": lambda: "confidence",
            "value": lambda: 0.99,
            "instrument": lambda: world.instrument,
        }
        return hints[name]() if name in hints else None

    path = op.path
    for p in _params(op, "path"):
        name = p["name"]
        if name in SCOPED:
            value = scoped(name)
        elif name in PERSONAL:
            owner = who.username or "auditor"
            if cell.target == "other":
                owner = next(u for u in creds if u != owner)
            value = world.api_key_of(owner)
        elif name in HOUSE:
            value = world.proposal()
        else:
            raise AssertionError(
                f"{op.name}: path parameter {name!r} has no fixture: say what it names "
                "(SCOPED, PERSONAL or HOUSE in tests/service/test_authz_matrix.py)"
            )
        path = path.replace("{" + name + "}", value)
    query: dict[str, Any] = {}
    for p in _params(op, "query"):
        name = p["name"]
        if name in SCOPED and cell.member is not None:
            query[name] = scoped(name)
        elif p.get("required"):
            query[name] = value_of(p.get("schema", {}), f"{op.name} ?{name}", hint)
    kwargs: dict[str, Any] = {"method": op.method.upper(), "url": path, "params": query}
    body = _body_schema(op)
    if body is not None:
        media, schema = body
        value = value_of(schema, f"{op.name} body", hint)
        if cell.member is not None:  # the optional inputs naming a member's data, too
            for name in _non_null(schema).get("properties", {}):
                if name in SCOPED and name not in value:
                    value[name] = scoped(name)
        if media == "application/json":
            kwargs["json"] = value
        elif media == "multipart/form-data":
            files, data = {}, {}
            props = _non_null(schema).get("properties", {})
            for name in _non_null(schema).get("required", []):
                if _non_null(props[name]).get("format") == "binary":
                    # a portfolio of the matrix's own: other tests read the demo's histories
                    crif = TINY_CRIF.format(portfolio=f"MX-{cell.member or 'house'}").encode()
                    files[name] = ("crif.csv", crif, "text/csv")
                else:
                    data[name] = value[name]
            kwargs["files"], kwargs["data"] = files, data
        else:
            raise AssertionError(f"{op.name}: no body for media type {media!r}")
    kwargs["headers"] = world.auth(who)
    return kwargs


# -- the rule -----------------------------------------------------------------------------
def _names(text: str, ids: set[str]) -> list[str]:
    return sorted(
        i for i in ids if re.search(rf"(?<![A-Za-z0-9]){re.escape(i)}(?![A-Za-z0-9])", text)
    )


def check(cell: Cell, r: httpx.Response, world: World) -> list[str]:
    """What is wrong with ``r`` as the answer of ``cell`` (nothing: [])."""
    op, who = cell.op, cell.who
    permission = op.permission
    rule = OVERRIDES.get((op.method, op.path), ("", ""))[0]
    status = r.status_code
    problems = []
    if status >= 500:
        problems.append(f"{status}: {r.text[:200]}")
    if permission == "public":
        if status in (401, 403):
            problems.append(f"{status} from a public operation")
    elif who.username is None:
        if status != 401:
            problems.append(f"{status}, want 401 without credentials")
    elif Permission(permission) not in who.permissions:
        if status != 403:
            problems.append(f"{status}, want 403: the role lacks {permission}")
    elif rule == "house-only" and not who.house:
        if status != 403:
            problems.append(f"{status}, want 403: {op.name} is the clearing house's")
    elif status in (401, 403):
        problems.append(f"{status} although the role has {permission}: {r.text[:200]}")
    elif cell.target == "other" and cell.personal:
        if status != 404:
            problems.append(f"{status}, want 404: another user's")
    elif rule == "own-party" and cell.target == "other" and not who.house:
        if status not in (403, 422):
            problems.append(f"{status}, want 403 or 422: an upload for another member's party")
    elif cell.target == "other" and not who.house:
        if status != 404:
            problems.append(f"{status}, want 404: another member's data")
    elif cell.target in ("own", "other") and status == 404:
        problems.append(f"404 on data in the caller's scope: {r.text[:200]}")
    if status < 500:
        text = r.content.decode("utf-8", "replace")
        for value in cell.sent:
            text = text.replace(value, "")
        leaked = _names(text, world.foreign_ids(who))
        if leaked:
            problems.append(f"{status} names another member's data: {', '.join(leaked)}")
    return problems


def indistinguishable(
    cell: Cell, r: httpx.Response, kwargs: dict[str, Any], world: World
) -> list[str]:
    """Another member's resource answers as one that does not exist (same status, field
    and reason, the id aside)."""
    if r.status_code != 404 or not cell.sent or "json" not in r.headers.get("content-type", ""):
        return []
    fake = "ZZ-NO-SUCH-9"
    swapped = dict(kwargs)
    for real in cell.sent:
        swapped["url"] = swapped["url"].replace(real, fake)
        swapped["params"] = {k: (fake if v == real else v) for k, v in swapped["params"].items()}
        if isinstance(swapped.get("json"), dict):
            swapped["json"] = {k: (fake if v == real else v) for k, v in swapped["json"].items()}
    world.client.cookies.clear()
    missing = world.client.request(**swapped)
    if missing.status_code != 404:
        return [f"a missing id answers {missing.status_code}, another member's 404"]
    mine, theirs = r.json()["error"], missing.json()["error"]
    for real in cell.sent:
        if mine["reason"].replace(real, fake) == theirs["reason"] and (
            mine["field"] == theirs["field"]
        ):
            return []
    return [f"404 differs from a missing id's: {mine['reason']!r} vs {theirs['reason']!r}"]


# -- the tests -----------------------------------------------------------------------------
def test_every_operation_declares_a_permission() -> None:
    known = {str(p) for p in Permission} | {"public"}
    missing = [o.name for o in OPERATIONS if o.permission is None]
    unknown = [f"{o.name}: {o.permission}" for o in OPERATIONS if o.permission not in known]
    assert not missing, f"operations without x-permission: {missing}"
    assert not unknown, f"operations with an unknown x-permission: {unknown}"
    assert all(key in {(o.method, o.path) for o in OPERATIONS} for key in OVERRIDES), (
        "an override names an operation that no longer exists"
    )


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda o: o.name)
def test_authorisation_matrix(op: Operation, world: World, record_property: Any) -> None:
    problems: list[str] = []
    done = skipped = 0
    for cell in cells_of(op, world):
        try:
            kwargs = request_of(cell, world)
        except NotApplicableError:
            skipped += 1
            continue
        world.client.cookies.clear()  # a sign-in cell's session must not carry over
        r = world.client.request(**kwargs)
        found = check(cell, r, world)
        if not found and cell.target == "other" and not cell.who.house:
            found = indistinguishable(cell, r, kwargs, world)
        problems += [f"{cell}: {p}" for p in found]
        done += 1
    record_property("cells", done)
    _CELLS[op.name] = done
    assert not problems, "\n".join(problems)


_CELLS: dict[str, int] = {}


def test_matrix_size(world: World) -> None:
    """Say how many cells ran (and that every operation ran some)."""
    if len(_CELLS) < len(OPERATIONS):
        pytest.skip("the matrix did not run in full in this session")
    total = sum(_CELLS.values())
    print(
        json.dumps({"operations": len(OPERATIONS), "callers": len(world.callers), "cells": total})
    )
    assert all(n > 0 for n in _CELLS.values())


def test_an_endpoint_without_a_permission_is_refused() -> None:
    from fastapi import APIRouter

    from marginflow.service.app import declare_permissions

    router = APIRouter(prefix="/api/v1")

    @router.get("/open")
    def _open() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="/api/v1/open declares no permission"):
        declare_permissions(router.routes)
