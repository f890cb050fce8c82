"""Shared pieces of the cluster tests: the ``marginflow`` command run as a user runs it (its
own process, which exits while the cluster runs on), a small cluster's options, and polling
with a generous deadline (a broken cluster fails the test, never hangs it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from marginflow.store import Database
from marginflow.stream.cluster import alive, status
from marginflow.stream.drift import DriftMonitor
from marginflow.stream.log import open_log
from marginflow.stream.topics import Topology

EXE = shutil.which("marginflow")
ACCOUNTS = 20
SMALL = [
    "--log", "embedded", "--trades", "1500", "--rate", "0", "--accounts", str(ACCOUNTS),
    "--underlyings", "4", "--series", "60", "--lookback", "250", "--partitions", "2",
    "--snapshot-interval", "0.2",
]  # fmt: skip
"""A cluster on the embedded log that settles in seconds."""
DEADLINE = 180.0  # seconds: generous, only so that a broken cluster fails instead of hanging

T = TypeVar("T")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, check=False)


def wait_for(check: Callable[[], T | None], what: str, deadline: float = DEADLINE) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def process(state: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in state["processes"] if p["name"] == name)
    return found


def every_pid(state: dict[str, Any]) -> list[int]:
    """Every pid the cluster ran: broker, supervisor, and each process under each start."""
    return [pid for p in state["processes"] for pid in p["pids"]]


def cmdline(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]


def settled(directory: Path, accounts: int = ACCOUNTS) -> bool:
    """The day is through: no load generator running, every account margined in the
    cluster's database, and no consumer group behind."""
    state = status(directory)
    if any(p["role"] == "loadgen" and p["alive"] for p in state["processes"]):
        return False
    db = Database(state["db"])
    try:
        margined = len(db.account_margins())
    finally:
        db.close()
    if margined < accounts:
        return False
    log = open_log(state["log"])
    try:
        report = DriftMonitor(log, Topology(prefix=state["config"]["prefix"])).sample()
    finally:
        log.close()
    return bool(report.groups) and not any(g.messages for g in report.groups)


def none_alive(pids: list[int]) -> bool:
    return not any(alive(p) for p in pids)
