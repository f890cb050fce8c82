"""The store: SQLAlchemy over SQLite (the embedded default, ``sqlite:///path.db``) or
PostgreSQL (``postgresql://user@host:port/db``), its schema kept by Alembic migrations.

Every write is an upsert keyed by what the row was computed from, so a replayed batch
changes nothing:

* ``account_margin``: one row per account, replaced only by a result with a greater
  ``(position_version, market_offset)``; ``account_margin_history``: every distinct result
  once, keyed by ``(account, position_version, market_offset)``, with its breakdown and the
  fingerprints of the settings and start-of-day load it used;
* ``member_margin_partial``: one row per (member, margins partition), replaced only by a
  greater ``source_offset``; a member's margin is the sum over its partitions;
* ``rejects``: every dead letter once, keyed by where it came from, with its raw bytes;
* ``simm_result`` (latest per party, portfolio and business date, by ``source_offset``)
  and ``simm_result_history`` (every result once);
* ``risk_parameter_audit``: every risk-parameter change once, keyed by ``change_id``;
  append-only (database triggers refuse UPDATE and DELETE);
* ``position``: each account's changed quantities at each version;
* ``market_event``: every market-topic event, by offset, as its wire bytes;
* ``book_load`` and ``book_file``: each start-of-day load (the files the calculators read,
  and the settings) that a margin names.

``prefix`` namespaces the tables (and the migrations' version table), so several platforms
or tests share one database.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from marginflow.core.errors import ConfigurationError
from marginflow.store.rows import (
    AuditedChange,
    BookLoad,
    MarketRecord,
    MemberMargin,
    MemberPartial,
    PositionChange,
    Reject,
    SimmLine,
    StoredMargin,
    StoredSimm,
)
from marginflow.store.schema import Tables, tables

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0004"
"""The newest migration: the schema :mod:`marginflow.store.schema` describes."""
_PREFIX_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
_lines = msgspec.json.Encoder()
_decode_lines = msgspec.json.Decoder(tuple[SimmLine, ...]).decode


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is a safe table-name prefix (lower-case letters, digits, ``_``, not
    starting with a digit), else :class:`ConfigurationError`."""
    if not prefix or not set(prefix) <= _PREFIX_CHARS or prefix[0].isdigit():
        raise ConfigurationError(
            f"table prefix must be lower-case letters, digits and _, got {prefix!r}"
        )
    return prefix


def engine_for(url: str, *, pooled: bool = False) -> sa.Engine:
    """A SQLAlchemy engine for a store URL. SQLite writers take the database lock when
    their transaction starts (``BEGIN IMMEDIATE``), so two sinks never deadlock upgrading
    a read lock; its journal is a WAL synced on every commit. ``pooled``: SQLite
    connections are kept between uses (for :meth:`Database._rows`, which always reads a
    statement to its end) rather than opened per use."""
    if url.startswith(("postgresql://", "postgres://")):
        return _named(
            sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1], pool_pre_ping=True)
        )
    if not (url.startswith("sqlite:///") or url == "sqlite://:memory:"):
        raise ConfigurationError(
            f"database URL must start with sqlite:/// or postgresql://, got {url!r}"
        )
    memory = url == "sqlite://:memory:"
    engine = sa.create_engine(
        "sqlite://" if memory else url,
        connect_args={"timeout": 30.0},
        # By default a file is opened per use: a SQLite statement left unfinished (its
        # cursor kept alive, by a traceback say) holds its read snapshot on its connection
        # across BEGIN and ROLLBACK, so a pooled connection went on serving the store as it
        # was then. Only reads that always finish their statement (``Database._rows``) use
        # the pooled engine.
        poolclass=sa.pool.StaticPool
        if memory
        else (sa.pool.QueuePool if pooled else sa.pool.NullPool),
        **({"pool_size": 16, "max_overflow": 32} if pooled and not memory else {}),
    )

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # transactions are begun below, not by the driver
        _wal(dbapi)
        dbapi.execute("PRAGMA synchronous=FULL")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        # every read too is a transaction, ended by ROLLBACK when the connection goes back
        # to the pool: without one (autocommit), a SELECT left unfinished (its cursor kept
        # alive by a traceback) held its snapshot on the pooled connection, and every later
        # read on it saw the store as it was then (a reset password still took the old one)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("immediate", False) else "BEGIN")

    return _named(engine)


DATABASE_NOTE = "database: "
"""An error of the database driver carries a note naming the database, ``database: <url>``
(its password hidden), so that the one line a user is shown can say which store failed
(a read-only file, a full disk, a user without write rights): see :func:`database_named`."""


def _named(engine: sa.Engine) -> sa.Engine:
    shown = engine.url.render_as_string(hide_password=True)

    @sa.event.listens_for(engine, "handle_error")
    def _note(context: sa.engine.ExceptionContext) -> None:
        exc = context.sqlalchemy_exception
        if exc is not None and database_named(exc) is None:
            exc.add_note(DATABASE_NOTE + shown)

    return engine


def database_named(exc: BaseException) -> str | None:
    """The database an error of the driver came from (its URL), or None."""
    for note in getattr(exc, "__notes__", ()):
        if note.startswith(DATABASE_NOTE):
            return str(note.removeprefix(DATABASE_NOTE))
    return None


def _wal(dbapi: Any, patience: float = 30.0) -> None:
    """Put a SQLite database in WAL mode. Switching a new file needs it to itself, and
    SQLite does not wait for that (no busy handler), so openers racing on a new store
    retry; once in WAL mode the pragma is a no-op that takes no lock."""
    import sqlite3

    deadline = time.monotonic() + patience
    while True:
        try:
            if str(dbapi.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                dbapi.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def migrate(engine: sa.Engine, prefix: str) -> None:
    """Bring ``prefix``'s tables to :data:`HEAD`, in one transaction that holds the
    database's write lock (SQLite) or an advisory lock (PostgreSQL), so processes opening
    the store together upgrade it once. Tables made before migrations existed (no version
    table) are taken as revision 0001 and upgraded from there."""
    from alembic import command
    from alembic.config import Config

    writer = engine.execution_options(immediate=True)
    with writer.begin() as conn:
        if conn.dialect.name == "postgresql":
            key = zlib.crc32(f"marginflow-store:{prefix}".encode())
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        inspector = sa.inspect(conn)
        names = set(inspector.get_table_names())
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes.update(connection=conn, prefix=prefix)
        if f"{prefix}account_margin" in names and f"{prefix}alembic_version" not in names:
            command.stamp(cfg, "0001")
        command.upgrade(cfg, "head")


def revision(engine: sa.Engine, prefix: str) -> str | None:
    """The migration ``prefix``'s tables are at, or None before any."""
    with engine.connect() as conn:
        if f"{prefix}alembic_version" not in sa.inspect(conn).get_table_names():
            return None
        version = f"SELECT version_num FROM {prefix}alembic_version"  # noqa: S608 (checked prefix)
        row = conn.execute(sa.text(version)).first()
        return None if row is None else str(row[0])


class Database:
    """The store of one platform (one table prefix); opening it migrates the schema."""

    def __init__(self, url: str, *, prefix: str = "mf_", upgrade: bool = True) -> None:
        self.url, self.prefix = url, check_prefix(prefix)
        self.engine = engine_for(url)
        self.dialect = self.engine.dialect.name
        self._writer = self.engine.execution_options(immediate=True)
        # the hot reads (a page of margins, a user) reuse connections: opening a SQLite file
        # and reading its schema costs more than the read itself
        sqlite_file = self.dialect == "sqlite" and url != "sqlite://:memory:"
        self._reader = engine_for(url, pooled=True) if sqlite_file else self.engine
        self.t: Tables = tables(prefix)
        self._statements: dict[Hashable, Any] = {}
        if upgrade:
            migrate(self.engine, prefix)

    # -- plumbing ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One write transaction (committed on success, rolled back on error)."""
        with self._writer.begin() as conn:
            yield conn

    def _rows(self, query: sa.Executable, args: Mapping[str, Any] | None = None) -> list[Any]:
        """The rows of one read statement, read to its end (so its connection goes back to
        the pool holding no snapshot)."""
        with self._reader.connect() as conn:
            return list(conn.execute(query, dict(args or {})).all())

    def _statement(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The statement of shape ``key``, built once per store with named bound parameters:
        building a SQLAlchemy statement and its cache key costs several times what a point
        read by primary key does, and the service's margin reads run hundreds a second."""
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build()
        return found

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # -- writes -----------------------------------------------------------------------------
    def write(
        self,
        margins: Sequence[StoredMargin] = (),
        partials: Sequence[MemberPartial] = (),
        letters: Sequence[Reject] = (),
        simm: Sequence[StoredSimm] = (),
        changes: Sequence[AuditedChange] = (),
        positions: Sequence[PositionChange] = (),
        market: Sequence[MarketRecord] = (),
    ) -> None:
        """Upsert one batch in one transaction (see the module docstring for the keys)."""
        with self.transaction() as conn:
            if margins:
                self._write_margins(conn, margins)
            if partials:
                self._write_partials(conn, partials)
            if letters:
                stmt = self._insert(self.t.rejects).on_conflict_do_nothing()
                conn.execute(stmt, [_fields(r) for r in letters])
            if simm:
                self._write_simm(conn, simm)
            if changes:
                self._write_changes(conn, changes)
            if positions:
                rows = [
                    {
                        "account": p.account,
                        "version": p.version,
                        "instrument": i,
                        "quantity": q,
                        "source_partition": p.source_partition,
                        "event_time": p.event_time,
                    }
                    for p in positions
                    for i, q in zip(p.instruments, p.quantities, strict=True)
                ]
                if rows:
                    conn.execute(self._insert(self.t.position).on_conflict_do_nothing(), rows)
            if market:
                stmt = self._insert(self.t.market_event).on_conflict_do_nothing()
                conn.execute(stmt, [_fields(r) for r in market])

    def _write_margins(self, conn: sa.Connection, margins: Sequence[StoredMargin]) -> None:
        rows = [_fields(m) for m in margins]
        t = self.t.account_margin
        stmt = self._insert(t)
        newer = sa.tuple_(stmt.excluded.position_version, stmt.excluded.market_offset) > (
            sa.tuple_(t.c.position_version, t.c.market_offset)
        )
        update = {c: stmt.excluded[c] for c in rows[0] if c != "account"}
        conn.execute(
            stmt.on_conflict_do_update(index_elements=["account"], set_=update, where=newer),
            rows,
        )
        conn.execute(self._insert(self.t.account_margin_history).on_conflict_do_nothing(), rows)

    def _write_partials(self, conn: sa.Connection, partials: Sequence[MemberPartial]) -> None:
        t = self.t.member_margin_partial
        stmt = self._insert(t)
        update = {
            c: stmt.excluded[c] for c in ("margin", "accounts", "source_offset", "event_time")
        }
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["member", "source_partition"],
                set_=update,
                where=stmt.excluded.source_offset > t.c.source_offset,
            ),
            [_fields(p) for p in partials],
        )

    def _write_simm(self, conn: sa.Connection, results: Sequence[StoredSimm]) -> None:
        rows = []
        for r in results:
            row = _fields(r)
            row["breakdown"] = _lines.encode(r.breakdown).decode()
            rows.append(row)
        t = self.t.simm_result
        stmt = self._insert(t)
        key = ("party", "portfolio", "business_date")
        update = {c: stmt.excluded[c] for c in rows[0] if c not in key}
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=list(key),
                set_=update,
                where=stmt.excluded.source_offset > t.c.source_offset,
            ),
            rows,
        )
        conn.execute(self._insert(self.t.simm_result_history).on_conflict_do_nothing(), rows)

    def _write_changes(self, conn: sa.Connection, changes: Sequence[AuditedChange]) -> None:
        now = time.time_ns()
        rows = []
        for c in changes:
            row = _fields(c)
            value = row.pop("value")
            row["value_number"] = None if isinstance(value, str) else value
            row["value_text"] = value if isinstance(value, str) else None
            row["recorded_time"] = now
            rows.append(row)
        conn.execute(self._insert(self.t.risk_parameter_audit).on_conflict_do_nothing(), rows)

    def write_book_load(self, load: BookLoad, files: Mapping[str, bytes]) -> None:
        """Record a start-of-day load and its files (idempotent: a load or a file already
        stored is kept as it is; equal ids mean equal content)."""
        with self.transaction() as conn:
            row = _fields(load)
            row["settings"] = json.dumps(load.settings, sort_keys=True)
            conn.execute(self._insert(self.t.book_load).on_conflict_do_nothing(), [row])
            conn.execute(
                self._insert(self.t.book_file).on_conflict_do_nothing(),
                [{"book": load.book, "name": n, "content": c} for n, c in sorted(files.items())],
            )

    # -- margins ----------------------------------------------------------------------------
    def account_margins(self) -> dict[str, StoredMargin]:
        """account -> its latest margin."""
        return {m.account: m for m in self._margins(sa.select(self.t.account_margin))}

    def _margins(
        self, query: sa.Select[Any], args: Mapping[str, Any] | None = None
    ) -> list[StoredMargin]:
        return [StoredMargin(**row._mapping) for row in self._rows(query, args)]

    def margin(
        self, account: str, *, version: int | None = None, at: int | None = None
    ) -> StoredMargin | None:
        """A stored margin of ``account``: the last computed at position ``version``, or
        the one in force at ``at`` (ns: the latest with ``event_time <= at``), or the
        latest; None if there is none."""
        h = self.t.account_margin_history
        query = sa.select(h).where(h.c.account == account)
        if version is not None:
            query = query.where(h.c.position_version == version)
        if at is not None:
            query = query.where(h.c.event_time <= at)
        version_order = (h.c.position_version.desc(), h.c.market_offset.desc())
        latest = (h.c.event_time.desc(), *version_order) if at is not None else version_order
        query = query.order_by(*latest).limit(1)
        found = self._margins(query)
        return found[0] if found else None

    def margin_history(
        self,
        *,
        account: str | None = None,
        member: str | None = None,
        business_date: str | None = None,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[StoredMargin]:
        """Every stored margin matching the filters (times in ns, ``start <= event_time <=
        end``), in event-time order (``newest_first`` reverses it); ``limit`` and
        ``offset`` page through them."""
        args = _given(
            account=account, member=member, business_date=business_date, start=start, end=end
        )
        shape = ("history", tuple(args), newest_first, limit is not None, offset > 0)

        def build() -> sa.Select[Any]:
            h = self.t.account_margin_history
            query = sa.select(h).where(*self._history_filters(args))
            order = [h.c.event_time, h.c.account, h.c.position_version, h.c.market_offset]
            query = query.order_by(*(c.desc() for c in order) if newest_first else order)
            if limit is not None:
                query = query.limit(sa.bindparam("limit", type_=sa.Integer))
            if offset > 0:
                query = query.offset(sa.bindparam("offset", type_=sa.Integer))
            return query

        query = self._statement(shape, build)
        return self._margins(query, {**args, **_given(limit=limit, offset=offset or None)})

    def margin_history_count(
        self,
        *,
        account: str | None = None,
        member: str | None = None,
        business_date: str | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> int:
        """How many stored margins :meth:`margin_history` would return unpaged."""
        args = _given(
            account=account, member=member, business_date=business_date, start=start, end=end
        )

        def build() -> sa.Select[Any]:
            h = self.t.account_margin_history
            filters = self._history_filters(args)
            return sa.select(sa.func.count()).select_from(h).where(*filters)

        return int(self._rows(self._statement(("history_count", tuple(args)), build), args)[0][0])

    def _history_filters(self, given: Mapping[str, Any]) -> list[Any]:
        """The history's filters on the parameters named in ``given`` (bound by name)."""
        h = self.t.account_margin_history
        out: list[Any] = [
            column == sa.bindparam(name)
            for name, column in (
                ("account", h.c.account),
                ("member", h.c.member),
                ("business_date", h.c.business_date),
            )
            if name in given
        ]
        if "start" in given:
            out.append(h.c.event_time >= sa.bindparam("start"))
        if "end" in given:
            out.append(h.c.event_time <= sa.bindparam("end"))
        return out

    def current_margins(
        self, *, member: str | None = None, limit: int | None = None, offset: int = 0
    ) -> tuple[list[StoredMargin], int]:
        """Accounts' latest margins (of ``member``, or every member's) by account, one page,
        and how many there are in all."""
        a = self.t.account_margin
        where = [] if member is None else [a.c.member == member]
        query = sa.select(a).where(*where).order_by(a.c.account).offset(offset)
        page = self._margins(query if limit is None else query.limit(limit))
        total = self._rows(sa.select(sa.func.count()).select_from(a).where(*where))[0][0]
        return page, int(total)

    def current_margin(self, account: str) -> StoredMargin | None:
        """``account``'s latest margin, or None (unknown account)."""
        a = self.t.account_margin
        query = self._statement(
            "current_margin", lambda: sa.select(a).where(a.c.account == sa.bindparam("account"))
        )
        found = self._margins(query, {"account": account})
        return found[0] if found else None

    def member_margin_at(self, member: str, at: int) -> tuple[float, list[StoredMargin]]:
        """A member's margin in force at ``at`` (ns): the sum of each of its accounts' latest
        margin by then, and those margins."""
        latest: dict[str, StoredMargin] = {}
        for m in self.margin_history(member=member, end=at):
            latest[m.account] = m
        found = sorted(latest.values(), key=lambda m: m.account)
        return sum(m.margin for m in found), found

    def history_count(self) -> int:
        h = self.t.account_margin_history
        return int(self._rows(sa.select(sa.func.count()).select_from(h))[0][0])

    def member_margins(self, member: str | None = None) -> list[MemberMargin]:
        """Each member's margin (or ``member``'s alone): the sum of its partials over the
        margins partitions."""
        p = self.t.member_margin_partial
        where = [] if member is None else [p.c.member == member]
        query = (
            sa.select(p.c.member, sa.func.sum(p.c.margin), sa.func.sum(p.c.accounts))
            .where(*where)
            .group_by(p.c.member)
            .order_by(p.c.member)
        )
        return [MemberMargin(r[0], float(r[1]), int(r[2])) for r in self._rows(query)]

    def firm_margin(self) -> float:
        p = self.t.member_margin_partial
        return float(self._rows(sa.select(sa.func.sum(p.c.margin)))[0][0] or 0.0)

    # -- inputs -----------------------------------------------------------------------------
    def positions(self, account: str, version: int) -> dict[str, int]:
        """``account``'s quantities at ``version`` (instrument -> quantity, flat ones left
        out): each instrument's latest change at or before ``version``."""
        p = self.t.position
        query = (
            sa.select(p.c.instrument, p.c.quantity)
            .where(p.c.account == account, p.c.version <= version)
            .order_by(p.c.version)
        )
        held: dict[str, int] = {}
        for instrument, quantity in self._rows(query):
            held[instrument] = int(quantity)
        return {i: q for i, q in held.items() if q != 0}

    def position_history(self) -> list[tuple[str, int, str, int, int]]:
        """Every stored position change as (account, version, instrument, quantity,
        event_time ns), in event-time then version order: the stream's position history,
        which a dynamic back-test replays day by day."""
        p = self.t.position
        query = sa.select(p.c.account, p.c.version, p.c.instrument, p.c.quantity, p.c.event_time)
        query = query.order_by(p.c.event_time, p.c.version, p.c.account, p.c.instrument)
        return [(r[0], int(r[1]), r[2], int(r[3]), int(r[4])) for r in self._rows(query)]

    def position_versions(self, account: str) -> list[int]:
        p = self.t.position
        query = sa.select(p.c.version).where(p.c.account == account).distinct()
        return sorted(int(r[0]) for r in self._rows(query))

    def current_positions(self) -> dict[str, dict[str, int]]:
        """Every account's holdings at the position version of its latest margin (account ->
        instrument -> quantity, flat ones left out), read in one query: each (account,
        instrument)'s latest change at or before that version."""
        p, a = self.t.position, self.t.account_margin
        query = (
            sa.select(p.c.account, p.c.instrument, p.c.quantity)
            .join(a, a.c.account == p.c.account)
            .where(p.c.version <= a.c.position_version)
            .order_by(p.c.account, p.c.version)
        )
        held: dict[str, dict[str, int]] = {}
        for account, instrument, quantity in self._rows(query):
            held.setdefault(account, {})[instrument] = int(quantity)
        return {acc: {i: q for i, q in pos.items() if q != 0} for acc, pos in held.items()}

    def last_market_offset(self) -> int:
        """The offset of the newest stored market-topic event (-1 when there is none)."""
        m = self.t.market_event
        found = self._rows(sa.select(sa.func.max(m.c.offset)))[0][0]
        return -1 if found is None else int(found)

    def market_events(self, *, after: int = -1, upto: int | None = None) -> list[MarketRecord]:
        """Market-topic events with ``after < offset <= upto``, in log order."""
        m = self.t.market_event
        query = sa.select(m).where(m.c.offset > after)
        if upto is not None:
            query = query.where(m.c.offset <= upto)
        return [
            MarketRecord(int(r.offset), r.kind, r.underlying, int(r.event_time), bytes(r.payload))
            for r in self._rows(query.order_by(m.c.offset))
        ]

    def book_load(self, load_id: str) -> BookLoad | None:
        b = self.t.book_load
        rows = self._rows(sa.select(b).where(b.c.id == load_id))
        if not rows:
            return None
        r = rows[0]
        return BookLoad(
            r.id, r.book, json.loads(r.settings), r.valuation_date, r.source, int(r.loaded_time)
        )

    def book_loads(self) -> list[BookLoad]:
        b = self.t.book_load
        ids = [r[0] for r in self._rows(sa.select(b.c.id).order_by(b.c.loaded_time))]
        return [load for i in ids if (load := self.book_load(i)) is not None]

    def book_files(self, book: str, names: Sequence[str] | None = None) -> dict[str, bytes]:
        """The files of a stored book (name -> content), by the book's fingerprint; only
        those of ``names`` if given."""
        f = self.t.book_file
        query = sa.select(f.c.name, f.c.content).where(f.c.book == book)
        if names is not None:
            query = query.where(f.c.name.in_(list(names)))
        rows = self._rows(query)
        return {r[0]: bytes(r[1]) for r in rows}

    # -- dead letters, SIMM, audit ----------------------------------------------------------
    def rejects(self) -> list[Reject]:
        r = self.t.rejects
        query = sa.select(r).order_by(r.c.source_topic, r.c.source_partition, r.c.source_offset)
        out = []
        for row in self._rows(query):
            values = dict(row._mapping)
            values["raw"] = bytes(values["raw"])
            out.append(Reject(**values))
        return out

    def simm_results(self) -> dict[tuple[str, str, str], StoredSimm]:
        """(party, portfolio, business_date) -> the current SIMM result."""
        s = self.t.simm_result
        query = sa.select(s).order_by(s.c.party, s.c.portfolio, s.c.business_date)
        out = {}
        for row in self._rows(query):
            stored = _simm(row)
            out[(stored.party, stored.portfolio, stored.business_date)] = stored
        return out

    def simm_history(self) -> list[StoredSimm]:
        """Every SIMM result kept, by party, portfolio, business date and log offset."""
        s = self.t.simm_result_history
        query = sa.select(s).order_by(
            s.c.party, s.c.portfolio, s.c.business_date, s.c.source_offset
        )
        return [_simm(row) for row in self._rows(query)]

    def risk_parameter_audit(self) -> list[AuditedChange]:
        """Every recorded risk-parameter change, in log order."""
        a = self.t.risk_parameter_audit
        query = sa.select(a).order_by(a.c.source_topic, a.c.source_partition, a.c.source_offset)
        return [_audited(r) for r in self._rows(query)]

    def audited_change(self, change_id: str) -> AuditedChange | None:
        """The recorded change ``change_id``, or None."""
        a = self.t.risk_parameter_audit
        rows = self._rows(sa.select(a).where(a.c.change_id == change_id))
        return _audited(rows[0]) if rows else None

    # -- housekeeping -----------------------------------------------------------------------
    def is_empty(self) -> bool:
        """True if no result or input of a run is stored (book loads aside: they are named
        by their content). A run on a new log must start from an empty store: results are
        upserted only over lower versions, so an old result would hide the new log's
        results of the same key."""
        t = self.t
        runs = (
            t.account_margin,
            t.account_margin_history,
            t.member_margin_partial,
            t.rejects,
            t.simm_result,
            t.simm_result_history,
            t.risk_parameter_audit,
            t.position,
            t.market_event,
        )
        return not any(self._rows(sa.select(sa.literal(1)).select_from(x).limit(1)) for x in runs)

    def drop(self) -> None:
        """Drop this prefix's tables and its migrations' record (tests)."""
        with self.transaction() as conn:
            self.t.metadata.drop_all(conn)
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.prefix}alembic_version"))
            if self.dialect == "postgresql":
                for audit in (self.t.risk_parameter_audit.name, self.t.audit_log.name):
                    conn.execute(sa.text(f"DROP FUNCTION IF EXISTS {audit}_refuse()"))

    def close(self) -> None:
        self.engine.dispose()
        if self._reader is not self.engine:
            self._reader.dispose()


def _fields(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__slots__}


def _simm(row: Any) -> StoredSimm:
    values = dict(row._mapping)
    values["breakdown"] = _decode_lines(values["breakdown"])
    return StoredSimm(**values)


def _audited(row: Any) -> AuditedChange:
    v = row._mapping
    value: float | str = v["value_text"] if v["value_number"] is None else v["value_number"]
    return AuditedChange(
        change_id=v["change_id"],
        model=v["model"],
        parameter=v["parameter"],
        value=value,
        requested_by=v["requested_by"],
        approved_by=v["approved_by"],
        effective_time=int(v["effective_time"]),
        event_time=int(v["event_time"]),
        source_topic=v["source_topic"],
        source_partition=int(v["source_partition"]),
        source_offset=int(v["source_offset"]),
    )


def utc_ns(moment: dt.datetime) -> int:
    """An aware datetime as UTC nanoseconds since the epoch."""
    return int(moment.timestamp() * 1_000_000) * 1000


def _given(**values: Any) -> dict[str, Any]:
    """The keyword arguments that are not None."""
    return {k: v for k, v in values.items() if v is not None}
