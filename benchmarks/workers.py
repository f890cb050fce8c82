"""Worker processes for the stream benchmarks: the book they margin (written once as a book
folder with its settings) and the real pipeline roles started through
``marginflow.stream.runner``, as ``marginflow cluster up`` starts them."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginflow.core.book import Book
from marginflow.engine.settings import MarginSettings
from marginflow.sim.chaos import book_args, worker_command
from marginflow.sim.synthetic_book import BookSpec
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.topics import Topology

Proc = tuple[str, subprocess.Popen[bytes], Path]
"""A started worker: its role, its process and the file its output goes to."""


@dataclass(frozen=True, slots=True)
class Bench:
    """The book a benchmark margins: its setup as the calculators read it back from the book
    folder, and the runner options (``--book DIR --settings FILE``) that make a worker
    process margin the same."""

    setup: MarginSetup
    args: tuple[str, ...]

    @classmethod
    def write(cls, spec: BookSpec, settings: MarginSettings, folder: Path) -> Bench:
        return cls.of(MarginSetup(spec.book(), settings), folder)

    @classmethod
    def of(cls, setup: MarginSetup, folder: Path) -> Bench:
        args, loaded = book_args(setup, folder)
        return cls(loaded, tuple(args))

    @property
    def book(self) -> Book:
        return self.setup.book

    @property
    def book_folder(self) -> tuple[str, ...]:
        """``--book DIR`` alone: what the load generator takes."""
        i = self.args.index("--book")
        return self.args[i : i + 2]


@contextmanager
def workers(
    url: str,
    topology: Topology,
    bench: Bench,
    root: Path,
    roles: dict[str, int],
    *extra: str,
) -> Iterator[list[Proc]]:
    """Start worker processes (``roles``: role -> count); SIGTERM them on exit."""
    common = [
        "--prefix", topology.prefix, "--partitions", str(topology.partitions),
        *bench.args, "--db", f"sqlite:///{root / 'm.db'}", *extra,
    ]  # fmt: skip
    procs = []
    (root / "logs").mkdir(parents=True, exist_ok=True)
    for role, count in roles.items():
        for i in range(count):
            path = root / "logs" / f"{role}-{i}-{time.time_ns()}.log"
            with open(path, "wb") as out:
                cmd = worker_command(role, url, root / "state", *common)
                procs.append(
                    (role, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT), path)
                )
    try:
        yield procs
    finally:
        for _, p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p, _ in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def summary(path: Path) -> dict[str, Any]:
    """The statistics a runner prints when it stops (empty if it has not)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("summary "):
            result: dict[str, Any] = json.loads(line.removeprefix("summary "))
            return result
    return {}


def wait_output(procs: list[Proc], line: bytes, timeout: float = 60) -> None:
    """Wait until every worker of ``procs`` printed ``line``; raise naming the first that
    died or the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(line in path.read_bytes() for _, _, path in procs):
            return
        for role, p, path in procs:
            if p.poll() is not None:
                tail = path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{role} exited with {p.returncode}:\n{tail}")
        time.sleep(0.02)
    raise RuntimeError(f"workers did not print {line!r} within the timeout")
