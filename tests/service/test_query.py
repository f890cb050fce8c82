"""Ad hoc queries, on SQLite and PostgreSQL: a member reads its own rows only (a property
over random queries, which also never answer 5xx), every malformed query is answered 422
naming the field, rows and time are limited, and every query is audited."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from marginflow.service.api.models import iso
from marginflow.service.api.query import TABLES, QueryTimeoutError, run_limited
from marginflow.store import Database
from tests.service.conftest import Service
from tests.service.pg_service import postgres_service

QUERY = "/api/v1/query"
SCOPE_COLUMN = {"margins": "member", "members": "member", "simm": "party", "positions": "account"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, service: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    if request.param == "sqlite":
        yield service
        return
    with postgres_service(service, tmp_path_factory.mktemp("pg-query")) as pg:
        yield pg


def day(store: Service) -> dict[str, str]:
    """A from/to range covering every stored event."""
    db: Database = store.app.state.ctx.db
    h = db.t.account_margin_history
    lo, hi = db._rows(sa.select(sa.func.min(h.c.event_time), sa.func.max(h.c.event_time)))[0]
    return {"from": iso(lo), "to": iso(hi + 1000)}


def users(store: Service) -> dict[str, str | None]:
    """Username -> the member it is scoped to (None: the clearing house)."""
    first, second = store.members[:2]
    return {
        f"{first.lower()}.user": first,
        f"{second.lower()}.user": second,
        "bank-a.user": "BANK-A",
        "auditor": None,
    }


def accounts_of(store: Service, member: str) -> set[str]:
    db: Database = store.app.state.ctx.db
    a = db.t.account_margin
    return {r[0] for r in db._rows(sa.select(a.c.account).where(a.c.member == member))}


def in_scope(store: Service, member: str | None, table: str, values: list[Any]) -> bool:
    if member is None:
        return True
    if table == "positions":
        return set(values) <= accounts_of(store, member)
    return set(values) <= {member}


def test_a_member_queries_its_own_margins_and_the_house_every_members(store: Service) -> None:
    first = store.members[0]
    body = {"table": "margins", "columns": ["account", "member", "margin"], **day(store)}
    mine = store.client(f"{first.lower()}.user").post(QUERY, json=body).json()
    assert mine["columns"] == ["account", "member", "margin"]
    assert mine["rows"]
    assert {r[1] for r in mine["rows"]} == {first}
    every = store.client("auditor").post(QUERY, json={**body, "limit": 10_000}).json()
    assert {r[1] for r in every["rows"]} == set(store.members)
    assert len(every["rows"]) > len(mine["rows"])
    assert every["elapsed_ms"] >= 0


def test_each_table_is_scoped(store: Service) -> None:
    first = store.members[0]
    client = store.client(f"{first.lower()}.user")
    positions = client.post(QUERY, json={"table": "positions", **day(store)}).json()
    accounts = {r[positions["columns"].index("account")] for r in positions["rows"]}
    assert accounts
    assert accounts <= accounts_of(store, first)
    members = client.post(QUERY, json={"table": "members"}).json()
    assert [r[0] for r in members["rows"]] == [first]
    simm_range = {"from": "2000-01-01T00:00:00", "to": "2000-01-31T00:00:00"}
    simm = store.client("bank-a.user").post(QUERY, json={"table": "simm", **day(store)}).json()
    assert {r[0] for r in simm["rows"]} == {"BANK-A"}
    none = client.post(QUERY, json={"table": "simm", **simm_range}).json()
    assert none["rows"] == []


def test_filters_order_and_limit(store: Service) -> None:
    client = store.client("auditor")
    account = client.post(
        QUERY, json={"table": "margins", "columns": ["account"], "limit": 1, **day(store)}
    ).json()["rows"][0][0]
    body: dict[str, Any] = {
        "table": "margins",
        "columns": ["account", "margin", "event_time"],
        "filters": [
            {"column": "account", "op": "=", "value": account},
            {"column": "margin", "op": ">=", "value": 0},
            {"column": "event_time", "op": ">", "value": day(store)["from"]},
        ],
        "order_by": [{"column": "margin", "desc": True}],
        **day(store),
    }
    got = client.post(QUERY, json=body).json()
    margins = [r[1] for r in got["rows"]]
    assert margins == sorted(margins, reverse=True)
    assert {r[0] for r in got["rows"]} == {account}
    assert got["truncated"] is False
    one = client.post(QUERY, json={**body, "limit": 1}).json()
    assert len(one["rows"]) == 1
    assert one["truncated"] is (len(got["rows"]) > 1)
    prefix = account[:2]
    like = {"column": "account", "op": "like_prefix", "value": prefix}
    starts = client.post(QUERY, json={**body, "filters": [like]}).json()["rows"]
    assert starts
    assert all(r[0].startswith(prefix) for r in starts)
    for wild in ("%", "_", prefix + "%"):
        like = {"column": "account", "op": "like_prefix", "value": wild}
        assert client.post(QUERY, json={**body, "filters": [like]}).json()["rows"] == []
    between = {"column": "margin", "op": "between", "value": [0, 1e300]}
    assert client.post(QUERY, json={**body, "filters": [between]}).json()["rows"]
    within = {"column": "account", "op": "in", "value": [account, "nobody"]}
    assert {
        r[0] for r in client.post(QUERY, json={**body, "filters": [within]}).json()["rows"]
    } == {account}
    is_null = {"column": "es", "op": "!=", "value": None}
    assert client.post(QUERY, json={**body, "filters": [is_null]}).status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"table": "accounts; DROP TABLE x"}, "table"),
        ({"columns": ["account", "password_hash"]}, "columns.1"),
        ({"filters": [{"column": "secret", "op": "=", "value": 1}]}, "filters.0.column"),
        ({"filters": [{"column": "margin", "op": "~", "value": 1}]}, "filters.0.op"),
        ({"filters": [{"column": "margin", "op": "=", "value": "1"}]}, "filters.0.value"),
        ({"filters": [{"column": "margin", "op": "=", "value": True}]}, "filters.0.value"),
        ({"filters": [{"column": "account", "op": "=", "value": "a\x00b"}]}, "filters.0.value"),
        (
            {"filters": [{"column": "position_version", "op": "<", "value": 2**70}]},
            "filters.0.value",
        ),
        ({"filters": [{"column": "margin", "op": "in", "value": []}]}, "filters.0.value"),
        ({"filters": [{"column": "margin", "op": "between", "value": [1]}]}, "filters.0.value"),
        ({"filters": [{"column": "margin", "op": "like_prefix", "value": "1"}]}, "filters.0.value"),
        ({"filters": [{"column": "margin", "op": "<", "value": None}]}, "filters.0.value"),
        ({"order_by": [{"column": "nope"}]}, "order_by.0.column"),
        ({"limit": 10_001}, "limit"),
        ({"from": None}, "from"),
        ({"to": "2000-01-01T00:00:00"}, "to"),
        ({"from": "2000-01-01T00:00:00", "to": "2000-03-01T00:00:00"}, "to"),
        ({"sql": "SELECT 1"}, "sql"),
    ],
)
def test_a_malformed_query_is_refused_naming_the_field(
    service: Service, change: dict[str, Any], field: str
) -> None:
    body = {"table": "margins", **day(service), **change}
    r = service.client("auditor").post(QUERY, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_a_time_range_is_refused_where_there_is_no_time_series(service: Service) -> None:
    r = service.client("auditor").post(QUERY, json={"table": "members", **day(service)})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "from"


def test_a_query_is_audited_and_downloads_as_csv_or_parquet(service: Service) -> None:
    first = service.members[0]
    client = service.client(f"{first.lower()}.user")
    body = {"table": "margins", "columns": ["account", "member", "driver"], **day(service)}
    r = client.post(QUERY, json=body, params={"format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "account,member,driver"
    assert {line.split(",")[1] for line in lines[1:]} == {first}
    p = client.post(QUERY, json=body, params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(p.content))
    assert table.column_names == ["account", "member", "driver"]
    assert set(table.column("member").to_pylist()) == {first}
    audit = service.app.state.ctx.audit
    queries = [e for e in audit.entries(action="data.query") if e.actor == f"{first.lower()}.user"]
    assert queries
    assert queries[-1].subject == "margins"
    assert queries[-1].security
    exports = [e for e in audit.entries(action="data.export") if e.actor == queries[-1].actor]
    assert len(exports) >= 2


def test_who_may_query(service: Service) -> None:
    body = {"table": "members"}
    assert service.client("ops").post(QUERY, json=body).status_code == 403
    assert service.client().post(QUERY, json=body).status_code == 401


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_query_over_its_time_is_stopped(dialect: str, tmp_path: Path) -> None:
    from tests.postgres import postgres_or_skip

    url = f"sqlite:///{tmp_path / 's.db'}" if dialect == "sqlite" else postgres_or_skip()
    db = Database(url, prefix=f"q{dialect[:2]}_")
    try:
        endless = sa.text(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        )
        with pytest.raises(QueryTimeoutError):
            run_limited(db, endless, 0.2)  # type: ignore[arg-type]
        # the connection is left usable: no handler, no read-only mode
        assert run_limited(db, sa.select(sa.literal(1)), 5.0) == [(1,)]
        with db.transaction() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS qprobe (x integer)"))
            conn.execute(sa.text("DROP TABLE qprobe"))
    finally:
        db.drop()
        db.close()


# -- the property: random queries never reach another member's rows, never answer 5xx -------
_OPS = ["=", "!=", "<", "<=", ">", ">=", "in", "between", "like_prefix"]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=2**62),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["M000", "M001", "BANK-A", "BANK-B", "%", "_", "2024-05-31T12:00:00"]),
)


def _mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """``usual`` nine times in ten, else ``other``."""
    return st.integers(0, 9).flatmap(lambda k: other if k == 0 else usual)


_TYPED = {
    "text": st.one_of(
        st.sampled_from(["M000", "M001", "M002", "BANK-A", "BANK-B", "M000-A01", "", "%"]),
        st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12),
    ),
    "int": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "time": st.integers(min_value=0, max_value=2**62),
}


@st.composite
def _filter(draw: st.DrawFn, table: str, names: st.SearchStrategy[str]) -> dict[str, Any]:
    """A filter, its value mostly of the column's kind (else anything)."""
    column = draw(names)
    kind = TABLES[table].columns.get(column, "text")
    one = _mostly(_TYPED[kind], _scalars)
    op = draw(st.sampled_from(_OPS))
    if op == "between":
        value = draw(st.one_of(st.lists(one, min_size=2, max_size=2), _scalars))
    elif op == "in":
        value = draw(st.one_of(st.lists(one, min_size=1, max_size=4), _scalars))
    else:
        value = draw(_mostly(one, st.lists(_scalars, max_size=2)))
    return {"column": column, "op": op, "value": value}


@st.composite
def _queries(draw: st.DrawFn) -> dict[str, Any]:
    """A query of a random table, its names mostly the table's own (else any name)."""
    table = draw(st.sampled_from(sorted(TABLES)))
    own = sorted(TABLES[table].columns)
    names = _mostly(st.sampled_from(own), st.text(max_size=8))
    orders = st.fixed_dictionaries({"column": names, "desc": st.booleans()})
    return {
        "table": table,
        "columns": draw(st.lists(names, max_size=4)),
        "filters": draw(st.lists(_filter(table, names), max_size=3)),
        "order_by": draw(st.lists(orders, max_size=2)),
        "limit": draw(_mostly(st.integers(1, 50), st.integers(-1, 12_000))),
    }


_ranges = st.one_of(
    st.just("auto"),
    st.just("auto"),
    st.just("day"),
    st.just("none"),
    st.tuples(
        st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1)),
        st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=40)),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(query=_queries(), span=_ranges, who=st.integers(min_value=0, max_value=3))
def test_random_queries_never_leave_the_scope_nor_fail(
    store: Service, query: dict[str, Any], span: Any, who: int
) -> None:
    username, member = list(users(store).items())[who]
    scope_column = SCOPE_COLUMN[query["table"]]
    if query["columns"]:
        query["columns"] = [*query["columns"], scope_column]
    if span == "auto":  # what the table needs: a range on a time series, else none
        span = "none" if TABLES[query["table"]].time is None else "day"
    if span == "day":
        query.update(day(store))
    elif span != "none":
        start, length = span
        query.update({"from": start.isoformat(), "to": (start + length).isoformat()})
    # NaN and infinities too: Python's JSON reader takes them, so a client may send them
    sent = json.dumps(query, allow_nan=True)
    r = store.client(username).post(
        QUERY, content=sent, headers={"Content-Type": "application/json"}
    )
    assert r.status_code < 500, r.text
    assert r.status_code in (200, 422), r.text
    event(f"{query['table']} {r.status_code}")
    if r.status_code == 200:
        got = r.json()
        column = got["columns"].index(scope_column)
        assert in_scope(store, member, query["table"], [row[column] for row in got["rows"]])
