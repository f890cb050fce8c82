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
* ``rejects``: every dead letter once, keyed by where it came from, with its raw bytes.

A batch is written in one transaction before the worker snapshots and commits (step 5 of the
commit protocol), so a crash replays at most that batch, into upserts that absorb it.

SQLite by default (``sqlite:///path/to/file.db``); PostgreSQL by URL
(``postgresql://user@host:port/db``). ``prefix`` namespaces the tables.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from marginflow.core.errors import ConfigurationError
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection
from marginflow.stream.log.base import TP
from marginflow.stream.topics import DEAD_LETTERS, MARGINS, MEMBER_MARGINS, Topology
from marginflow.stream.worker import Output, Processor

_PREFIX = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class MemberMargin:
    member: str
    margin: float
    accounts: int


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
        ]
        with self.transaction() as cur:
            for sql in statements:
                cur.execute(sql)

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

    def drop(self) -> None:
        """Drop this prefix's tables (tests)."""
        with self.transaction() as cur:
            for name in (
                "account_margin",
                "account_margin_history",
                "member_margin_partial",
                "rejects",
            ):
                cur.execute(f"DROP TABLE IF EXISTS {self._t(name)}")

    def close(self) -> None:
        self._conn.close()


class Sink(Processor):
    """Margins, member partials and dead letters -> the database."""

    def __init__(self, topology: Topology, database: Database) -> None:
        self.db = database
        self._margins = topology.name(MARGINS)
        self._partials = topology.name(MEMBER_MARGINS)
        self._letters = topology.name(DEAD_LETTERS)
        self.inputs = (self._margins, self._partials, self._letters)
        self._codecs: dict[str, Codec[ev.Event]] = {
            name: Codec(topology.spec(logical).events)
            for name, logical in (
                (self._margins, MARGINS),
                (self._partials, MEMBER_MARGINS),
                (self._letters, DEAD_LETTERS),
            )
        }
        self._batch: tuple[
            list[ev.AccountMargin], list[ev.MemberMarginPartial], list[ev.DeadLetter]
        ] = ([], [], [])

    def codec(self, topic: str) -> Codec[ev.Event]:
        return self._codecs[topic]

    def restore(self, tp: TP, data: bytes | None) -> None:
        """Nothing to restore: the database is the state."""

    def release(self, tp: TP) -> None:
        """Nothing held per partition."""

    def apply(
        self, tp: TP, events: Sequence[tuple[int, ev.Event]]
    ) -> Sequence[tuple[int, Rejection]]:
        margins, partials, letters = self._batch
        for _, e in events:
            if isinstance(e, ev.AccountMargin):
                margins.append(e)
            elif isinstance(e, ev.MemberMarginPartial):
                partials.append(e)
            elif isinstance(e, ev.DeadLetter):
                letters.append(e)
        return ()

    def recompute(self) -> list[Output]:
        margins, partials, letters = self._batch
        if margins or partials or letters:
            self.db.write(margins, partials, letters)
        self._batch = ([], [], [])
        return []

    def snapshot(self, tp: TP) -> bytes:
        return b""
