"""``marginflow cluster up/down``: configuration, and a real local cluster on the broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marginflow.cli.app import _register_commands, app
from marginflow.core.errors import ConfigurationError
from marginflow.store import Database, StoredMargin
from marginflow.stream.cluster import ClusterConfig, alive, read_state
from marginflow.stream.drift import DriftMonitor
from marginflow.stream.log import open_log
from marginflow.stream.topics import Topology


def test_config_file_then_options(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text("[cluster]\npartitions = 8\ncalculators = 2\nrate = 500.0\n")
    config = ClusterConfig.load(path, {"calculators": 3, "trades": None})
    assert (config.partitions, config.calculators, config.rate) == (8, 3, 500.0)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text("[cluster]\nworkers = 2\n")
    with pytest.raises(ConfigurationError, match="unknown keys workers"):
        ClusterConfig.load(path, {})
    with pytest.raises(ConfigurationError, match="partitions must be >= 1"):
        ClusterConfig.load(None, {"partitions": 0})
    with pytest.raises(ConfigurationError, match="log must be"):
        ClusterConfig.load(None, {"log": "carrier-pigeon"})


def test_down_without_up_is_a_clear_error(tmp_path: Path) -> None:
    _register_commands()
    result = CliRunner().invoke(app, ["cluster", "down", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no cluster is up" in result.output


@pytest.mark.slow
@pytest.mark.broker
def test_cluster_up_runs_the_pipeline_and_down_stops_it(tmp_path: Path) -> None:
    _register_commands()
    runner = CliRunner()
    directory = tmp_path / "cluster"
    args = [
        "--dir", str(directory), "--trades", "3000", "--rate", "0", "--accounts", "30",
        "--underlyings", "5", "--series", "100", "--lookback", "250", "--partitions", "2",
    ]  # fmt: skip
    up = runner.invoke(app, ["cluster", "up", *args])
    assert up.exit_code == 0, up.output
    state = read_state(directory)
    pids = [p["pid"] for p in state["processes"]]
    try:
        monitor = DriftMonitor(open_log(state["log"]), Topology(prefix="mf."))
        deadline = time.monotonic() + 120
        stored: dict[str, StoredMargin] = {}
        while time.monotonic() < deadline:
            time.sleep(1.0)
            status = runner.invoke(app, ["cluster", "status", "--dir", str(directory), "--json"])
            loadgen = next(
                p for p in json.loads(status.stdout)["processes"] if p["role"] == "loadgen"
            )
            if loadgen["running"]:
                continue
            db = Database(state["db"])
            stored = db.account_margins()
            db.close()
            if len(stored) == 30 and not any(g.messages for g in monitor.sample().groups):
                break
        assert len(stored) == 30  # every account of the book traded and got a margin
        assert all(m.margin >= 0 for m in stored.values())
    finally:
        down = runner.invoke(app, ["cluster", "down", "--dir", str(directory)])
    assert down.exit_code == 0, down.output
    assert not any(alive(p) for p in pids)
    assert not (directory / "cluster.json").exists()
