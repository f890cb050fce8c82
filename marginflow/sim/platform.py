"""The embedded platform (``marginflow up``, what ``make run`` starts): the demo day
streaming through the pipeline and the service over the same store and log, on a local
HTTPS port, as two child processes of the caller.

Layout of the platform folder (``var/platform`` by default)::

    platform.json   the day it streams (written at first start; marks the folder as ours)
    book/           the generated book          (the pipeline's)
    log/  state/    the embedded log, the workers' snapshots
    margins.db      the SQLite store            (the pipeline writes margins, the service
                                                 users, sessions, proposals and the audit)
    day.json        the last slice of the day published (the pipeline resumes after it)
    service/        the service's secrets and self-signed certificate
    logs/           pipeline.log, service.log (the children's output, appended)

The stop protocol (:meth:`Platform.stop`):

1. The children run in **one process group of their own**, so a Ctrl-C in the terminal
   reaches only the caller, which then stops them in order instead of each child racing
   to handle the same signal.
2. **SIGTERM to the group**: the service finishes its requests and closes the store; the
   pipeline finishes its step and commits the workers' state. Both exit with status 0.
3. Whatever still runs after ``timeout`` seconds gets **SIGKILL** (the pipeline restarts
   from its last commit next time, as after a crash).
4. Every child is **reaped**. The group is signalled only while a child is unreaped, so its
   id cannot have been reused by an unrelated group.
5. A child started with ``--exit-with-parent`` also stops itself when the caller dies
   without stopping it (SIGKILL), so nothing is left behind either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from marginflow.core.errors import MSG_NOT_A_FOLDER, ConfigurationError
from marginflow.service.bootstrap import Credential
from marginflow.service.server import Listener, tls_files
from marginflow.sim.demo import clear_run
from marginflow.sim.live import DayPlan, published

MARKER = "platform.json"
SERVICE_DIR = "service"
LOGS_DIR = "logs"
SIMM_PARTY = "BANK-A"  # the first party of the demo's CRIF submissions (sim.loadgen)


@dataclass(frozen=True, slots=True)
class PlatformOptions:
    """Where the platform lives, where it listens and the day it streams."""

    directory: Path = Path("var/platform")
    host: str = "127.0.0.1"
    port: int = 8443
    plan: DayPlan = field(default_factory=DayPlan)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{(self.directory / 'margins.db').resolve()}"

    @property
    def log_url(self) -> str:
        return f"embedded://{(self.directory / 'log').resolve()}"

    @property
    def service_dir(self) -> Path:
        return self.directory / SERVICE_DIR


def clear(directory: Path) -> None:
    """Remove a platform folder for a fresh start; refuses a folder that is not one."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ConfigurationError(MSG_NOT_A_FOLDER.format(option="--dir", path=directory))
    if not (directory / MARKER).is_file() and any(directory.iterdir()):
        raise ConfigurationError(
            f"{directory} is not a platform folder (no {MARKER}): not removing it"
        )
    clear_run(directory)  # all or nothing; a leftover renamed copy is read by nobody


def prepare(options: PlatformOptions) -> tuple[list[Credential], Listener]:
    """Make the folder ready before anything serves: the book, the store with the
    first-run users (their passwords returned, to print once; none on a second start), the
    service's secrets and certificate. ConfigurationError if the folder streams another
    day."""
    from marginflow.service.config import ServiceConfig
    from marginflow.service.context import ServiceContext
    from marginflow.service.secrets_store import load_or_create
    from marginflow.service.server import first_run
    from marginflow.store import Database

    d, plan = options.directory, options.plan
    d.mkdir(parents=True, exist_ok=True)
    published(d, plan)  # refuses another day's folder before anything is written
    marker = d / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("day") != plan.key():
        raise ConfigurationError(
            f"{d} streams another day: use the same options, or start afresh with --fresh"
        )
    book_dir = d / "book"
    spec = plan.spec()
    if not (book_dir / "positions.csv").is_file():
        spec.write(book_dir)
    marker.write_text(json.dumps({"day": plan.key(), "plan": asdict(plan)}, indent=2) + "\n")
    members = list(spec.book().positions.members)
    config = ServiceConfig(db_url=options.db_url, directory=options.service_dir)
    with _logged_to(d / LOGS_DIR / "service.log"):  # the audit's log lines, with the service's
        ctx = ServiceContext(config, Database(config.db_url), load_or_create(config.directory)[0])
        try:
            made = first_run(ctx, members, simm_party=SIMM_PARTY)
        finally:
            ctx.close()
    cert, key = tls_files(options.service_dir, options.host, None, None)
    return made, Listener(options.host, options.port, cert, key)


@contextlib.contextmanager
def _logged_to(path: Path) -> Iterator[None]:
    """The service's JSON log lines go to ``path`` meanwhile (not to the terminal)."""
    from marginflow.service.logs import JsonFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("marginflow")
    before = logger.handlers[:], logger.propagate, logger.level
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.handlers[:], logger.propagate = before[0], before[1]
        logger.setLevel(before[2])
        handler.close()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class Platform:
    """The running children and where the service answers."""

    options: PlatformOptions
    listener: Listener
    children: list[Child]

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children]

    def ended(self) -> Child | None:
        """A child that has ended (it should not, before :meth:`stop`), or None."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    def ready(self) -> bool:
        """The service answers ``/readyz`` over HTTPS, its certificate checked."""
        import httpx

        assert self.listener.certificate is not None
        trust = ssl.create_default_context(cafile=str(self.listener.certificate))
        try:
            r = httpx.get(f"{self.listener.url}/readyz", verify=trust, timeout=2.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every child (the protocol in the module docstring)."""
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.0, deadline - time.monotonic()))
        self._signal(signal.SIGKILL)
        for child in self.children:
            child.process.wait()

    def _signal(self, sig: signal.Signals) -> None:
        if all(c.process.poll() is not None for c in self.children):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.children[0].process.pid, sig)


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")


def start(options: PlatformOptions, listener: Listener) -> Platform:
    """Start the pipeline and the service as children in a process group of their own."""
    d = options.directory
    logs = d / LOGS_DIR
    exe = [sys.executable, "-m"]
    pipeline = [
        *exe, "marginflow.sim.live", f"--dir={d}", *options.plan.args(), "--exit-with-parent",
    ]  # fmt: skip
    service = [
        *exe, "marginflow", "serve", f"--db={options.db_url}", f"--dir={options.service_dir}",
        f"--log={options.log_url}", f"--host={options.host}", f"--port={options.port}",
        f"--tls-cert={listener.certificate}", f"--tls-key={listener.key}",
        f"--partitions={options.plan.partitions}", "--exit-with-parent",
    ]  # fmt: skip
    children: list[Child] = []
    group = 0  # the first child leads a new group, the second joins it
    try:
        for name, argv in (("pipeline", pipeline), ("service", service)):
            path = logs / f"{name}.log"
            with _open_log(path) as out:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    process_group=group,
                )
            children.append(Child(name, process, path))
            group = children[0].process.pid
    except BaseException:
        Platform(options, listener, children).stop(timeout=5.0)
        raise
    return Platform(options, listener, children)
