"""The SIMM worker: CRIF submissions on the log -> SIMM results in the database, equal to
``marginflow simm``'s batch computation of the same CRIF; replays change nothing; a later
submission supersedes; hostile input becomes dead letters naming the field, and the worker
keeps going. SQLite and PostgreSQL; the embedded log and the real broker."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.core.errors import ConfigurationError
from marginflow.io.crif import read_crif
from marginflow.sim.loadgen import crif_submissions
from marginflow.sim.synthetic_crif import CrifSpec, generate, write_crif_csv
from marginflow.simm.calibration import available_versions, load_calibration
from marginflow.simm.report import simm_report
from marginflow.store import Database
from marginflow.stream import events as ev
from marginflow.stream.codec import Rejection, encode
from marginflow.stream.log.base import Log
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.publish import crif_row, publish_crif
from marginflow.stream.simm_worker import (
    SimmSettings,
    SimmWorker,
    breakdown_lines,
    margin_submission,
)
from marginflow.stream.topics import CRIF, SIMM_RESULTS, Topology
from tests.stream.simm_support import open_database, run_until, simm_and_sink

T0 = 1_717_000_000_000_000_000
DATE = "2024-05-31"
OLD_CRIF_V1 = (  # the crif wire form before the optional fields were added
    "89a474797065a463726966a17601ad7375626d697373696f6e5f6964a6435249462d31a57061727479a642"
    "414e4b2d41ac636f756e7465727061727479a642414e4b2d42a9706f7274666f6c696fa450462d31ad6275"
    "73696e6573735f64617465aa323032342d30352d3239a4726f7773918aa8696d5f6d6f64656ca453494d4d"
    "ad70726f647563745f636c617373a752617465734658a97269736b5f74797065ac5269736b5f4952437572"
    "7665a97175616c6966696572a3555344a66275636b6574a131a66c6162656c31a23277a66c6162656c32a3"
    "4f4953a6616d6f756e74cbc0c81cc000000000af616d6f756e745f63757272656e6379a3555344aa616d6f"
    "756e745f757364cbc0c81cc000000000aa6576656e745f74696d65cf17d4026727588000"
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request.param, tmp_path)


@pytest.fixture
def elog(tmp_path: Path, topology: Topology) -> EmbeddedLog:
    log = EmbeddedLog(tmp_path / "log", fsync="never")  # durability is tested elsewhere
    log.create_topics(topology.all())
    return log


def generated_rows(seed: int = 5, rows: int = 160) -> list[dict[str, Any]]:
    """One portfolio of every risk class, with regulations on both sides."""
    spec = CrifSpec(rows=rows, portfolios=1, trades=20, regulations=("SEC", "CFTC", "ESA"))
    return generate(CrifSpec(**{**_fields(spec), "seed": seed}))


def _fields(spec: CrifSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in CrifSpec.__dataclass_fields__}


def submission(
    rows: list[dict[str, Any]] | tuple[ev.CrifRow, ...],
    *,
    portfolio: str = "PF-1",
    sid: str = "S-1",
    party: str = "BANK-A",
    **extra: Any,
) -> ev.CrifSubmission:
    crif = tuple(r if isinstance(r, ev.CrifRow) else crif_row(r) for r in rows)
    return ev.CrifSubmission(
        submission_id=sid,
        party=party,
        counterparty="BANK-B",
        portfolio=portfolio,
        business_date=DATE,
        rows=crif,
        event_time=T0,
        **extra,
    )


def run(
    log: Log, topology: Topology, db: Database, state: Path, crif: int, sink: int, **kw: Any
) -> None:
    simm, sink_worker = simm_and_sink(log, topology, db, state, **kw)
    run_until([simm, sink_worker], records=[crif, sink])


def dump(db: Database) -> tuple[Any, ...]:
    """Everything the sink stored for SIMM, computed_time included (a rewrite would show)."""
    return (
        db.simm_results(),
        db.simm_history(),
        [(r.source_offset, r.field, r.reason) for r in db.rejects()],
    )


# --- the number ----------------------------------------------------------------------------


def test_result_equals_marginflow_simm_on_the_same_crif(
    tmp_path: Path, elog: EmbeddedLog, topology: Topology, db: Database
) -> None:
    rows = generated_rows()
    for row in rows:
        row["PortfolioID"] = "PF-1"
    publish_crif(elog.producer(), topology, [submission(rows)])
    run(elog, topology, db, tmp_path / "state", crif=1, sink=1)

    # the batch path a user takes: a CRIF file through `marginflow simm`'s reader and report
    calibration = load_calibration(available_versions()[-1], 10)
    path = write_crif_csv(rows, tmp_path / "crif.csv")
    report = simm_report(
        read_crif(path, calibration=calibration),
        calibration=calibration,
        as_of=__import__("datetime").date.fromisoformat(DATE),
    )
    stored = db.simm_results()[("BANK-A", "PF-1", DATE)]
    call, post = report.get("PF-1", "call"), report.get("PF-1", "post")
    assert stored.collect_im == pytest.approx(call.im, rel=1e-12, abs=0)
    assert stored.post_im == pytest.approx(post.im, rel=1e-12, abs=0)
    assert (stored.collect_regulation, stored.post_regulation) == (call.regulation, post.regulation)
    expected = [*breakdown_lines("collect", call), *breakdown_lines("post", post)]
    assert [(x.side, x.model, x.product_class, x.risk_class, x.margin_type) for x in expected] == [
        (x.side, x.model, x.product_class, x.risk_class, x.margin_type) for x in stored.breakdown
    ]
    for got, want in zip(stored.breakdown, expected, strict=True):
        assert got.margin == pytest.approx(want.margin, rel=1e-12, abs=1e-9)
    assert (stored.simm_version, stored.mpor_days, stored.currency) == (
        calibration.version,
        10,
        "USD",
    )
    assert stored.rows == len(rows)
    assert (stored.source_partition, stored.source_offset) == (_partition("PF-1", topology), 0)


def _partition(portfolio: str, topology: Topology) -> int:
    from marginflow.stream.topics import partition_for

    return partition_for(portfolio, topology.spec(CRIF).partitions)


def test_breakdown_adds_up_as_simm_does() -> None:
    result = margin_submission(
        submission(generated_rows(seed=9)), SimmSettings(), partition=0, offset=0, computed_time=1
    )
    assert isinstance(result, ev.SimmResult)
    for side, im in (("collect", result.collect_im), ("post", result.post_im)):
        lines = [x for x in result.breakdown if x.side == side]
        model = [x for x in lines if not x.product_class]
        assert math.fsum(x.margin for x in model) == pytest.approx(im, rel=1e-12)
        classes = [x for x in lines if x.product_class and not x.risk_class]
        assert math.fsum(x.margin for x in classes) == pytest.approx(model[0].margin, rel=1e-12)
        for rc in (x for x in lines if x.risk_class and not x.margin_type):
            types = [
                x.margin
                for x in lines
                if x.margin_type
                and (x.product_class, x.risk_class) == (rc.product_class, rc.risk_class)
            ]
            if types:  # ProductClassMultiplier add-ons have none
                assert math.fsum(types) == pytest.approx(rc.margin, rel=1e-12)


def test_settings_choose_version_mpor_and_currency() -> None:
    sub = submission(generated_rows(seed=3, rows=60))
    r26 = margin_submission(
        sub, SimmSettings("2.6", 1, "EUR"), partition=0, offset=0, computed_time=1
    )
    assert isinstance(r26, ev.SimmResult)
    assert (r26.simm_version, r26.mpor_days, r26.currency) == ("2.6", 1, "EUR")
    asked = margin_submission(
        submission(sub.rows, simm_version="2.5"), SimmSettings(), partition=0, offset=0,
        computed_time=1,
    )  # fmt: skip
    assert isinstance(asked, ev.SimmResult)
    assert asked.simm_version == "2.5"
    assert SimmSettings().version == available_versions()[-1]
    with pytest.raises(ConfigurationError, match=r"unknown SIMM version '9\.9'; available: 2\.2"):
        SimmSettings(version="9.9")
    with pytest.raises(ConfigurationError, match="mpor_days must be 10 or 1"):
        SimmSettings(mpor_days=5)
    with pytest.raises(ConfigurationError, match="SIMM currency"):
        SimmSettings(currency="EURO")


def test_old_crif_wire_form_still_decodes() -> None:
    old = SimmWorker(Topology()).codec("mf.crif").decode(bytes.fromhex(OLD_CRIF_V1))
    assert isinstance(old, ev.CrifSubmission)
    assert old.simm_version == ""
    assert old.rows[0].trade_id == ""


# --- versions: replays, duplicates, supersession -------------------------------------------


def test_a_replay_changes_nothing(
    tmp_path: Path, elog: EmbeddedLog, topology: Topology, db: Database
) -> None:
    subs = crif_submissions(3, rows=150)
    publish_crif(elog.producer(), topology, subs)
    run(elog, topology, db, tmp_path / "state", crif=3, sink=3)
    before = dump(db)
    assert len(before[0]) == 3
    assert len(before[1]) == 3
    # a second SIMM group recomputes every submission from offset 0 (as after a lost
    # snapshot): same versions, new computed_time; and the first results arrive twice more
    producer = elog.producer()
    results = elog.consumer(topology.prefix + "peek")
    results.assign({(topology.name(SIMM_RESULTS), p): 0 for p in range(topology.partitions)})
    again = []
    for _ in range(100):
        again += results.consume(100, 0.05)
        if len(again) >= 3:
            break
    results.close()
    for record in again:
        producer.produce(record.topic, record.value, partition=record.partition)
    producer.flush()
    run(elog, topology, db, tmp_path / "state", crif=3, sink=6, simm_group="simm-replay")
    assert dump(db) == before


def test_a_later_submission_supersedes_and_history_keeps_both(
    tmp_path: Path, elog: EmbeddedLog, topology: Topology, db: Database
) -> None:
    first = submission(generated_rows(seed=1, rows=80), sid="S-1")
    second = submission(generated_rows(seed=2, rows=80), sid="S-1-corrected")
    other = submission(generated_rows(seed=3, rows=80), sid="S-X", party="BANK-C")
    publish_crif(elog.producer(), topology, [first, second, other])
    run(elog, topology, db, tmp_path / "state", crif=3, sink=3)
    current = db.simm_results()
    assert current[("BANK-A", "PF-1", DATE)].submission_id == "S-1-corrected"
    assert current[("BANK-A", "PF-1", DATE)].source_offset == 1
    # same portfolio name from another firm: its own row, not a supersession
    assert current[("BANK-C", "PF-1", DATE)].submission_id == "S-X"
    assert [h.source_offset for h in db.simm_history() if h.party == "BANK-A"] == [0, 1]


def test_an_older_version_arriving_late_does_not_overwrite(db: Database) -> None:
    settings = SimmSettings()
    rows = generated_rows(seed=4, rows=60)
    old, new = (
        margin_submission(submission(rows, sid=s), settings, partition=1, offset=o,
                          computed_time=o + 1)
        for s, o in (("old", 5), ("new", 9))
    )  # fmt: skip
    assert isinstance(old, ev.SimmResult)
    assert isinstance(new, ev.SimmResult)
    db.write([], [], [], [new])
    db.write([], [], [], [old])
    db.write([], [], [], [new, old])  # a duplicated batch
    assert db.simm_results()[("BANK-A", "PF-1", DATE)].submission_id == "new"
    assert [h.source_offset for h in db.simm_history()] == [5, 9]


# --- hostile input -------------------------------------------------------------------------

CODEC = SimmWorker(Topology()).codec("mf.crif")
SETTINGS = SimmSettings()
IR_ROW = ev.CrifRow(
    product_class="RatesFX",
    risk_type="Risk_IRCurve",
    qualifier="USD",
    bucket="1",
    label1="2y",
    label2="OIS",
    amount=125_000.0,
    amount_currency="USD",
    amount_usd=125_000.0,
)
TEXT_FIELDS = (
    "risk_type",
    "product_class",
    "qualifier",
    "bucket",
    "label1",
    "label2",
    "amount_currency",
    "im_model",
)


def margin_raw(raw: bytes) -> ev.SimmResult | Rejection:
    """What the worker does with one record: decode, then margin (or refuse)."""
    event = CODEC.try_decode(raw)
    if isinstance(event, Rejection):
        return event
    worker = SimmWorker(Topology())
    refused = worker.apply(("mf.crif", 0), [(7, event)])
    if refused:
        return refused[0][1]
    (out,) = worker.recompute()
    assert isinstance(out.event, ev.SimmResult)
    return out.event


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_never_raised(raw: bytes) -> None:
    assert isinstance(margin_raw(raw), Rejection)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    row=st.integers(0, 3),
    name=st.sampled_from(TEXT_FIELDS),
    junk=st.text(max_size=12).map(lambda t: "Zq" + t),
)
def test_a_bad_text_field_is_refused_naming_row_and_field(row: int, name: str, junk: str) -> None:
    doc: dict[str, Any] = msgspec.to_builtins(submission((IR_ROW,) * 4))
    doc["rows"][row][name] = junk  # bypass construction: the bytes are what a producer sends
    result = margin_raw(msgspec.msgpack.encode(doc))
    assert isinstance(result, Rejection), result
    assert result.field == f"rows[{row}].{name}", result


@settings(max_examples=120, deadline=None)
@given(
    row=st.integers(0, 3),
    name=st.sampled_from(("amount", "amount_usd")),
    value=st.sampled_from([math.nan, math.inf, -math.inf, 1e21, -3e300, 1.5e308]),
)
def test_a_non_finite_or_huge_amount_is_refused(row: int, name: str, value: float) -> None:
    doc: dict[str, Any] = msgspec.to_builtins(submission((IR_ROW,) * 4))
    doc["rows"][row][name] = value
    result = margin_raw(msgspec.msgpack.encode(doc))
    assert isinstance(result, Rejection), result
    assert result.field == f"rows[{row}].{name}", result


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(("submission_id", "party", "counterparty", "portfolio", "business_date")),
    value=st.sampled_from(["", " x", "BANK-A", "2024-02-30", 7]),
)
def test_a_bad_envelope_field_is_refused_by_name(name: str, value: object) -> None:
    doc: dict[str, Any] = msgspec.to_builtins(submission((IR_ROW,)))
    doc[name] = value
    result = margin_raw(msgspec.msgpack.encode(doc))
    if isinstance(result, ev.SimmResult):  # a value that happens to be valid there
        assert getattr(result, name) == value
        return
    assert result.field == name, result


def test_an_unknown_version_is_refused_by_name() -> None:
    result = margin_raw(encode(submission((IR_ROW,), simm_version="1.0")))
    assert isinstance(result, Rejection)
    assert result.field == "simm_version"
    assert result.reason.startswith("unknown SIMM version '1.0'; available: 2.2")


def test_several_bad_rows_name_the_first_and_count_the_rest() -> None:
    bad = msgspec.structs.replace(IR_ROW, label1="7w")
    result = margin_raw(encode(submission((IR_ROW, bad, IR_ROW, bad, bad))))
    assert isinstance(result, Rejection)
    assert result.field == "rows[1].label1"
    assert "tenor label '7w' is not allowed for Risk_IRCurve" in result.reason
    assert "(2 more row(s) rejected; the submission is margined whole or not)" in result.reason


def test_the_worker_keeps_going_and_keeps_every_bad_record(
    tmp_path: Path, elog: EmbeddedLog, topology: Topology, db: Database
) -> None:
    topic, part = topology.name(CRIF), _partition("PF-1", topology)
    producer = elog.producer()
    good = submission((IR_ROW,))
    records = [
        b"\xc1 not msgpack",
        encode(submission((msgspec.structs.replace(IR_ROW, risk_type="Risk_Nope"),))),
        encode(good),
        encode(submission((IR_ROW,), simm_version="0.1")),
        encode(submission((IR_ROW,), sid="S-2")),
    ]
    for raw in records:
        producer.produce(topic, raw, partition=part, key=b"PF-1")
    producer.flush()
    run(elog, topology, db, tmp_path / "state", crif=5, sink=5)
    rejects = {r.source_offset: (r.field, r.reason, r.raw) for r in db.rejects()}
    assert sorted(rejects) == [0, 1, 3]
    assert rejects[0][0] == "$"
    assert rejects[0][2] == records[0]
    assert rejects[1][:2] == ("rows[0].risk_type", "unknown risk type 'Risk_Nope'")
    assert rejects[3][0] == "simm_version"
    stored = db.simm_results()[("BANK-A", "PF-1", DATE)]
    assert (stored.submission_id, stored.source_offset) == ("S-2", 4)


# --- the real broker -----------------------------------------------------------------------


@pytest.mark.broker
def test_on_the_broker(tmp_path: Path, kafka_log: Log, topology: Topology) -> None:
    kafka_log.create_topics(topology.all())
    subs = crif_submissions(3, rows=120)
    publish_crif(kafka_log.producer(), topology, subs)
    db = Database(f"sqlite:///{tmp_path / 'sink.db'}")
    run(kafka_log, topology, db, tmp_path / "state", crif=3, sink=3, static=True)
    stored = db.simm_results()
    assert {k[1] for k in stored} == {s.portfolio for s in subs}
    for s in subs:
        direct = margin_submission(s, SimmSettings(), partition=0, offset=0, computed_time=1)
        assert isinstance(direct, ev.SimmResult)
        got = stored[(s.party, s.portfolio, s.business_date)]
        assert (got.collect_im, got.post_im) == (direct.collect_im, direct.post_im)
    db.close()


# --- configuration -------------------------------------------------------------------------


def test_runner_and_cluster_refuse_an_unknown_version_by_name(tmp_path: Path) -> None:
    from marginflow.stream.cluster import ClusterConfig
    from marginflow.stream.runner import main

    args = ["simm", "--log", f"embedded://{tmp_path / 'log'}", "--state", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"simm: unknown SIMM version '9\.9'; available: 2\.2"):
        main([*args, "--simm-version", "9.9"])
    with pytest.raises(ConfigurationError, match=r"unknown SIMM version '9\.9'"):
        ClusterConfig.load(None, {"simm_version": "9.9"})
    with pytest.raises(ConfigurationError, match="mpor must be 10 or 1, got 5"):
        ClusterConfig.load(None, {"mpor": 5})
