"""The database sink: margins, member partials and dead letters into SQL tables, idempotently.

Every write is an upsert keyed by what the row was computed from, so a replayed batch
changes nothing:

* ``account_margin``: one row per account, replaced only by a result with a greater
  ``(position_version, market_offset)``;
* ``account_margin_history``: every distinct result once, keyed by
  ``(account, position_version, market_offset)`` (a replay of the same key is ignored);
* ``member_margin_partial``: one row per (member, margins partition), replaced only by a
  greater ``source_offset``; a member's margin is the sum over its partitions
  (:meth:`Database.member_margins`), the firm's the sum over members;
* ``rejects``: every dead letter once, keyed by where it came from, with its raw bytes;
* ``simm_result``: the SIMM of each (party, portfolio, business date), replaced only by a
  result with a greater ``source_offset`` (a later submission: a portfolio's submissions share
  one crif partition); ``simm_result_history``: every result once, keyed by
  (party, portfolio, business date, source_offset). The breakdown is a JSON array of
  :class:`~marginflow.stream.events.SimmLine` objects;
* ``risk_parameter_audit``: every risk-parameter change once, keyed by ``change_id``, with
  who requested and who approved it and where on the log it came from. Append-only: the
  database refuses an UPDATE or DELETE of it (triggers), and the sink refuses, to the dead
  letters, a change whose ``change_id`` is already recorded with other content (a change is
  never rewritten; a correction is a new change). The same change published twice (a
  producer retry) is recorded once.

A batch is written in one transaction before the worker snapshots and commits (step 5 of the
commit protocol), so a crash replays at most that batch, into upserts that absorb it.

SQLite by default (``sqlite:///path/to/file.db``); PostgreSQL by URL
(``postgresql://user@host:port/db``). ``prefix`` namespaces the tables.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from marginflow.core.errors import ConfigurationError
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection
from marginflow.stream.log.base import TP
from marginflow.stream.topics import (
    DEAD_LETTERS,
    MARGINS,
    MARKET,
    MEMBER_MARGINS,
    SIMM_RESULTS,
    Topology,
)
from marginflow.stream.worker import Output, Processor

_PREFIX = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class MemberMargin:
    member: str
    margin: float
    accounts: int


@dataclass(frozen=True, slots=True)
class AuditedChange:
    """A risk-parameter change as the sink records it: the event and where it was read."""

    change: ev.RiskParameterChange
    source_topic: str
    source_partition: int
    source_offset: int


@dataclass(frozen=True, slots=True)
class StoredSimm:
    """A row of ``simm_result`` (amounts in ``currency``; see :class:`ev.SimmResult`)."""

    party: str
    portfolio: str
    business_date: str
    counterparty: str
    submission_id: str
    simm_version: str
    mpor_days: int
    currency: str
    collect_im: float
    post_im: float
    collect_regulation: str
    post_regulation: str
    rows: int
    breakdown: tuple[ev.SimmLine, ...]
    source_partition: int
    source_offset: int


MSG_AUDIT_CONFLICT = (
    "change {change_id!r} is already recorded ({topic} partition {partition} offset {offset}) "
    "with different content; recorded changes are never rewritten: publish a new change_id"
)
AUDIT_COLUMNS = (
    "change_id, model, parameter, value_number, value_text, requested_by, approved_by, "
    "effective_time, event_time, source_topic, source_partition, source_offset, recorded_time"
)
SIMM_COLUMNS = (
    "party, portfolio, business_date, counterparty, submission_id, simm_version, mpor_days, "
    "currency, collect_im, post_im, collect_regulation, post_regulation, rows, breakdown, "
    "source_partition, source_offset, event_time, computed_time"
)
_lines_json = msgspec.json.Encoder()
_decode_lines = msgspec.json.Decoder(tuple[ev.SimmLine, ...]).decode


TABLES = (
    "account_margin",
    "account_margin_history",
    "member_margin_partial",
    "rejects",
    "simm_result",
    "simm_result_history",
    "risk_parameter_audit",
)
"""The sink's tables, without their prefix."""


class Database:
    """A SQLite or PostgreSQL database holding the sink's tables."""

    def __init__(self, url: str, *, prefix: str = "mf_") -> None:
        if not _PREFIX.match(prefix):
            raise ConfigurationError(f"table prefix must match {_PREFIX.pattern}, got {prefix!r}")
        self.url, self.prefix = url, prefix
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.dialect = "postgresql"
            self._conn: Any = psycopg.connect(url, autocommit=False)
            self._mark = "%s"
        elif url.startswith("sqlite:///") or url == "sqlite://:memory:":
            self.dialect = "sqlite"
            path = url.removeprefix("sqlite:///") if url != "sqlite://:memory:" else ":memory:"
            self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._mark = "?"
        else:
            raise ConfigurationError(
                f"database URL must start with sqlite:/// or postgresql://, got {url!r}"
            )
        self.ensure_schema()

    # -- schema -----------------------------------------------------------------------------
    def _t(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def ensure_schema(self) -> None:
        blob = "BYTEA" if self.dialect == "postgresql" else "BLOB"
        statements = [
            f"""CREATE TABLE IF NOT EXISTS {self._t("account_margin")} (
                account TEXT PRIMARY KEY, member TEXT NOT NULL,
                margin DOUBLE PRECISION NOT NULL, model TEXT NOT NULL,
                source_partition INTEGER NOT NULL, position_version BIGINT NOT NULL,
                market_offset BIGINT NOT NULL, event_time BIGINT NOT NULL,
                computed_time BIGINT NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {self._t("account_margin_history")} (
                account TEXT NOT NULL, position_version BIGINT NOT NULL,
                market_offset BIGINT NOT NULL, member TEXT NOT NULL,
                margin DOUBLE PRECISION NOT NULL, model TEXT NOT NULL,
                source_partition INTEGER NOT NULL, event_time BIGINT NOT NULL,
                computed_time BIGINT NOT NULL,
                PRIMARY KEY (account, position_version, market_offset))""",
            f"""CREATE TABLE IF NOT EXISTS {self._t("member_margin_partial")} (
                member TEXT NOT NULL, source_partition INTEGER NOT NULL,
                margin DOUBLE PRECISION NOT NULL, accounts INTEGER NOT NULL,
                source_offset BIGINT NOT NULL, event_time BIGINT NOT NULL,
                PRIMARY KEY (member, source_partition))""",
            f"""CREATE TABLE IF NOT EXISTS {self._t("rejects")} (
                source_topic TEXT NOT NULL, source_partition INTEGER NOT NULL,
                source_offset BIGINT NOT NULL, field TEXT NOT NULL, reason TEXT NOT NULL,
                raw {blob} NOT NULL, event_time BIGINT NOT NULL,
                PRIMARY KEY (source_topic, source_partition, source_offset))""",
            *self._simm_schema(),
            f"""CREATE TABLE IF NOT EXISTS {self._t("risk_parameter_audit")} (
                change_id TEXT PRIMARY KEY, model TEXT NOT NULL, parameter TEXT NOT NULL,
                value_number DOUBLE PRECISION, value_text TEXT,
                requested_by TEXT NOT NULL, approved_by TEXT NOT NULL,
                effective_time BIGINT NOT NULL, event_time BIGINT NOT NULL,
                source_topic TEXT NOT NULL, source_partition INTEGER NOT NULL,
                source_offset BIGINT NOT NULL, recorded_time BIGINT NOT NULL,
                CHECK (approved_by <> requested_by))""",
        ]
        with self.transaction() as cur:
            for sql in statements:
                cur.execute(sql)
            self._append_only(cur, "risk_parameter_audit")

    def _simm_schema(self) -> list[str]:
        cols = """party TEXT NOT NULL, portfolio TEXT NOT NULL, business_date TEXT NOT NULL,
                counterparty TEXT NOT NULL, submission_id TEXT NOT NULL,
                simm_version TEXT NOT NULL, mpor_days INTEGER NOT NULL, currency TEXT NOT NULL,
                collect_im DOUBLE PRECISION NOT NULL, post_im DOUBLE PRECISION NOT NULL,
                collect_regulation TEXT NOT NULL, post_regulation TEXT NOT NULL,
                rows INTEGER NOT NULL, breakdown TEXT NOT NULL,
                source_partition INTEGER NOT NULL, source_offset BIGINT NOT NULL,
                event_time BIGINT NOT NULL, computed_time BIGINT NOT NULL"""
        return [
            f"""CREATE TABLE IF NOT EXISTS {self._t("simm_result")} ({cols},
                PRIMARY KEY (party, portfolio, business_date))""",
            f"""CREATE TABLE IF NOT EXISTS {self._t("simm_result_history")} ({cols},
                PRIMARY KEY (party, portfolio, business_date, source_offset))""",
        ]

    def _append_only(self, cur: Any, name: str) -> None:
        """Make table ``name`` refuse UPDATE and DELETE (an audit trail is only added to)."""
        table = self._t(name)
        message = f"{table} is append-only"
        if self.dialect == "sqlite":
            for op in ("UPDATE", "DELETE"):
                cur.execute(
                    f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()}
                    BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END"""
                )
            return
        cur.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s", (f"{table}_append_only",))
        if cur.fetchone() is not None:
            return
        cur.execute(
            f"""CREATE OR REPLACE FUNCTION {table}_refuse() RETURNS trigger
            LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{message}'; END $$"""
        )
        cur.execute(
            f"""CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE
            ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_refuse()"""
        )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        if self.dialect == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            self._conn.rollback()
            raise
        else:
            self._conn.commit()
        finally:
            cur.close()

    # -- writes -----------------------------------------------------------------------------
    def write(
        self,
        margins: Sequence[ev.AccountMargin],
        partials: Sequence[ev.MemberMarginPartial],
        letters: Sequence[ev.DeadLetter],
        simm: Sequence[ev.SimmResult] = (),
        changes: Sequence[AuditedChange] = (),
    ) -> None:
        """Upsert one batch in one transaction (see the module docstring for the keys)."""
        m, t = self._mark, self._t
        cols = (
            "account, member, margin, model, source_partition, position_version, "
            "market_offset, event_time, computed_time"
        )
        margin_rows = [
            (
                e.account,
                e.member,
                e.margin,
                e.model,
                e.source_partition,
                e.position_version,
                e.market_offset,
                e.event_time,
                e.computed_time,
            )
            for e in margins
        ]
        values = ", ".join([m] * 9)
        with self.transaction() as cur:
            if margin_rows:
                cur.executemany(
                    f"""INSERT INTO {t("account_margin")} ({cols}) VALUES ({values})
                    ON CONFLICT (account) DO UPDATE SET member = excluded.member,
                      margin = excluded.margin, model = excluded.model,
                      source_partition = excluded.source_partition,
                      position_version = excluded.position_version,
                      market_offset = excluded.market_offset,
                      event_time = excluded.event_time, computed_time = excluded.computed_time
                    WHERE (excluded.position_version, excluded.market_offset)
                      > ({t("account_margin")}.position_version,
                         {t("account_margin")}.market_offset)""",
                    margin_rows,
                )
                cur.executemany(
                    f"""INSERT INTO {t("account_margin_history")} ({cols}) VALUES ({values})
                    ON CONFLICT (account, position_version, market_offset) DO NOTHING""",
                    margin_rows,
                )
            if partials:
                cur.executemany(
                    f"""INSERT INTO {t("member_margin_partial")}
                    (member, source_partition, margin, accounts, source_offset, event_time)
                    VALUES ({m}, {m}, {m}, {m}, {m}, {m})
                    ON CONFLICT (member, source_partition) DO UPDATE SET
                      margin = excluded.margin, accounts = excluded.accounts,
                      source_offset = excluded.source_offset, event_time = excluded.event_time
                    WHERE excluded.source_offset > {t("member_margin_partial")}.source_offset""",
                    [
                        (
                            p.member,
                            p.source_partition,
                            p.margin,
                            p.accounts,
                            p.source_offset,
                            p.event_time,
                        )
                        for p in partials
                    ],
                )
            if letters:
                cur.executemany(
                    f"""INSERT INTO {t("rejects")} (source_topic, source_partition,
                      source_offset, field, reason, raw, event_time)
                    VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m})
                    ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING""",
                    [
                        (
                            d.source_topic,
                            d.source_partition,
                            d.source_offset,
                            d.field,
                            d.reason,
                            d.raw,
                            d.event_time,
                        )
                        for d in letters
                    ],
                )
            if simm:
                self._write_simm(cur, simm)
            if changes:
                self._write_changes(cur, changes)

    def _write_simm(self, cur: Any, results: Sequence[ev.SimmResult]) -> None:
        t = self._t
        values = ", ".join([self._mark] * 18)
        rows = [
            (
                r.party,
                r.portfolio,
                r.business_date,
                r.counterparty,
                r.submission_id,
                r.simm_version,
                r.mpor_days,
                r.currency,
                r.collect_im,
                r.post_im,
                r.collect_regulation,
                r.post_regulation,
                r.rows,
                _lines_json.encode(r.breakdown).decode(),
                r.source_partition,
                r.source_offset,
                r.event_time,
                r.computed_time,
            )
            for r in results
        ]
        updates = ", ".join(
            f"{c} = excluded.{c}"
            for c in SIMM_COLUMNS.replace(" ", "").split(",")
            if c not in ("party", "portfolio", "business_date")
        )
        cur.executemany(
            f"""INSERT INTO {t("simm_result")} ({SIMM_COLUMNS}) VALUES ({values})
            ON CONFLICT (party, portfolio, business_date) DO UPDATE SET {updates}
            WHERE excluded.source_offset > {t("simm_result")}.source_offset""",
            rows,
        )
        cur.executemany(
            f"""INSERT INTO {t("simm_result_history")} ({SIMM_COLUMNS}) VALUES ({values})
            ON CONFLICT (party, portfolio, business_date, source_offset) DO NOTHING""",
            rows,
        )

    def _write_changes(self, cur: Any, changes: Sequence[AuditedChange]) -> None:
        values = ", ".join([self._mark] * 13)
        now = time.time_ns()
        cur.executemany(
            f"""INSERT INTO {self._t("risk_parameter_audit")} ({AUDIT_COLUMNS})
            VALUES ({values}) ON CONFLICT (change_id) DO NOTHING""",
            [
                (
                    c.change.change_id,
                    c.change.model,
                    c.change.parameter,
                    None if isinstance(c.change.value, str) else c.change.value,
                    c.change.value if isinstance(c.change.value, str) else None,
                    c.change.requested_by,
                    c.change.approved_by,
                    c.change.effective_time,
                    c.change.event_time,
                    c.source_topic,
                    c.source_partition,
                    c.source_offset,
                    now,
                )
                for c in changes
            ],
        )

    # -- reads ------------------------------------------------------------------------------
    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.cursor()
        try:
            cur.execute(sql, args)
            rows = [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()
        self._conn.commit()
        return rows

    def account_margins(self) -> dict[str, tuple[float, int, int]]:
        """account -> (margin, position_version, market_offset), the latest of each."""
        rows = self._query(
            f"SELECT account, margin, position_version, market_offset "
            f"FROM {self._t('account_margin')}"
        )
        return {r[0]: (float(r[1]), int(r[2]), int(r[3])) for r in rows}

    def history_count(self) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM {self._t('account_margin_history')}")[0][0])

    def member_margins(self) -> list[MemberMargin]:
        """Each member's margin: the sum of its partials over the margins partitions."""
        rows = self._query(
            f"SELECT member, SUM(margin), SUM(accounts) FROM {self._t('member_margin_partial')} "
            f"GROUP BY member ORDER BY member"
        )
        return [MemberMargin(r[0], float(r[1]), int(r[2])) for r in rows]

    def firm_margin(self) -> float:
        rows = self._query(f"SELECT SUM(margin) FROM {self._t('member_margin_partial')}")
        return float(rows[0][0] or 0.0)

    def rejects(self) -> list[tuple[str, int, int, str, str, bytes]]:
        rows = self._query(
            f"SELECT source_topic, source_partition, source_offset, field, reason, raw "
            f"FROM {self._t('rejects')} ORDER BY source_topic, source_partition, source_offset"
        )
        return [(r[0], int(r[1]), int(r[2]), r[3], r[4], bytes(r[5])) for r in rows]

    def simm_results(self) -> dict[tuple[str, str, str], StoredSimm]:
        """(party, portfolio, business_date) -> the current SIMM result."""
        rows = self._query(
            f"SELECT {SIMM_COLUMNS} FROM {self._t('simm_result')} "
            f"ORDER BY party, portfolio, business_date"
        )
        out = {}
        for r in rows:
            stored = StoredSimm(
                party=r[0],
                portfolio=r[1],
                business_date=r[2],
                counterparty=r[3],
                submission_id=r[4],
                simm_version=r[5],
                mpor_days=int(r[6]),
                currency=r[7],
                collect_im=float(r[8]),
                post_im=float(r[9]),
                collect_regulation=r[10],
                post_regulation=r[11],
                rows=int(r[12]),
                breakdown=_decode_lines(r[13]),
                source_partition=int(r[14]),
                source_offset=int(r[15]),
            )
            out[(stored.party, stored.portfolio, stored.business_date)] = stored
        return out

    def simm_history(self) -> list[tuple[str, str, str, int, float, float]]:
        """Every SIMM result kept: (party, portfolio, business_date, source_offset,
        collect_im, post_im), in that order."""
        rows = self._query(
            f"SELECT party, portfolio, business_date, source_offset, collect_im, post_im "
            f"FROM {self._t('simm_result_history')} "
            f"ORDER BY party, portfolio, business_date, source_offset"
        )
        return [(r[0], r[1], r[2], int(r[3]), float(r[4]), float(r[5])) for r in rows]

    def risk_parameter_audit(self) -> list[AuditedChange]:
        """Every recorded risk-parameter change, in log order."""
        rows = self._query(
            f"SELECT {AUDIT_COLUMNS} FROM {self._t('risk_parameter_audit')} "
            f"ORDER BY source_topic, source_partition, source_offset"
        )
        return [_audited(r) for r in rows]

    def audited_change(self, change_id: str) -> AuditedChange | None:
        """The recorded change ``change_id``, or None."""
        rows = self._query(
            f"SELECT {AUDIT_COLUMNS} FROM {self._t('risk_parameter_audit')} "
            f"WHERE change_id = {self._mark}",
            (change_id,),
        )
        return _audited(rows[0]) if rows else None

    def is_empty(self) -> bool:
        """True if no table of this prefix holds a row. A run on a new log must start from
        an empty database: results are upserted only over lower versions, so an old
        result would hide the new log's results of the same key."""
        return not any(self._query(f"SELECT 1 FROM {self._t(name)} LIMIT 1") for name in TABLES)

    def drop(self) -> None:
        """Drop this prefix's tables (tests)."""
        with self.transaction() as cur:
            for name in TABLES:
                cur.execute(f"DROP TABLE IF EXISTS {self._t(name)}")
            if self.dialect == "postgresql":
                cur.execute(f"DROP FUNCTION IF EXISTS {self._t('risk_parameter_audit')}_refuse()")

    def close(self) -> None:
        self._conn.close()


def _audited(r: Sequence[Any]) -> AuditedChange:
    value: float | str = r[4] if r[3] is None else float(r[3])
    change = ev.RiskParameterChange(
        change_id=r[0],
        model=r[1],
        parameter=r[2],
        value=value,
        requested_by=r[5],
        approved_by=r[6],
        effective_time=int(r[7]),
        event_time=int(r[8]),
    )
    return AuditedChange(change, r[9], int(r[10]), int(r[11]))


class Sink(Processor):
    """Margins, member partials, SIMM results, risk-parameter changes and dead letters ->
    the database.

    It reads the market topic whole (one partition: one sink of the group owns it) for the
    risk-parameter changes it carries, into the audit table; prices and vols are validated
    (a bad one is dead-lettered, so it is kept) and not stored here."""

    def __init__(self, topology: Topology, database: Database) -> None:
        self.db = database
        self._margins = topology.name(MARGINS)
        self._partials = topology.name(MEMBER_MARGINS)
        self._letters = topology.name(DEAD_LETTERS)
        self._simm = topology.name(SIMM_RESULTS)
        self._market = topology.name(MARKET)
        logical = {
            self._margins: MARGINS,
            self._partials: MEMBER_MARGINS,
            self._letters: DEAD_LETTERS,
            self._simm: SIMM_RESULTS,
            self._market: MARKET,  # for its risk-parameter changes: the audit trail
        }
        self.inputs = tuple(logical)
        self._codecs: dict[str, Codec[ev.Event]] = {
            name: Codec(topology.spec(topic).events) for name, topic in logical.items()
        }
        self._batch = _Batch()

    def codec(self, topic: str) -> Codec[ev.Event]:
        return self._codecs[topic]

    def restore(self, tp: TP, data: bytes | None) -> None:
        """Nothing to restore: the database is the state."""

    def release(self, tp: TP) -> None:
        """Nothing held per partition."""

    def apply(
        self, tp: TP, events: Sequence[tuple[int, ev.Event]]
    ) -> Sequence[tuple[int, Rejection]]:
        batch = self._batch
        refused: list[tuple[int, Rejection]] = []
        for offset, e in events:
            if isinstance(e, ev.AccountMargin):
                batch.margins.append(e)
            elif isinstance(e, ev.MemberMarginPartial):
                batch.partials.append(e)
            elif isinstance(e, ev.DeadLetter):
                batch.letters.append(e)
            elif isinstance(e, ev.SimmResult):
                batch.simm.append(e)
            elif isinstance(e, ev.RiskParameterChange):
                why = self._audit(AuditedChange(e, tp[0], tp[1], offset))
                if why is not None:
                    refused.append((offset, why))
        return refused

    def _audit(self, change: AuditedChange) -> Rejection | None:
        """Queue ``change`` for the audit table, or refuse it when its ``change_id`` is
        recorded with other content. Depends only on the log (the table holds what earlier
        offsets wrote), so a replay decides the same."""
        cid = change.change.change_id
        known = self._batch.changes.get(cid) or self.db.audited_change(cid)
        if known is None:
            self._batch.changes[cid] = change
            return None
        if known.change == change.change:
            return None  # the same change again (a replay, or a producer's retry)
        return Rejection(
            "change_id",
            MSG_AUDIT_CONFLICT.format(
                change_id=cid,
                topic=known.source_topic,
                partition=known.source_partition,
                offset=known.source_offset,
            ),
        )

    def recompute(self) -> list[Output]:
        b = self._batch
        if b.margins or b.partials or b.letters or b.simm or b.changes:
            self.db.write(b.margins, b.partials, b.letters, b.simm, list(b.changes.values()))
        self._batch = _Batch()
        return []

    def snapshot(self, tp: TP) -> bytes:
        return b""


@dataclass
class _Batch:
    """What the sink writes at the end of one micro-batch, in one transaction."""

    margins: list[ev.AccountMargin] = field(default_factory=list)
    partials: list[ev.MemberMarginPartial] = field(default_factory=list)
    letters: list[ev.DeadLetter] = field(default_factory=list)
    simm: list[ev.SimmResult] = field(default_factory=list)
    changes: dict[str, AuditedChange] = field(default_factory=dict)
