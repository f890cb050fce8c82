"""The store's schema is what its migrations build: the newest migration matches the tables
the code reads and writes, a database at an older revision (or made before migrations
existed) is upgraded with its rows kept, and processes opening one store together upgrade
it once."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from marginflow.store import Database, StoredMargin, revision
from marginflow.store.database import HEAD, engine_for

T0 = 1_546_214_400_000_000_000


def _at(url: str, prefix: str, target: str) -> None:
    """Bring a fresh prefix to revision ``target`` only."""
    from alembic import command
    from alembic.config import Config

    from marginflow.store.database import MIGRATIONS

    engine = engine_for(url)
    with engine.execution_options(immediate=True).begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes.update(connection=conn, prefix=prefix)
        command.upgrade(cfg, target)
    engine.dispose()


def test_the_newest_migration_builds_the_tables_the_code_uses(db: Database) -> None:
    assert revision(db.engine, db.prefix) == HEAD
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda name, kind, _: (
                    kind != "table" or str(name).startswith(db.prefix)
                )
            },
        )
        diff = [
            d for d in compare_metadata(context, db.t.metadata) if "alembic_version" not in str(d)
        ]
    assert diff == []


def test_a_store_at_the_first_revision_is_upgraded_with_its_rows(url: str, prefix: str) -> None:
    _at(url, prefix, "0001")
    engine = engine_for(url)
    with engine.execution_options(immediate=True).begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO {prefix}account_margin_history (account, position_version, "
                "market_offset, member, margin, model, source_partition, event_time, "
                "computed_time) VALUES ('A1', 3, 7, 'M1', 1234.5, 'es', 0, :t, :t)"
            ),
            {"t": T0},
        )
    engine.dispose()
    db = Database(url, prefix=prefix)
    try:
        assert revision(db.engine, prefix) == HEAD
        (old,) = db.margin_history()
        # written before the breakdown existed: read back with none
        assert old == StoredMargin("A1", "M1", 1234.5, "es", 0, 3, 7, T0, T0)
        assert db.positions("A1", 3) == {}  # the new tables are there, empty
    finally:
        db.drop()
        db.close()


def test_margins_stored_before_the_market_cover_read_back_without_it(url: str, prefix: str) -> None:
    _at(url, prefix, "0003")
    engine = engine_for(url)
    with engine.execution_options(immediate=True).begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO {prefix}account_margin_history (account, position_version, "
                "market_offset, member, margin, model, source_partition, event_time, "
                "computed_time) VALUES ('A1', 3, 7, 'M1', 1234.5, 'es', 0, :t, :t)"
            ),
            {"t": T0},
        )
    engine.dispose()
    db = Database(url, prefix=prefix)
    try:
        (old,) = db.margin_history()
        assert (old.market_from, old.market_ticks, old.market_moves) == (None, None, None)
        new = StoredMargin("A1", "M1", 99.0, "es", 0, 3, 9, T0, T0, market_from=8,
                           market_ticks=2, market_moves=1)  # fmt: skip
        db.write(margins=[new])
        assert db.margin("A1") == new
    finally:
        db.drop()
        db.close()


def test_tables_made_before_migrations_existed_are_taken_as_the_first_revision(
    url: str, prefix: str
) -> None:
    _at(url, prefix, "0001")
    engine = engine_for(url)
    with engine.execution_options(immediate=True).begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {prefix}alembic_version"))  # as ensure_schema left it
    engine.dispose()
    db = Database(url, prefix=prefix)
    try:
        assert revision(db.engine, prefix) == HEAD
        assert db.margin_history() == []
    finally:
        db.drop()
        db.close()


def test_processes_opening_one_store_together_upgrade_it_once(url: str, prefix: str) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Database(url, prefix=prefix).close()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db = Database(url, prefix=prefix)
    try:
        assert errors == []
        assert revision(db.engine, prefix) == HEAD
    finally:
        db.drop()
        db.close()
