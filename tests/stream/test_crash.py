"""SIGKILL workers at random points, many times, against the embedded log and the real
broker; then compare everything they published with a batch recompute: zero lost, zero
wrong, replays absorbed by the versioned upsert.

CI kills each configuration 10 times; ``python -m benchmarks.stream --soak`` runs 100.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from marginflow.stream.loadgen import TradeFlow, price_moves, publish_market, publish_trades, trades
from marginflow.stream.log.base import Log
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.log.kafka import KafkaLog
from marginflow.stream.pipeline import ROLES, sod_positions
from marginflow.stream.reconcile import check_margins, check_positions
from marginflow.stream.risk_calculator import EngineSpec, start_of_day
from marginflow.stream.sink import Database
from marginflow.stream.topics import Topology
from tests.stream.crash import (
    FAST_FAILOVER,
    Feeder,
    Supervisor,
    kill_repeatedly,
    run_to_completion,
    worker_command,
)

FLOW = TradeFlow(accounts=300, instruments=500, per_account=6)
CHUNK = 3_000
KILLS = 10


def _keeper_crash_test(log: Log, url: str, topology: Topology, state: Path, seed: int) -> None:
    log.create_topics(topology.all())
    producer = log.producer()

    def publish(k: int) -> None:
        publish_trades(producer, topology, trades(FLOW, CHUNK, first=k * CHUNK))

    publish(0)
    command = worker_command(
        "position-keeper",
        url,
        state,
        "--prefix",
        topology.prefix,
        "--partitions",
        str(topology.partitions),
        "--max-batch",
        "400",
        "--snapshot-interval",
        "0.05",
    )
    with Feeder(lambda k: publish(k + 1), chunks=15, interval=0.4) as feeder:
        report = kill_repeatedly(command, kills=KILLS, seed=seed)
    run_to_completion(command)
    result = check_positions(log, topology)
    assert result.ok, result.mismatches[:5] + result.lost[:5]
    assert result.keys == FLOW.accounts
    assert report.kills == KILLS
    print(
        f"{report.kills} kills ({report.chaos_kills} inside the protocol), "
        f"{(feeder.published + 1) * CHUNK} trades: {result.summary()}"
    )


@pytest.mark.slow
def test_position_keeper_survives_sigkill_on_the_embedded_log(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log")
    _keeper_crash_test(log, f"embedded://{tmp_path / 'log'}", Topology(4), tmp_path / "state", 1)


@pytest.mark.slow
@pytest.mark.broker
def test_position_keeper_survives_sigkill_on_the_broker(
    tmp_path: Path, broker_bootstrap: str, topology: Topology
) -> None:
    log = KafkaLog(broker_bootstrap)
    url = f"kafka://{broker_bootstrap}?{FAST_FAILOVER}"
    _keeper_crash_test(log, url, topology, tmp_path / "state", 2)
    log.close()


SPEC = EngineSpec(
    members=3, accounts=60, underlyings=6, series=150, sod_positions=300, lookback_days=250
)
PIPELINE_KILLS = 10


def _book_args(spec: EngineSpec) -> list[str]:
    return [
        "--members", str(spec.members), "--accounts", str(spec.accounts),
        "--underlyings", str(spec.underlyings), "--series", str(spec.series),
        "--sod-positions", str(spec.sod_positions), "--book-seed", str(spec.seed),
        "--lookback", str(spec.lookback_days),
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.broker
def test_whole_pipeline_survives_sigkill_on_the_broker(
    tmp_path: Path, broker_bootstrap: str, topology: Topology
) -> None:
    log = KafkaLog(broker_bootstrap)
    log.create_topics(topology.all())
    url = f"kafka://{broker_bootstrap}?{FAST_FAILOVER}"
    db_url = f"sqlite:///{tmp_path / 'margins.db'}"
    common = [
        "--prefix", topology.prefix, "--partitions", str(topology.partitions),
        "--max-batch", "300", "--snapshot-interval", "0.1", *_book_args(SPEC),
        "--db", db_url,
    ]  # fmt: skip
    commands = {role: worker_command(role, url, tmp_path / "state", *common) for role in ROLES}
    book = start_of_day(SPEC)
    flow = TradeFlow.over(book.positions.accounts, book.instruments.ids, seed=5)
    producer = log.producer()
    publish_trades(producer, topology, sod_positions(book))
    moves = list(price_moves(book.underlyings.ids, 200, seed=5))

    def publish(k: int) -> None:
        publish_trades(producer, topology, trades(flow, 1_000, first=k * 1_000))
        publish_market(producer, topology, moves[k * 10 : (k + 1) * 10])

    supervisor = Supervisor(commands, tmp_path / "logs", seed=3)
    with Feeder(publish, chunks=20, interval=0.3) as feeder:
        supervisor.kill_until(PIPELINE_KILLS, chaos=0.005, max_gap=1.5)
    supervisor.finish(list(ROLES))

    positions = check_positions(log, topology)
    assert positions.ok, positions.mismatches[:5] + positions.lost[:5]
    db = Database(db_url)
    margins = check_margins(log, topology, SPEC, db)
    assert margins.ok, margins.mismatches[:5] + margins.lost[:5]
    assert margins.keys == SPEC.accounts
    assert all(supervisor.by_role.values()), supervisor.by_role  # every role died at least once
    print(
        f"{supervisor.kills} kills {supervisor.by_role} ({supervisor.chaos_kills} inside the "
        "protocol), "
        f"{feeder.published * 1_000} trades; positions: {positions.summary()}; "
        f"margins: {margins.summary()}, max rel. error {margins.max_rel_error:.1e}"
    )
    db.close()
    log.close()
