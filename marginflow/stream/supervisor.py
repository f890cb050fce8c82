"""Keep a cluster's processes running: ``python -m marginflow.stream.supervisor DIR``.

``marginflow cluster up`` starts this detached (its own session, so it outlives the command
and the terminal). It reads the processes to run from the ``plan`` of ``DIR/cluster.json``,
runs them as its children and records what runs in ``DIR/supervisor.json``, a file only it
writes (replaced atomically, so a reader never sees half of it).

The restart protocol
--------------------
1. **Start** each planned process (its output appended to its log file, its working
   directory ``DIR``) and **record** its pid at once, before anything else: ``cluster down``
   reads the record, so every pid that may be alive is in it.
2. **Reap** a child that ended and classify the end: exit status 0 is on purpose (a load
   generator that finished, a worker told to stop) and is never restarted; any other status,
   or death by a signal (SIGKILL, a segfault), is a **crash**; so is a start that fails
   (no executable, no log file, no memory to fork).
3. A crash after the process ran at least ``stable_after`` seconds starts a new count of
   rapid crashes (it ran a while, so the cause was passing).
4. The n-th consecutive rapid crash schedules a restart ``initial_backoff * 2**(n-1)``
   seconds later, at most ``max_backoff``; the crash after ``max_failures`` restarts in a row
   **gives up**: the process is recorded as given up (``cluster status`` shows it) and the
   rest of the cluster runs on. A process planned with ``restart="never"`` is recorded as
   failed instead (the load generator: publishing its day again would double its trades).
5. A **restart** runs the same command line (so the same log, snapshot directory and
   database) and is recorded as in 1.
6. **SIGTERM or SIGINT** (what ``cluster down`` sends first) stops supervising: nothing more
   is started, the record is written and the supervisor exits, leaving its children for
   ``down`` to stop gracefully (they snapshot and commit on SIGTERM). ``down`` stops the
   supervisor first so that it cannot restart what ``down`` stops.
7. When nothing runs and nothing waits for a restart, the supervisor records that and exits.

A crash of the supervisor itself leaves the processes running unsupervised; the record
still names them, so ``status`` and ``down`` work as before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from marginflow.core.errors import ConfigurationError

PLAN_FILE = "cluster.json"
STATUS_FILE = "supervisor.json"
TICK = 0.05  # seconds between looks at the children: a restart is never later than this

Restart = Literal["on-failure", "never"]
Status = Literal["running", "restarting", "exited", "failed", "gave-up"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a crashed process is started again (steps 3 and 4 of the module docstring)."""

    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    stable_after: float = 60.0
    max_failures: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ConfigurationError(
                "restart backoff must satisfy 0 < initial <= max, got "
                f"{self.initial_backoff} and {self.max_backoff}"
            )
        if self.stable_after < 0 or self.max_failures < 0:
            raise ConfigurationError("restart stable_after and max_failures must be >= 0")

    def delay(self, failures: int) -> float:
        """Seconds before the restart after the ``failures``-th consecutive rapid crash."""
        return float(min(self.max_backoff, self.initial_backoff * 2.0 ** (failures - 1)))


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One process to run: ``name`` is unique in the plan (``risk-calculator-0``)."""

    name: str
    role: str
    command: tuple[str, ...]
    log_file: str
    restart: Restart = "on-failure"


@dataclass(frozen=True, slots=True)
class Plan:
    """What the supervisor runs, and how it restarts it; the ``plan`` of ``cluster.json``."""

    processes: tuple[ProcessSpec, ...]
    policy: RestartPolicy = RestartPolicy()

    def __post_init__(self) -> None:
        names = [p.name for p in self.processes]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"process names must be unique, got {names}")

    def to_json(self) -> dict[str, Any]:
        return {"processes": [asdict(p) for p in self.processes], "policy": asdict(self.policy)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Plan:
        specs = tuple(
            ProcessSpec(**{**p, "command": tuple(p["command"])}) for p in doc["processes"]
        )
        return cls(specs, RestartPolicy(**doc.get("policy", {})))


@dataclass
class ProcessRecord:
    """What ``supervisor.json`` says of one process. ``pids`` lists every pid it ran under,
    oldest first; ``pid`` is the newest. ``failures`` counts consecutive rapid crashes."""

    name: str
    role: str
    pid: int | None = None
    pids: list[int] = field(default_factory=list)
    status: Status = "running"
    restarts: int = 0
    failures: int = 0
    last_exit: str | None = None
    started_ns: int | None = None
    restart_at_ns: int | None = None


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def describe_exit(returncode: int) -> str:
    """``exit 1`` or ``killed by SIGKILL``, from a ``Popen.returncode``."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def write_json_atomically(path: Path, document: Any) -> None:
    """Replace ``path`` with ``document`` so that a reader sees the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(document, indent=2))
    os.replace(tmp, path)


def read_status(directory: Path) -> dict[str, Any] | None:
    """The supervisor's record in ``directory``, or None if it has not written one."""
    try:
        status: dict[str, Any] = json.loads((directory / STATUS_FILE).read_text())
    except FileNotFoundError:
        return None
    return status


class Supervisor:
    """Runs ``plan`` in ``directory`` under the restart protocol of the module docstring."""

    def __init__(self, plan: Plan, directory: Path) -> None:
        self.plan = plan
        self.directory = directory
        self.records = {p.name: ProcessRecord(p.name, p.role) for p in plan.processes}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._due: dict[str, float] = {}  # name -> monotonic time of its restart
        self._started: dict[str, float] = {}  # name -> monotonic time of its start
        self._stopping = False
        self.status: Literal["running", "stopped", "finished"] = "running"

    def stop(self) -> None:
        """Stop supervising at the next tick (safe from a signal handler: sets a flag)."""
        self._stopping = True

    def run(self) -> None:
        for spec in self.plan.processes:
            self._start(spec)  # 1. (recorded inside)
        while not self._stopping and (self._children or self._due):
            time.sleep(TICK)
            changed = False
            for spec in self.plan.processes:
                changed |= self._reap(spec)
            for spec in self.plan.processes:
                if spec.name in self._due and time.monotonic() >= self._due[spec.name]:
                    if self._stopping:
                        break
                    del self._due[spec.name]
                    self._start(spec)  # 5.
            if changed:
                self._record()
        self.status = "stopped" if self._stopping else "finished"  # 6. / 7.
        self._record()

    def _start(self, spec: ProcessSpec) -> None:
        rec = self.records[spec.name]
        try:
            with open(spec.log_file, "ab") as out:
                proc = subprocess.Popen(
                    list(spec.command),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.directory,  # anything relative lands in the cluster, not elsewhere
                )
        except OSError as exc:  # no log file, no executable, no memory to fork: a crash too
            rec.last_exit = f"did not start: {exc.strerror or exc}"
            self._crashed(spec, f"{spec.name} {rec.last_exit}", ran=0.0)
            self._record()
            return
        self._children[spec.name] = proc
        self._started[spec.name] = time.monotonic()
        rec.pid, rec.status, rec.started_ns, rec.restart_at_ns = (
            proc.pid,
            "running",
            time.time_ns(),
            None,
        )
        rec.pids.append(proc.pid)
        self._record()  # 1.: before anything else can happen to it

    def _reap(self, spec: ProcessSpec) -> bool:
        proc = self._children.get(spec.name)
        if proc is None or proc.poll() is None:
            return False
        del self._children[spec.name]
        rec = self.records[spec.name]
        rec.last_exit = describe_exit(proc.returncode)
        ran = time.monotonic() - self._started[spec.name]
        said = f"{spec.name} (pid {proc.pid}) ended after {ran:.1f} s: {rec.last_exit}"
        if proc.returncode == 0:  # 2.: on purpose
            rec.status = "exited"
            _say(f"{said}; not restarted (it ended on purpose)")
        else:
            self._crashed(spec, said, ran=ran)
        return True

    def _crashed(self, spec: ProcessSpec, said: str, *, ran: float) -> None:
        rec = self.records[spec.name]
        if spec.restart == "never":
            rec.status = "failed"
            _say(f"{said}; not restarted (it runs once)")
            return
        if ran >= self.plan.policy.stable_after:  # 3.
            rec.failures = 0
        rec.failures += 1
        if rec.failures > self.plan.policy.max_failures:  # 4.
            rec.status = "gave-up"
            _say(f"{said}; gave up after {rec.failures} crashes in a row")
            return
        delay = self.plan.policy.delay(rec.failures)
        _say(f"{said}; restarting in {delay:g} s")
        self._due[spec.name] = time.monotonic() + delay
        rec.status, rec.restart_at_ns = "restarting", time.time_ns() + int(delay * 1e9)
        rec.restarts += 1

    def _record(self) -> None:
        write_json_atomically(
            self.directory / STATUS_FILE,
            {
                "pid": os.getpid(),
                "status": self.status,
                "policy": asdict(self.plan.policy),
                "processes": [asdict(r) for r in self.records.values()],
                "updated_ns": time.time_ns(),
            },
        )


def start_detached(directory: Path, log_file: Path) -> tuple[int, list[str]]:
    """Start the supervisor of ``directory`` in its own session; its pid and command."""
    command = [sys.executable, "-m", "marginflow.stream.supervisor", str(directory)]
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=directory,
            start_new_session=True,  # outlives the command that started it, and its terminal
        )
    return proc.pid, command


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m marginflow.stream.supervisor DIR", file=sys.stderr)
        return 2
    directory = Path(args[0]).resolve()
    try:
        plan = Plan.from_json(json.loads((directory / PLAN_FILE).read_text())["plan"])
    except (OSError, ValueError, KeyError, TypeError, ConfigurationError) as exc:
        print(f"supervisor: cannot read the plan in {directory / PLAN_FILE}: {exc}", flush=True)
        return 2
    supervisor = Supervisor(plan, directory)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stop())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal is no reason to stop
    print(f"supervisor started (pid {os.getpid()}), {len(plan.processes)} processes", flush=True)
    supervisor.run()
    for rec in supervisor.records.values():
        print(f"{rec.name}: {rec.status}, {rec.restarts} restarts, {rec.last_exit}", flush=True)
    print(f"supervisor {supervisor.status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
