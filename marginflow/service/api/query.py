"""Ad hoc queries over your own data: a small JSON query language, never SQL text.

::

    POST /api/v1/query
    {"table": "margins",
     "columns": ["account", "margin", "event_time"],
     "filters": [{"column": "margin", "op": ">=", "value": 1e6},
                 {"column": "account", "op": "like_prefix", "value": "M001-"}],
     "order_by": [{"column": "margin", "desc": true}],
     "limit": 100,
     "from": "2024-05-31T00:00:00Z", "to": "2024-06-01T00:00:00Z"}

A query is compiled to one SQLAlchemy Core SELECT over a whitelist: the tables of
:data:`TABLES` and their columns, each of a declared kind that every filter value is checked
against before anything reaches the database (text has no NUL and is at most 1,000
characters, integers fit 64 bits, numbers are finite; ``like_prefix`` escapes ``%`` and
``_``). Nothing the caller sends becomes SQL text: names are looked up in the whitelist and
values are bound parameters.

Limits, from the service config: at most ``query_rows`` rows (``truncated`` says when more
matched), a time range (``from``/``to``, on ``event_time``) required on the time series and
no longer than ``query_days``, and a statement timeout of ``query_seconds`` (PostgreSQL:
``SET LOCAL statement_timeout`` in a READ ONLY transaction; SQLite: a progress handler
that interrupts the statement, with ``PRAGMA query_only`` on). Whose rows are seen is the
query scope's :meth:`~marginflow.service.scope.Scope.table_clause`, applied to every query;
this module never names a member.

Every query is audited (``data.query``) and counts as a heavy request; ``?format=csv`` or
``parquet`` answers the rows as a download (an audited, encrypted-at-rest export).
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from marginflow.service.auth import Caller, heavy, require
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission
from marginflow.service.tables import Format, export
from marginflow.store import Database

router = APIRouter(prefix="/api/v1", tags=["ad hoc queries"])
Querier = Annotated[Caller, Depends(require(Permission.QUERY))]
Fmt = Annotated[Format, Query(description="json, or csv / parquet to download (audited)")]

Kind = Literal["text", "int", "float", "time"]
"""A column's kind: ``time`` is UTC nanoseconds (an integer), given in filters as an
integer or an ISO 8601 time."""
INT64 = (-(2**63), 2**63 - 1)
MAX_TEXT = 1000
MAX_LIST = 1000

MSG_COLUMN = "unknown column {value!r} of table {table} (columns: {choices})"
MSG_LIMIT = "must be at most {limit} (the service's row limit)"
MSG_RANGE_NEEDED = "table {table} is a time series: give a from/to range (at most {days} days)"
MSG_RANGE_LONG = "the range is over {days} days"
MSG_RANGE_ORDER = "must be after from"
MSG_TIMEOUT = "the query ran over {seconds:g} s and was stopped: narrow the range or filters"
MSG_VALUE_LIST = "{op} needs a list of {n}"
MSG_VALUE_SCALAR = "{op} needs one value, not a list"
MSG_VALUE_KIND = "column {column} holds {kind}: {value!r} is not one"
MSG_NULL = "null is only compared with = or !="
MSG_PREFIX = "like_prefix needs a text column and a text value"
MSG_EXPORT = "your roles do not allow export (CSV and Parquet downloads)"


@dataclass(frozen=True, slots=True)
class Table:
    """A queryable table: where it is read from, its columns and their kinds, its time
    column (None: not a time series) and its default order."""

    source: Callable[[Database], sa.FromClause]
    columns: dict[str, Kind]
    time: str | None
    order: tuple[str, ...]


def _members(db: Database) -> sa.FromClause:
    # a member's margin is the sum of its partitions' partial sums (as Database reads it)
    p = db.t.member_margin_partial
    return (
        sa.select(
            p.c.member,
            sa.func.sum(p.c.margin).label("margin"),
            sa.func.sum(p.c.accounts).label("accounts"),
            sa.func.max(p.c.event_time).label("event_time"),
        )
        .group_by(p.c.member)
        .subquery("members")
    )


_MARGIN: dict[str, Kind] = {
    "account": "text",
    "member": "text",
    "margin": "float",
    "model": "text",
    "es": "float",
    "var": "float",
    "apc": "float",
    "concentration": "float",
    "driver": "text",
    "business_date": "text",
    "position_version": "int",
    "market_offset": "int",
    "market_from": "int",
    "market_ticks": "int",
    "market_moves": "int",
    "event_time": "time",
    "computed_time": "time",
    "settings": "text",
    "book_load": "text",
}
_SIMM: dict[str, Kind] = {
    "party": "text",
    "portfolio": "text",
    "business_date": "text",
    "counterparty": "text",
    "submission_id": "text",
    "simm_version": "text",
    "mpor_days": "int",
    "currency": "text",
    "collect_im": "float",
    "post_im": "float",
    "collect_regulation": "text",
    "post_regulation": "text",
    "rows": "int",
    "event_time": "time",
    "computed_time": "time",
}
TABLES: dict[str, Table] = {
    "margins": Table(
        lambda db: db.t.account_margin_history,
        _MARGIN,
        "event_time",
        ("event_time", "account"),
    ),
    "positions": Table(
        lambda db: db.t.position,
        {
            "account": "text",
            "version": "int",
            "instrument": "text",
            "quantity": "int",
            "event_time": "time",
        },
        "event_time",
        ("event_time", "account", "instrument"),
    ),
    "simm": Table(
        lambda db: db.t.simm_result_history,
        _SIMM,
        "event_time",
        ("event_time", "party", "portfolio"),
    ),
    "members": Table(
        _members,
        {"member": "text", "margin": "float", "accounts": "int", "event_time": "time"},
        None,
        ("member",),
    ),
}
"""The queryable tables: ``margins`` (every stored account margin), ``positions`` (each
account's changed holdings at each version), ``simm`` (every SIMM result of the stream),
``members`` (each member's current margin)."""

Scalar = str | int | float | bool | None


class Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = Field(max_length=64)
    op: Literal["=", "!=", "<", "<=", ">", ">=", "in", "between", "like_prefix"]
    value: Scalar | list[Scalar] = Field(
        description="one value; a list for in (1 to 1,000) and between (2)"
    )


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str = Field(max_length=64)
    desc: bool = False


class AdHocQuery(BaseModel):
    """A query: ``table``, the ``columns`` wanted (default all), ``filters`` (all must
    hold), ``order_by``, ``limit``, and ``from``/``to`` on the time column (required on
    ``margins``, ``positions`` and ``simm``; naive times are UTC)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    table: Literal["margins", "positions", "simm", "members"]
    columns: list[Annotated[str, Field(max_length=64)]] = Field(default=[], max_length=64)
    filters: list[Filter] = Field(default=[], max_length=32)
    order_by: list[Order] = Field(default=[], max_length=8)
    limit: int = Field(default=1000, ge=1)
    start: dt.datetime | None = Field(default=None, alias="from")
    end: dt.datetime | None = Field(default=None, alias="to")


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    elapsed_ms: float


# -- compiling -------------------------------------------------------------------------------
def _column(table: Table, name: str, field: str, table_name: str) -> str:
    if name not in table.columns:
        choices = ", ".join(table.columns)
        reason = MSG_COLUMN.format(value=name, table=table_name, choices=choices)
        raise ServiceError(422, reason, field=field)
    return name


def _ns(moment: dt.datetime, field: str) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        ns = int(moment.timestamp() * 1_000_000) * 1000
    except (OverflowError, OSError, ValueError):
        ns = INT64[1] + 1
    if not INT64[0] <= ns <= INT64[1]:  # nanoseconds in 64 bits: 1677 to 2262
        raise ServiceError(422, "time out of range (1677 to 2262)", field=field)
    return ns


def _value(kind: Kind, column: str, value: Scalar, field: str) -> Any:
    """``value`` checked against the column's kind (bool is never a number here)."""
    reason = MSG_VALUE_KIND.format(column=column, kind=kind, value=value)
    bad = ServiceError(422, reason, field=field)
    if kind == "text":
        if not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
            raise bad
        return value
    if kind == "time" and isinstance(value, str):
        try:
            return _ns(dt.datetime.fromisoformat(value), field)
        except ValueError:
            raise bad from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad
    if kind in ("int", "time"):
        if isinstance(value, float):
            if not value.is_integer():
                raise bad
            value = int(value)
        if not INT64[0] <= value <= INT64[1]:
            raise bad
        return value
    if not math.isfinite(value):
        raise bad
    return float(value)


def _bind(kind: Kind, value: Any) -> Any:
    """An integer as a 64-bit parameter: bound with the column's own type, a value past a
    32-bit column's range makes PostgreSQL fail the query instead of matching nothing."""
    return sa.literal(value, sa.BigInteger()) if kind in ("int", "time") else value


def _condition(
    table: Table, source: sa.FromClause, f: Filter, i: int, table_name: str
) -> sa.ColumnElement[bool]:
    name = _column(table, f.column, f"filters.{i}.column", table_name)
    kind, col, field = table.columns[name], source.c[name], f"filters.{i}.value"
    if f.op in ("in", "between"):
        n = 2 if f.op == "between" else None
        size = f.value if isinstance(f.value, list) else []
        if not size or len(size) > MAX_LIST or (n is not None and len(size) != n):
            reason = MSG_VALUE_LIST.format(op=f.op, n=n or "1 to 1,000")
            raise ServiceError(422, reason, field=field)
        assert isinstance(f.value, list)
        values = [_bind(kind, _value(kind, name, v, field)) for v in f.value]
        return col.in_(values) if f.op == "in" else col.between(values[0], values[1])
    if isinstance(f.value, list):
        raise ServiceError(422, MSG_VALUE_SCALAR.format(op=f.op), field=field)
    if f.value is None:
        if f.op not in ("=", "!="):
            raise ServiceError(422, MSG_NULL, field=field)
        return col.is_(None) if f.op == "=" else col.is_not(None)
    if f.op == "like_prefix":
        if kind != "text" or not isinstance(f.value, str):
            raise ServiceError(422, MSG_PREFIX, field=field)
        return col.startswith(_value(kind, name, f.value, field), autoescape=True)
    value = _bind(kind, _value(kind, name, f.value, field))
    compare: dict[str, Callable[[Any, Any], Any]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    result: sa.ColumnElement[bool] = compare[f.op](col, value)
    return result


def _time_range(
    caller: Caller, table: Table, source: sa.FromClause, q: AdHocQuery
) -> list[sa.ColumnElement[bool]]:
    if table.time is None:
        return []  # a time range on a table that is no time series is refused below
    days = caller.ctx.config.query_days
    if q.start is None or q.end is None:
        field = "from" if q.start is None else "to"
        raise ServiceError(422, MSG_RANGE_NEEDED.format(table=q.table, days=days), field=field)
    start, end = _ns(q.start, "from"), _ns(q.end, "to")
    if end <= start:
        raise ServiceError(422, MSG_RANGE_ORDER, field="to")
    if end - start > days * 86_400 * 10**9:
        raise ServiceError(422, MSG_RANGE_LONG.format(days=days), field="to")
    col = source.c[table.time]
    return [col >= start, col < end]


def compile_query(caller: Caller, q: AdHocQuery) -> tuple[sa.Select[Any], list[str], int]:
    """The SELECT of ``q`` in ``caller``'s scope, its column names and the row limit."""
    table = TABLES[q.table]
    source = table.source(caller.ctx.db)
    names = list(
        dict.fromkeys(_column(table, c, f"columns.{i}", q.table) for i, c in enumerate(q.columns))
    ) or list(table.columns)
    limit = caller.ctx.config.query_rows
    if q.limit > limit:
        raise ServiceError(422, MSG_LIMIT.format(limit=limit), field="limit")
    if table.time is None and (q.start is not None or q.end is not None):
        field = "from" if q.start is not None else "to"
        raise ServiceError(422, f"table {q.table} is not a time series: no range", field=field)
    where = [
        caller.scope.table_clause(q.table, source),
        *_time_range(caller, table, source, q),
        *(_condition(table, source, f, i, q.table) for i, f in enumerate(q.filters)),
    ]
    order = [
        source.c[_column(table, o.column, f"order_by.{i}.column", q.table)]
        for i, o in enumerate(q.order_by)
    ]
    ordering = [c.desc() if o.desc else c.asc() for c, o in zip(order, q.order_by, strict=True)]
    ordering += [source.c[c].asc() for c in table.order]
    stmt = (
        sa.select(*(source.c[n] for n in names))
        .where(*where)
        .order_by(*ordering)
        .limit(q.limit + 1)  # one more: to say whether it was truncated
    )
    return stmt, names, q.limit


# -- running -----------------------------------------------------------------------------------
class QueryTimeoutError(Exception):
    """The statement ran over its time."""


def run_limited(db: Database, stmt: sa.Select[Any], seconds: float) -> list[tuple[Any, ...]]:
    """Run ``stmt`` read-only, stopped after ``seconds`` (QueryTimeoutError)."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            try:
                with conn.begin():
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    ms = max(1, int(seconds * 1000))
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
                    return [tuple(r) for r in conn.execute(stmt)]
            except sa.exc.OperationalError as exc:
                if "statement timeout" in str(exc.orig):
                    raise QueryTimeoutError from None
                raise
        raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        deadline = time.monotonic() + seconds

        def expired() -> int:
            return 1 if time.monotonic() > deadline else 0

        raw.set_progress_handler(expired, 10_000)
        raw.execute("PRAGMA query_only = ON")
        try:
            with conn.begin():
                return [tuple(r) for r in conn.execute(stmt)]
        except sa.exc.OperationalError as exc:
            if "interrupted" in str(exc.orig):
                raise QueryTimeoutError from None
            raise
        finally:
            raw.execute("PRAGMA query_only = OFF")
            raw.set_progress_handler(None, 0)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@router.post("/query", response_model=QueryResult)
def query(
    request: Request, caller: Querier, body: AdHocQuery, format: Fmt = Format.JSON
) -> QueryResult | Response:
    """Run an ad hoc query over the data in your scope (see the module documentation for
    the language); 422 names the field at fault."""
    heavy(request, caller)
    if format is not Format.JSON and not caller.principal.can(Permission.EXPORT):
        raise ServiceError(403, MSG_EXPORT, field="format")
    stmt, names, limit = compile_query(caller, body)
    seconds = caller.ctx.config.query_seconds
    started = time.perf_counter()
    try:
        rows = run_limited(caller.ctx.db, stmt, seconds)
    except QueryTimeoutError:
        caller.audit("data.query", outcome="timeout", subject=body.table, security=True)
        raise ServiceError(422, MSG_TIMEOUT.format(seconds=seconds)) from None
    elapsed = round((time.perf_counter() - started) * 1000, 3)
    truncated = len(rows) > limit
    rows = rows[:limit]
    caller.audit(
        "data.query",
        subject=body.table,
        security=True,
        detail={
            "columns": names,
            "filters": [f.model_dump() for f in body.filters],
            "from": body.start.isoformat() if body.start else None,
            "to": body.end.isoformat() if body.end else None,
            "rows": len(rows),
            "truncated": truncated,
            "format": format.value,
        },
    )
    if format is not Format.JSON:
        dicts = [dict(zip(names, map(_json_value, r), strict=True)) for r in rows]
        return export(caller, dicts, columns=names, fmt=format, name="query", subject=body.table)
    return QueryResult(
        columns=names,
        rows=[[_json_value(v) for v in r] for r in rows],
        truncated=truncated,
        elapsed_ms=elapsed,
    )
