"""The supervisor's restart protocol on real processes (small Python programs that sleep,
crash or finish): restart after SIGKILL with the same command line, no restart after a clean
exit, exponential backoff, giving up after rapid crashes, and stopping on SIGTERM."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marginflow.core.errors import ConfigurationError
from marginflow.stream.cluster import alive
from marginflow.stream.supervisor import (
    Plan,
    ProcessSpec,
    Restart,
    RestartPolicy,
    describe_exit,
    read_status,
    start_detached,
)
from tests.stream.cluster_support import cmdline, wait_for

FAST = RestartPolicy(initial_backoff=0.05, max_backoff=0.2, stable_after=60.0, max_failures=3)


def program(code: str, restart: Restart = "on-failure") -> ProcessSpec:
    """A process running ``code``; a unique argument tells its command line from others'."""
    command = (sys.executable, "-c", code, f"test-{uuid.uuid4().hex[:8]}")
    return ProcessSpec("p-0", "test", command, "", restart)


@contextlib.contextmanager
def supervised(tmp_path: Path, spec: ProcessSpec, policy: RestartPolicy = FAST) -> Iterator[int]:
    """Run ``spec`` under a detached supervisor in ``tmp_path``; kill whatever is left."""
    spec = ProcessSpec(spec.name, spec.role, spec.command, str(tmp_path / "p.log"), spec.restart)
    plan = Plan((spec,), policy)
    (tmp_path / "cluster.json").write_text(json.dumps({"plan": plan.to_json()}))
    pid, _ = start_detached(tmp_path, tmp_path / "supervisor.log")
    try:
        yield pid
    finally:
        record = read_status(tmp_path) or {"processes": []}
        for p in [pid, *(x for r in record["processes"] for x in r["pids"])]:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        wait_for(lambda: not alive(pid), "the supervisor to end")


def record_of(tmp_path: Path) -> dict[str, Any] | None:
    record = read_status(tmp_path)
    return None if record is None else dict(record["processes"][0])


def test_a_killed_process_is_restarted_with_the_same_command_line(tmp_path: Path) -> None:
    spec = program("import time; time.sleep(600)")
    with supervised(tmp_path, spec) as sup:
        first = wait_for(lambda: record_of(tmp_path), "the first start")
        os.kill(first["pid"], signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            rec = record_of(tmp_path)
            ok = rec and rec["restarts"] == 1 and rec["status"] == "running"
            return rec if ok and alive(rec["pid"]) else None

        rec = wait_for(restarted, "the restart")
        assert rec["pids"] == [first["pid"], rec["pid"]]
        assert rec["last_exit"] == "killed by SIGKILL"
        assert cmdline(rec["pid"]) == list(spec.command)
        # SIGTERM stops supervising and leaves the process for `cluster down` to stop
        os.kill(sup, signal.SIGTERM)
        wait_for(lambda: not alive(sup), "the supervisor to stop")
        assert alive(rec["pid"])
        final = read_status(tmp_path)
        assert final is not None
        assert final["status"] == "stopped"


def test_a_clean_exit_is_not_restarted_and_the_supervisor_finishes(tmp_path: Path) -> None:
    with supervised(tmp_path, program("print('done')")) as sup:
        wait_for(lambda: not alive(sup), "the supervisor to finish")
        rec = record_of(tmp_path)
        assert rec is not None
        assert (rec["status"], rec["restarts"], rec["last_exit"]) == ("exited", 0, "exit 0")
        final = read_status(tmp_path)
        assert final is not None
        assert final["status"] == "finished"


def test_rapid_crashes_back_off_then_give_up(tmp_path: Path) -> None:
    with supervised(tmp_path, program("import sys; sys.exit(3)")) as sup:
        wait_for(lambda: not alive(sup), "the supervisor to give up")
        rec = record_of(tmp_path)
        assert rec is not None
        assert rec["status"] == "gave-up"
        assert rec["restarts"] == FAST.max_failures
        assert len(rec["pids"]) == FAST.max_failures + 1
        assert rec["last_exit"] == "exit 3"
        log = (tmp_path / "supervisor.log").read_text()
        assert "restarting in 0.05 s" in log
        assert "restarting in 0.1 s" in log
        assert "restarting in 0.2 s" in log
        assert "gave up after 4 crashes in a row" in log


def test_a_process_that_ran_a_while_starts_a_new_count(tmp_path: Path) -> None:
    # each run lasts longer than stable_after, so one restart in a row is never exceeded
    policy = RestartPolicy(initial_backoff=0.05, max_backoff=0.05, stable_after=0.1,
                           max_failures=1)  # fmt: skip
    with supervised(tmp_path, program("import time; time.sleep(0.3); exit(1)"), policy):
        rec = wait_for(
            lambda: (r := record_of(tmp_path)) and r["restarts"] >= 3 and r, "three restarts"
        )
        assert rec["status"] in ("running", "restarting")
        assert rec["failures"] == 1


def test_a_run_once_process_is_not_restarted(tmp_path: Path) -> None:
    with supervised(tmp_path, program("import sys; sys.exit(2)", "never")) as sup:
        wait_for(lambda: not alive(sup), "the supervisor to finish")
        rec = record_of(tmp_path)
        assert rec is not None
        assert (rec["status"], rec["restarts"], rec["last_exit"]) == ("failed", 0, "exit 2")


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_policy_and_plan_errors_name_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="0 < initial <= max"):
        RestartPolicy(initial_backoff=5, max_backoff=1)
    with pytest.raises(ConfigurationError, match="max_failures must be >= 0"):
        RestartPolicy(max_failures=-1)
    spec = program("pass")
    with pytest.raises(ConfigurationError, match="process names must be unique"):
        Plan((spec, spec))


def test_exits_are_described_by_status_or_signal() -> None:
    assert describe_exit(0) == "exit 0"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"


def test_a_plan_survives_its_json_form() -> None:
    plan = Plan((program("pass"), dataclasses.replace(program("pass", "never"), name="q")), FAST)
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_a_process_that_cannot_start_counts_as_a_crash(tmp_path: Path) -> None:
    spec = ProcessSpec("p-0", "test", (str(tmp_path / "no-such-program"),), "")
    with supervised(tmp_path, spec) as sup:
        wait_for(lambda: not alive(sup), "the supervisor to give up")
        rec = record_of(tmp_path)
        assert rec is not None
        assert (rec["status"], rec["restarts"], rec["pids"]) == ("gave-up", 3, [])
        assert rec["last_exit"] == "did not start: No such file or directory"
