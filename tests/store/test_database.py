"""The store's contract, held by SQLite and PostgreSQL alike: typed rows read back exactly as
written (floats to the bit), upserts that a replayed batch cannot change or roll back, and
margin history by account, member, business date and time."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.store import (
    AuditedChange,
    BookLoad,
    Database,
    MarketRecord,
    MemberPartial,
    PositionChange,
    Reject,
    SimmLine,
    StoredMargin,
    StoredSimm,
)

T0 = 1_546_214_400_000_000_000  # 2018-12-31T00:00Z


def margin(account: str = "A1", version: int = 1, offset: int = 0, value: float = 100.0,
           *, at: int = T0, member: str = "M1", **more: object) -> StoredMargin:  # fmt: skip
    return StoredMargin(
        account,
        member,
        value,
        "es",
        0,
        version,
        offset,
        at,
        at + 1,
        **more,  # type: ignore[arg-type]
    )


def test_a_margin_reads_back_with_its_breakdown(db: Database) -> None:
    m = margin(es=80.0, var=70.0, apc=20.0, concentration=0.0, driver="stress:2008-10-15",
               settings="f" * 64, book_load="b" * 64, business_date="2018-12-31",
               market_from=3, market_ticks=2_000, market_moves=1_987)  # fmt: skip
    db.write(margins=[m])
    assert db.account_margins() == {"A1": m}
    assert db.margin_history() == [m]
    assert db.margin("A1") == m


def test_only_a_newer_margin_replaces_the_latest_and_a_replay_changes_nothing(
    db: Database,
) -> None:
    new, old = margin(version=5, offset=2, value=7.0), margin(version=5, offset=1, value=9.0)
    db.write(margins=[new])
    db.write(margins=[old, new])  # an older result arriving late, and a replay
    assert db.account_margins()["A1"] == new
    assert db.history_count() == 2


def test_margin_by_version_and_by_time(db: Database) -> None:
    rows = [
        margin(version=1, offset=0, value=1.0, at=T0),
        margin(version=1, offset=3, value=2.0, at=T0 + 10),
        margin(version=4, offset=3, value=3.0, at=T0 + 20),
    ]
    db.write(margins=rows)
    assert db.margin("A1", version=1) == rows[1]  # the last at that version
    assert db.margin("A1", at=T0 + 15) == rows[1]  # the one in force then
    assert db.margin("A1", at=T0 - 1) is None
    assert db.margin("A1") == rows[2]
    assert db.margin_history(account="A1", start=T0 + 5, end=T0 + 20) == rows[1:]


def test_member_history_and_the_margin_in_force(db: Database) -> None:
    db.write(
        margins=[
            margin("A1", 1, value=10.0, at=T0, business_date="2018-12-31"),
            margin("A2", 1, value=5.0, at=T0 + 5, business_date="2018-12-31"),
            margin("A1", 2, value=12.0, at=T0 + 10, business_date="2019-01-02"),
            margin("B1", 1, value=99.0, at=T0, member="M2"),
        ]
    )
    total, parts = db.member_margin_at("M1", T0 + 7)
    assert total == 15.0
    assert [p.account for p in parts] == ["A1", "A2"]
    assert db.member_margin_at("M1", T0 + 10)[0] == 17.0
    assert [m.margin for m in db.margin_history(business_date="2019-01-02")] == [12.0]
    assert {m.account for m in db.margin_history(member="M1")} == {"A1", "A2"}


def test_member_partials_keep_the_newest_per_partition(db: Database) -> None:
    db.write(
        partials=[MemberPartial("M1", 0, 10.0, 2, 5, T0), MemberPartial("M1", 1, 4.0, 1, 2, T0)]
    )
    db.write(partials=[MemberPartial("M1", 0, 99.0, 2, 4, T0)])  # older: ignored
    (m,) = db.member_margins()
    assert (m.member, m.margin, m.accounts) == ("M1", 14.0, 3)
    assert db.firm_margin() == 14.0


def test_positions_at_each_version(db: Database) -> None:
    db.write(
        positions=[
            PositionChange("A1", 3, 0, T0, ("X C100", "X"), (5, -100)),
            PositionChange("A1", 8, 0, T0 + 1, ("X C100", "Y P50"), (0, 2)),
        ]
    )
    assert db.positions("A1", 2) == {}
    assert db.positions("A1", 3) == {"X C100": 5, "X": -100}
    assert db.positions("A1", 9) == {"X": -100, "Y P50": 2}  # flat ones left out
    assert db.position_versions("A1") == [3, 8]


def test_market_events_by_offset_range(db: Database) -> None:
    records = [MarketRecord(k, "price", "SPX", T0 + k, bytes([k, 0, 255])) for k in range(5)]
    db.write(market=records)
    db.write(market=records[:2])  # a replay
    assert db.market_events() == records
    assert db.market_events(after=1, upto=3) == records[2:4]


def test_a_book_load_and_its_files(db: Database) -> None:
    load = BookLoad("L" * 64, "B" * 64, {"confidence": 0.99, "lookback": 250}, "2018-12-31",
                    "/books/eod", T0)  # fmt: skip
    files = {"market.csv": b"underlying,date,spot\n", "history.parquet": bytes(range(256))}
    db.write_book_load(load, files)
    db.write_book_load(load, files)  # idempotent
    assert db.book_load(load.id) == load
    assert db.book_files(load.book) == files
    assert db.book_loads() == [load]
    assert db.book_load("nope") is None


def test_rejects_simm_and_audit_read_back_typed(db: Database) -> None:
    letter = Reject("mf.trades", 2, 17, "quantity", "must be an integer", b"\x81\xa1", T0)
    simm = StoredSimm("BANK", "P1", "2018-12-31", "CP", "S1", "2.6", 10, "USD", 5.0, 4.0,
                      "", "", 3, (SimmLine("collect", "SIMM", "RatesFX", "", "", 5.0),), 0, 7,
                      T0, T0 + 1)  # fmt: skip
    change = AuditedChange("RP-1", "es", "confidence", 0.995, "ana", "ben", T0, T0,
                           "mf.market", 0, 3)  # fmt: skip
    db.write(letters=[letter, letter], simm=[simm], changes=[change])
    assert db.rejects() == [letter]
    assert db.simm_results() == {("BANK", "P1", "2018-12-31"): simm}
    assert db.simm_history() == [simm]
    assert db.risk_parameter_audit() == [change]
    assert db.audited_change("RP-1") == change


def test_the_audit_refuses_update_and_delete(db: Database) -> None:
    change = AuditedChange("RP-1", "es", "apc", "buffer", "ana", "ben", T0, T0, "mf.market", 0, 0)
    db.write(changes=[change])
    table = db.t.risk_parameter_audit.name
    for sql in (f"UPDATE {table} SET value_text = 'none'", f"DELETE FROM {table}"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.transaction() as conn:
            conn.execute(sa.text(sql))
    assert db.risk_parameter_audit() == [change]


def test_a_change_whose_maker_approves_it_is_refused_by_the_database(db: Database) -> None:
    change = AuditedChange("RP-1", "es", "apc", "none", "ana", "ana", T0, T0, "mf.market", 0, 0)
    with pytest.raises(sa.exc.IntegrityError):
        db.write(changes=[change])


amounts = st.floats(allow_nan=False, allow_infinity=False, width=64)
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=30)  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(account=names, value=amounts, es=amounts | st.none(), driver=names)
def test_any_margin_reads_back_to_the_bit(
    db: Database, account: str, value: float, es: float | None, driver: str
) -> None:
    m = margin(account, 1, value=value, es=es, driver=driver)
    db.write(margins=[m])
    got = db.margin(account, version=1)
    assert got is not None
    assert got.margin == value
    # (SQLite keeps -0.0 as 0.0: equal as numbers, which is how margins are compared)
    assert got.es == es
    assert got.driver == driver
    assert got.account == account
    with db.transaction() as conn:  # next example starts empty
        conn.execute(sa.delete(db.t.account_margin_history))
        conn.execute(sa.delete(db.t.account_margin))
