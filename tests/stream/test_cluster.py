"""``marginflow cluster up/status/down``: configuration; a real local cluster on the embedded
log, supervised (a SIGKILLed worker comes back with its command line and database, ``down``
leaves no process alive); and one on the broker."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from marginflow.core.errors import ConfigurationError
from marginflow.store import Database, StoredMargin
from marginflow.stream.cluster import ClusterConfig, alive, read_state, status
from marginflow.stream.drift import DriftMonitor
from marginflow.stream.log import open_log
from marginflow.stream.supervisor import Plan, ProcessSpec, RestartPolicy, start_detached
from marginflow.stream.topics import Topology
from tests.cli_runner import invoke
from tests.stream.cluster_support import (
    SMALL,
    cli,
    cmdline,
    every_pid,
    none_alive,
    process,
    settled,
    wait_for,
)


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
    with pytest.raises(ConfigurationError, match="restart backoff"):
        ClusterConfig.load(None, {"restart_backoff": 0.0})


def test_down_without_up_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke(["cluster", "down", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no cluster is up" in result.output


@pytest.mark.slow
@pytest.mark.broker
def test_cluster_up_runs_the_pipeline_and_down_stops_it(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    args = [
        "--dir", str(directory), "--trades", "3000", "--rate", "0", "--accounts", "30",
        "--underlyings", "5", "--series", "100", "--lookback", "250", "--partitions", "2",
    ]  # fmt: skip
    up = invoke(["cluster", "up", *args])
    assert up.exit_code == 0, up.output
    state = read_state(directory)
    try:
        monitor = DriftMonitor(open_log(state["log"]), Topology(prefix="mf."))
        deadline = time.monotonic() + 120
        stored: dict[str, StoredMargin] = {}
        while time.monotonic() < deadline:
            time.sleep(1.0)
            status = invoke(["cluster", "status", "--dir", str(directory), "--json"])
            loadgen = next(
                p for p in json.loads(status.stdout)["processes"] if p["role"] == "loadgen"
            )
            if loadgen["alive"]:
                continue
            db = Database(state["db"])
            stored = db.account_margins()
            db.close()
            if len(stored) == 30 and not any(g.messages for g in monitor.sample().groups):
                break
        assert len(stored) == 30  # every account of the book traded and got a margin
        assert all(m.margin >= 0 for m in stored.values())
    finally:
        pids = every_pid(read_state(directory))
        down = invoke(["cluster", "down", "--dir", str(directory)])
    assert down.exit_code == 0, down.output
    assert not any(alive(p) for p in pids)
    assert not (directory / "cluster.json").exists()
    # the broker kept the log in memory: the snapshots left behind cannot be resumed
    again = invoke(["cluster", "up", *args])
    assert again.exit_code == 2
    assert "broker it ran on kept its log in memory" in again.output
    assert "--fresh" in again.output
    assert not (directory / "cluster.json").exists()


@pytest.mark.slow
def test_a_killed_worker_comes_back_with_its_command_line_and_database(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"  # where the user runs the commands: nothing lands here
    elsewhere.mkdir()
    directory = (tmp_path / "cluster").resolve()
    up = cli("cluster", "up", "--dir", str(directory), *SMALL, cwd=elsewhere)
    assert up.returncode == 0, up.stderr
    try:  # `up` has exited: the supervisor and the workers run on without it
        sink = process(status(directory), "sink-0")
        db = f"sqlite:///{directory / 'margins.db'}"
        assert sink["command"][sink["command"].index("--db") + 1] == db
        os.kill(sink["pid"], signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            p = process(status(directory), "sink-0")
            return p if p["restarts"] == 1 and p["alive"] else None

        again = wait_for(restarted, "the sink's restart")
        assert again["pids"] == [sink["pid"], again["pid"]]
        assert again["command"] == sink["command"]
        assert cmdline(again["pid"]) == sink["command"]
        assert again["last_exit"] == "killed by SIGKILL"
        wait_for(lambda: settled(directory), "the day to reach the cluster's database")

        shown = cli("cluster", "status", "--dir", str(directory), cwd=elsewhere)
        assert shown.returncode == 0, shown.stderr
        assert "killed by SIGKILL" in shown.stdout
        assert f"sink-0: {shlex.join(sink['command'])}\n" in shown.stdout
        doc = json.loads(cli("cluster", "status", "--dir", str(directory), "--json").stdout)
        by_name = {p["name"]: p for p in doc["processes"]}
        assert by_name["sink-0"]["restarts"] == 1
        assert by_name["supervisor"]["alive"]
        assert by_name["loadgen"]["status"] == "exited"
        assert not by_name["loadgen"]["alive"]
        assert by_name["risk-calculator-0"]["log_file"] == str(
            directory / "logs" / "risk-calculator-0.log"
        )
    finally:
        pids = every_pid(read_state(directory))
        down = cli("cluster", "down", "--dir", str(directory), cwd=elsewhere)
    assert down.returncode == 0, down.stderr
    assert none_alive(pids)
    assert len(pids) == 8  # supervisor, 5 workers, the sink again, load generator
    assert not (directory / "cluster.json").exists()
    assert list(elsewhere.iterdir()) == []


def test_status_shows_a_process_the_supervisor_gave_up_on(tmp_path: Path) -> None:
    directory = tmp_path.resolve()
    crash = (sys.executable, "-c", "import sys; sys.exit(3)", "gives-up")
    spec = ProcessSpec("sink-0", "sink", crash, str(directory / "sink-0.log"))
    plan = Plan((spec,), RestartPolicy(initial_backoff=0.01, max_backoff=0.01, max_failures=2))
    state: dict[str, Any] = {
        "directory": str(directory), "config": {"prefix": "mf."}, "log": "embedded://x",
        "db": "sqlite:///x", "broker": None, "supervisor": None, "plan": plan.to_json(),
    }  # fmt: skip
    (directory / "cluster.json").write_text(json.dumps(state))
    log_file = str(directory / "supervisor.log")
    pid, command = start_detached(directory, Path(log_file))
    state["supervisor"] = {"name": "supervisor", "role": "supervisor", "pid": pid,
                           "command": command, "log_file": log_file}  # fmt: skip
    (directory / "cluster.json").write_text(json.dumps(state))
    wait_for(lambda: not alive(pid), "the supervisor to give up")
    shown = cli("cluster", "status", "--dir", str(directory))
    assert shown.returncode == 0, shown.stderr
    assert "gave up after 2 restarts (last: exit 3)" in shown.stdout
    doc = json.loads(cli("cluster", "status", "--dir", str(directory), "--json").stdout)
    sink = process(doc, "sink-0")
    assert (sink["status"], sink["restarts"], sink["alive"]) == ("gave-up", 2, False)
    assert process(doc, "supervisor")["status"] == "finished"
    assert cli("cluster", "down", "--dir", str(directory)).returncode == 0
    assert not (directory / "cluster.json").exists()
