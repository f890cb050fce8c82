"""Risk-parameter changes take effect: the calculator re-margins every account under an
approved change, in order with market data, so the published margins equal a batch
recompute under the same changes; changes it cannot apply are dead-lettered naming the
field, and the sink's audit trail holds them all the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from marginflow.engine.settings import MarginSettings
from marginflow.sim.loadgen import TradeFlow, book_spots, parameter_change, price_moves, trades
from marginflow.sim.synthetic_book import BookSpec
from marginflow.store import Database
from marginflow.stream import events as ev
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.pipeline import BatchSettings, InProcessPipeline, build_pipeline
from marginflow.stream.publish import (
    publish_market,
    publish_parameter_changes,
    publish_trades,
    sod_positions,
)
from marginflow.stream.reconcile import check_margins
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.topics import MARKET, Topology

BOOK = BookSpec(members=3, accounts=30, underlyings=5, series=100, sod_positions=150)
SETUP = MarginSetup(BOOK.book(), MarginSettings(lookback=250))
T = 1_717_000_200_000_000_000


def _change(cid: str, parameter: str, value: float | str) -> ev.RiskParameterChange:
    return parameter_change(cid, parameter, value, at_ns=T)


def _run_pipeline(log: EmbeddedLog, topology: Topology, tmp_path: Path) -> InProcessPipeline:
    """The in-process pipeline on ``log`` until idle, state and database under ``tmp_path``
    (a second call resumes from the first's snapshots)."""
    pipeline = build_pipeline(
        log=log,
        topology=topology,
        state_dir=tmp_path / "state",
        db_url=f"sqlite:///{tmp_path / 'm.db'}",
        setup=SETUP,
        batches=BatchSettings(max_batch=200),
    )
    pipeline.run(idle_exit=0.5)
    pipeline.close()
    return pipeline


def _run(
    tmp_path: Path, changes: list[ev.RiskParameterChange]
) -> tuple[EmbeddedLog, Database, Topology]:
    log = EmbeddedLog(tmp_path / "log", fsync="never")
    topology = Topology(partitions=2)
    log.create_topics(topology.all())
    producer = log.producer()
    book = BOOK.book()
    publish_trades(producer, topology, sod_positions(book))
    flow = TradeFlow.over(book.positions.accounts, book.instruments.ids, seed=3)
    moves = list(price_moves(book_spots(book), 40, seed=3))
    # trades, moves and changes interleaved: a change lands between market events
    for k in range(4):
        publish_trades(producer, topology, trades(flow, 300, first=300 * k))
        publish_market(producer, topology, moves[10 * k : 10 * k + 10])
        publish_parameter_changes(producer, topology, changes[k::4])
    return log, _run_pipeline(log, topology, tmp_path).db, topology


APPLIED = [
    _change("RP-1", "confidence", 0.975),
    _change("RP-2", "participation", 0.02),
    _change("RP-3", "apc", "buffer"),
    _change("RP-4", "apc_buffer", 0.4),
]


def test_changes_re_margin_every_account_as_a_batch_recompute_does(tmp_path: Path) -> None:
    log, db, topology = _run(tmp_path / "with", APPLIED)
    report = check_margins(log, topology, SETUP, db)
    assert report.ok, report.mismatches[:5] + report.lost[:5]
    assert report.keys == BOOK.accounts
    _, plain, _ = _run(tmp_path / "without", [])
    with_changes = {a: m.margin for a, m in db.account_margins().items()}
    without = {a: m.margin for a, m in plain.account_margins().items()}
    assert with_changes.keys() == without.keys()
    # the changes matter: a lower confidence and an APC buffer move every margin
    assert sum(abs(with_changes[a] - without[a]) > 1e-6 for a in without) > len(without) // 2
    assert [a.change_id for a in db.risk_parameter_audit()] == [
        "RP-1",
        "RP-2",
        "RP-3",
        "RP-4",
    ]


def test_changes_it_cannot_apply_are_dead_lettered_naming_the_field(tmp_path: Path) -> None:
    bad = [
        _change("RP-1", "confidence", 0.975),
        _change("RP-5", "apc", "floor-10y"),  # needs a 10-year scenario set
        _change("RP-6", "tail_weight", 0.5),  # no such setting
        _change("RP-1", "confidence", 0.9),  # a recorded change rewritten
    ]
    log, db, topology = _run(tmp_path, bad)
    market = topology.name(MARKET)
    rejects = {
        r.source_offset: (r.field, r.reason) for r in db.rejects() if r.source_topic == market
    }
    reasons = sorted(rejects.values())
    assert (
        "parameter",
        "unknown parameter 'tail_weight' for model es; known: confidence, apc, "
        "apc_buffer, stressed_weight, concentration, participation",
    ) in reasons
    assert any(f == "value" and "10-year look-back" in why for f, why in reasons)
    assert any(f == "change_id" and "'RP-1' was applied" in why for f, why in reasons)
    assert len(rejects) == 3
    # what was refused changes nothing: the margins are those under RP-1 alone
    report = check_margins(log, topology, SETUP, db)
    assert report.ok, report.mismatches[:5] + report.lost[:5]


def test_a_restarted_calculator_keeps_the_parameters_it_applied(tmp_path: Path) -> None:
    # the broadcast snapshot holds the changes: a new pipeline on the same state resumes
    # under them, and margins published after the restart still equal the batch recompute
    log, _, topology = _run(tmp_path, APPLIED[:2])
    producer = log.producer()
    book = BOOK.book()
    flow = TradeFlow.over(book.positions.accounts, book.instruments.ids, seed=3)
    publish_trades(producer, topology, trades(flow, 300, first=5_000))
    pipeline = _run_pipeline(log, topology, tmp_path)
    report = check_margins(log, topology, SETUP, pipeline.db)
    assert report.ok, report.mismatches[:5] + report.lost[:5]
    assert pipeline.engine.model.confidence == pytest.approx(0.975)
    assert pipeline.engine.model.participation == pytest.approx(0.02)
