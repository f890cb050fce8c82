"""Drift monitoring on the embedded log: lag in messages, wall and event seconds per group,
drift between stages, thresholds, Prometheus gauges, and the ``marginflow lag`` command."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from marginflow.sim.loadgen import TradeFlow, trades
from marginflow.stream.drift import DriftMonitor, Thresholds, export_metrics
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.position_keeper import PositionKeeper
from marginflow.stream.publish import publish_trades
from marginflow.stream.snapshots import FileSnapshotStore
from marginflow.stream.topics import Topology
from marginflow.stream.worker import MicroBatchWorker, WorkerSettings
from tests.cli_runner import invoke

FLOW = TradeFlow(accounts=10, instruments=20, per_account=3, step_ns=1_000_000)  # 1 ms apart


@pytest.fixture
def half_done(tmp_path: Path) -> tuple[EmbeddedLog, Topology]:
    """1000 trades on one partition; the keeper has committed the first 400."""
    log = EmbeddedLog(tmp_path / "log")
    topology = Topology(partitions=1)
    log.create_topics(topology.all())
    publish_trades(log.producer(), topology, trades(FLOW, 1_000))
    keeper = MicroBatchWorker(
        PositionKeeper(topology),
        log=log,
        store=FileSnapshotStore(tmp_path / "state"),
        settings=WorkerSettings(group="mf.position-keeper", max_batch=400, max_wait=0.0),
        topology=topology,
    )
    keeper.step()
    keeper.close()  # snapshot + commit at 400
    time.sleep(0.05)  # the oldest waiting record is now at least 50 ms old
    return log, topology


def test_lag_in_messages_and_seconds(half_done: tuple[EmbeddedLog, Topology]) -> None:
    log, topology = half_done
    report = DriftMonitor(log, topology).sample()
    keeper = next(g for g in report.groups if g.group == "mf.position-keeper")
    assert keeper.messages == 600
    # event times step 1 ms: the last trade (999) is 600 ms after the last committed (399)
    assert keeper.event_seconds == pytest.approx(0.600, abs=1e-9)
    assert keeper.wall_seconds >= 0.05
    calculator = next(g for g in report.groups if g.group == "mf.risk-calculator")
    assert calculator.messages > 0  # the keeper published positions nobody consumed yet
    drift = {(d.upstream, d.downstream): d.seconds for d in report.drift}
    # the calculator has committed nothing: its watermark is 0, so drift is the keeper's
    assert drift[("position-keeper", "risk-calculator")] > 1e9


def test_thresholds_raise_alerts_and_metrics(half_done: tuple[EmbeddedLog, Topology]) -> None:
    log, topology = half_done
    report = DriftMonitor(log, topology, thresholds=Thresholds(messages=500)).sample()
    alerted = {g.group for g in report.alerts}
    assert "mf.position-keeper" in alerted
    registry = CollectorRegistry()
    export_metrics(report, registry)
    labels = {"group": "mf.position-keeper", "topic": "mf.trades"}
    assert registry.get_sample_value("marginflow_lag_messages", labels) == 600
    assert registry.get_sample_value("marginflow_lag_alert", labels) == 1.0


def test_lag_command(half_done: tuple[EmbeddedLog, Topology]) -> None:
    log, topology = half_done
    url = f"embedded://{log.root}"
    result = invoke(["lag", "--log", url, "--prefix", topology.prefix, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    keeper = next(g for g in doc["groups"] if g["group"] == "mf.position-keeper")
    assert keeper["messages"] == 600
    alert = invoke(["lag", "--log", url, "--alert-messages", "10"])
    assert alert.exit_code == 3
    assert "ALERT" in alert.output
    table = invoke(["lag", "--log", url])
    assert "mf.position-keeper" in table.output


def test_lag_command_without_a_cluster_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke(["lag", "--dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no cluster is up" in result.output


def test_lag_command_refuses_a_missing_embedded_log(tmp_path: Path) -> None:
    result = invoke(["lag", "--log", f"embedded://{tmp_path / 'none'}"])
    assert result.exit_code == 2
    assert "no embedded log" in result.output
    assert not (tmp_path / "none").exists()
