"""Risk-parameter changes from the market topic -> the append-only audit table: every
approved change once, with maker and checker; four-eyes violations, missing approvers and
rewrites of a recorded change are dead-lettered naming the field. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from marginflow.core.errors import ValidationError
from marginflow.sim.loadgen import risk_parameter_changes
from marginflow.store import Database
from marginflow.stream.codec import encode
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.sink import Sink, audited
from marginflow.stream.topics import MARKET, Topology
from tests.stream.simm_support import open_database, run_until, worker

T0 = 1_717_000_000_000_000_000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request.param, tmp_path)


def change(**fields: Any) -> dict[str, Any]:
    """A change as the map a producer sends (construction would refuse the bad ones)."""
    doc: dict[str, Any] = msgspec.to_builtins(risk_parameter_changes(start_ns=T0)[0])
    doc.update(fields)
    return doc


def run_sink(
    tmp_path: Path, topology: Topology, db: Database, raws: list[bytes], *, letters: int = 0
) -> None:
    """Publish ``raws`` on the market topic and run a sink until it has read them and
    the ``letters`` dead letters it refuses them into (they come back to it through the
    dead-letter topic, into the rejects table)."""
    log = EmbeddedLog(tmp_path / "log", fsync="never")
    log.create_topics(topology.all())
    producer = log.producer()
    for raw in raws:
        producer.produce(topology.name(MARKET), raw, partition=0)
    producer.flush()
    sink = worker(Sink(topology, db), log, topology, tmp_path / "state", "sink")
    run_until([sink], records=[len(raws) + letters])


def test_approved_changes_are_recorded_once_with_maker_and_checker(
    tmp_path: Path, topology: Topology, db: Database
) -> None:
    changes = risk_parameter_changes(start_ns=T0)
    raws = [encode(c) for c in changes] + [encode(changes[0])]  # a producer's retry
    run_sink(tmp_path, topology, db, raws)
    audit = db.risk_parameter_audit()
    market = (topology.name(MARKET), 0)
    assert audit == [audited(c, market, k) for k, c in enumerate(changes)]
    assert [(a.source_topic, a.source_partition, a.source_offset) for a in audit] == [
        (topology.name(MARKET), 0, 0),
        (topology.name(MARKET), 0, 1),
    ]
    assert audit[1].value == "buffer"
    assert audit[0].value == 0.99
    assert db.rejects() == []


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"approved_by": "risk.analyst"}, "approved_by", "must differ from requested_by"),
        ({"approved_by": "Risk.Analyst"}, "approved_by", "must differ from requested_by"),
        ({"approved_by": ""}, "approved_by", "must be non-empty"),
        ({"approved_by": None}, "approved_by", "Expected `str`, got `None`"),
        ({"requested_by": ""}, "requested_by", "must be non-empty"),
    ],
)
def test_four_eyes_and_missing_approver_are_dead_lettered(
    tmp_path: Path,
    topology: Topology,
    db: Database,
    fields: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    bad = msgspec.msgpack.encode(change(change_id="RP-BAD", **fields))
    missing = change(change_id="RP-NONE")
    del missing["approved_by"]
    good = encode(risk_parameter_changes(start_ns=T0)[1])
    run_sink(tmp_path, topology, db, [bad, msgspec.msgpack.encode(missing), good], letters=2)
    rejects = {r.source_offset: r for r in db.rejects()}
    assert rejects[0].field == field, rejects[0]
    assert reason in rejects[0].reason, rejects[0]
    assert rejects[0].raw == bad  # kept as sent
    assert (rejects[1].field, rejects[1].reason) == ("approved_by", "is missing")
    assert [a.change_id for a in db.risk_parameter_audit()] == ["RP-0002"]


def test_a_recorded_change_is_never_rewritten(
    tmp_path: Path, topology: Topology, db: Database
) -> None:
    first = risk_parameter_changes(start_ns=T0)[0]
    rewrite = msgspec.structs.replace(first, value=0.975)
    run_sink(tmp_path, topology, db, [encode(first), encode(rewrite), encode(rewrite)], letters=2)
    assert [a.content() for a in db.risk_parameter_audit()] == [
        audited(first, ("mf.market", 0), 0).content()
    ]
    rejects = db.rejects()
    assert [(r.source_offset, r.field) for r in rejects] == [(1, "change_id"), (2, "change_id")]
    assert "already recorded" in rejects[0].reason
    assert "publish a new change_id" in rejects[0].reason


def test_the_audit_table_refuses_update_and_delete(db: Database) -> None:
    c = risk_parameter_changes(start_ns=T0)[0]
    db.write(changes=[audited(c, ("mf.market", 0), 0)])
    table = db.t.risk_parameter_audit.name
    for sql in (f"UPDATE {table} SET value_number = 0.5", f"DELETE FROM {table}"):
        with pytest.raises(Exception, match="append-only"), db.transaction() as conn:
            conn.execute(sa.text(sql))
    assert [a.content() for a in db.risk_parameter_audit()] == [
        audited(c, ("mf.market", 0), 0).content()
    ]


def test_construction_refuses_four_eyes_too() -> None:
    with pytest.raises(ValidationError, match="approved_by: must differ"):
        msgspec.structs.replace(risk_parameter_changes(start_ns=T0)[0], approved_by="RISK.ANALYST")
