"""A local cluster in one command, run like a deployment: the broker, N workers per role and
a load generator, supervised (a crashed worker is restarted with the same command line),
recorded in ``<dir>/cluster.json`` and ``<dir>/supervisor.json`` so ``status`` shows every
process and ``down`` stops exactly what ``up`` started, restarted processes included.

``up`` on a used directory resumes it where its log survived (the embedded log lives in the
directory) or refuses; ``--fresh`` clears it first (:mod:`marginflow.stream.cluster_dir`).

Configuration comes from options or a TOML file (a ``[cluster]`` table with the same keys
as :class:`ClusterConfig`'s fields); options win over the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from marginflow.core.errors import ConfigurationError
from marginflow.engine.settings import MarginSettings, check_setting_types
from marginflow.io.source import read_toml
from marginflow.store import Database
from marginflow.store.loads import record_book_load
from marginflow.stream import cluster_dir as cdir
from marginflow.stream.broker import broker_binary, free_port, wait_for_port
from marginflow.stream.pipeline import LATENCY_ROLES, ROLES
from marginflow.stream.supervisor import (
    PLAN_FILE,
    STATUS_FILE,
    Plan,
    ProcessSpec,
    RestartPolicy,
    read_status,
    start_detached,
    write_json_atomically,
)

STATE_FILE = PLAN_FILE
BOOK_SPEC_KEYS = ("members", "accounts", "underlyings", "series", "sod_positions")
"""The :class:`ClusterConfig` fields a generated book is made from."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Everything ``cluster up`` can vary; validated on construction."""

    log: str = "broker"  # "broker" (start one), "embedded", or kafka://host:port
    partitions: int = 4
    keepers: int = 1
    calculators: int = 1
    aggregators: int = 1
    sinks: int = 1
    simm_workers: int = 1
    simm_version: str = ""  # SIMM calibration (ISDA name); "" = the newest shipped
    mpor: int = 10  # SIMM margin period of risk, days (10 or 1)
    crif_portfolios: int = 3  # CRIF submissions the load generator sends
    max_batch: int = 10_000
    max_wait: float = 0.0  # keeper and calculator: a batch is what is there (latency)
    # aggregator, SIMM worker and sink, after the margins are published: fewer, bigger
    # batches keep the broker's request rate down, which keeps the margin path fast
    downstream_max_wait: float = 0.05
    snapshot_interval: float = 1.0
    book: str = ""  # book folder the calculators margin and whose positions start the day
    margin: dict[str, Any] = field(default_factory=dict)  # MarginSettings, JSON form
    members: int = 5  # the generated book's sizes (``cluster up`` without --book)
    accounts: int = 200
    underlyings: int = 20
    series: int = 600
    sod_positions: int = 1_000
    trades: int = 100_000  # generated trades, unless trades_file is given
    trades_file: str = ""  # trades to replay (time,account,instrument,quantity)
    market_file: str = ""  # market data to replay (time,underlying,spot[,atm_vol,skew])
    speed: float = 0.0  # replay files at this many times real time (0: as fast as possible)
    rate: float = 10_000.0  # trades per second; 0 = as fast as possible
    market_every: int = 100
    db: str = ""  # default: sqlite:///<dir>/margins.db
    prefix: str = "mf."
    # the supervisor's restart policy (marginflow.stream.supervisor.RestartPolicy)
    restart_backoff: float = 0.5  # seconds before the first restart; doubles per crash
    restart_backoff_max: float = 30.0
    restart_stable: float = 60.0  # a process up this long restarts its count of crashes
    restart_max_failures: int = 10  # consecutive rapid crashes before giving up

    def __post_init__(self) -> None:
        check_setting_types(self)
        for name in (
            "partitions",
            "keepers",
            "calculators",
            "aggregators",
            "simm_workers",
            "sinks",
            "max_batch",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mpor not in (10, 1):
            raise ConfigurationError(f"mpor must be 10 or 1, got {self.mpor}")
        if self.simm_version:
            from marginflow.simm.calibration import load_calibration

            load_calibration(self.simm_version, self.mpor)  # names the versions shipped
        if self.crif_portfolios < 0:
            raise ConfigurationError("crif_portfolios must be >= 0")
        if self.log not in ("broker", "embedded") and not self.log.startswith("kafka://"):
            raise ConfigurationError(
                f"log must be 'broker', 'embedded' or kafka://host:port, got {self.log!r}"
            )
        if self.rate < 0 or self.trades < 0 or self.speed < 0:
            raise ConfigurationError("trades, rate and speed must be >= 0")
        MarginSettings.from_json(self.margin)  # names a bad margin setting
        if self.max_wait < 0 or self.downstream_max_wait < 0:
            raise ConfigurationError("max_wait and downstream_max_wait must be >= 0")
        self.restart_policy()  # names a bad restart setting

    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(
            initial_backoff=self.restart_backoff,
            max_backoff=self.restart_backoff_max,
            stable_after=self.restart_stable,
            max_failures=self.restart_max_failures,
        )

    def book_spec(self) -> dict[str, int]:
        """The sizes of the book generated when no ``book`` is given."""
        return {k: int(getattr(self, k)) for k in BOOK_SPEC_KEYS}

    def db_url(self, directory: Path) -> str:
        """The results database: ``db``, a relative SQLite path made absolute (the workers
        run in the cluster directory, the user meant theirs), or the directory's own."""
        if not self.db:
            return f"sqlite:///{(directory / cdir.DB_FILE).resolve()}"
        path = cdir.sqlite_path(self.db)
        return self.db if path is None else f"sqlite:///{path.resolve()}"

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any]) -> ClusterConfig:
        """Defaults, then the ``[cluster]`` table of ``path``, then ``overrides``."""
        values: dict[str, Any] = {}
        if path is not None:
            doc = read_toml(path)
            table = doc.get("cluster", doc)
            if not isinstance(table, dict):
                raise ConfigurationError(f"{path}: [cluster] must be a table")
            table = dict(table)
            table.pop("margin", None)
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(table) - known)
            if unknown:
                raise ConfigurationError(f"{path}: unknown keys {', '.join(unknown)}")
            values.update(table)
            if isinstance(doc.get("margin"), dict):
                values["margin"] = dict(doc["margin"])
        margin = {**values.get("margin", {}), **(overrides.pop("margin", None) or {})}
        if margin:
            values["margin"] = margin
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from exc

    def load_args(self) -> list[str]:
        """The load generator's options for the day: files to replay, or a generated day."""
        if not (self.trades_file or self.market_file):
            return ["--trades", str(self.trades), "--rate", str(self.rate),
                    "--market-every", str(self.market_every)]  # fmt: skip
        out = ["--trades", self.trades_file or "0"]
        if self.market_file:
            out += ["--market", self.market_file]
        if self.speed:
            out += ["--speed", str(self.speed)]
        return out


DB_PREFIX = "mf_"  # the sink's table prefix (runner --db-prefix default)
UP_TIMEOUT = 30.0  # seconds ``up`` waits for the supervisor to start every process


@dataclass(frozen=True, slots=True)
class Preparation:
    """How ``up`` uses its directory, as :func:`prepare` decided: a new run (after clearing
    the directory's old state, with ``--fresh``) or a resumed one. ``book`` is the book the
    calculators margin; ``book_spec`` the sizes to generate it from (None: the user's)."""

    directory: Path
    resume: bool
    book: Path
    book_spec: dict[str, int] | None
    cleared: tuple[str, ...] = ()
    leftover: Path | None = None


def _log_url(config: ClusterConfig, directory: Path) -> str:
    if config.log == "embedded":
        return f"embedded://{directory / cdir.LOG_DIR}"
    return "" if config.log == "broker" else config.log  # a started broker's: known later


def _run_record(config: ClusterConfig, prep: Preparation, log_url: str) -> dict[str, Any]:
    return cdir.run_record(
        log=config.log,
        log_url=log_url,
        partitions=config.partitions,
        prefix=config.prefix,
        db=config.db_url(prep.directory),
        book=prep.book,
        book_spec=prep.book_spec,
        margin=MarginSettings.from_json(config.margin).to_json(),
    )


def prepare(config: ClusterConfig, directory: Path, *, fresh: bool = False) -> Preparation:
    """Decide how ``up`` may use ``directory``, or refuse (one line, naming the directory).

    A new directory starts a new run. A used one resumes only on the log its state was
    built from, with the same partitions, prefix, database, book and margin settings, and
    only if that state is consistent with the log (see :mod:`marginflow.stream.cluster_dir`).
    ``fresh`` clears the directory's old state first (all or nothing). A new run refuses a
    database that already holds results. Nothing runs in ``directory`` while this decides:
    a cluster still up there is refused."""
    directory = directory.resolve()
    running = _alive_processes(directory)
    if running:
        raise ConfigurationError(
            f"a cluster is already up in {directory} (marginflow cluster down --dir {directory})"
        )
    book = Path(config.book).resolve() if config.book else directory / cdir.BOOK_DIR
    spec = None if config.book else config.book_spec()
    prep = Preparation(directory, False, book, spec)
    db = config.db_url(directory)
    if fresh:
        try:
            record = cdir.read_run(directory)
        except ConfigurationError:
            record = None  # unreadable: clear it with the rest
        db_file = cdir.sqlite_path(db)
        if db_file is None or db_file not in cdir.fresh_items(directory, record):
            cdir.check_database_empty(db, DB_PREFIX)
        if not directory.exists():
            return prep
        cleared = cdir.clear(directory, record)
        return Preparation(directory, False, book, spec, cleared.removed, cleared.leftover)
    if not directory.exists() or not cdir.used(directory):
        cdir.check_database_empty(db, DB_PREFIX)
        return prep
    new = _run_record(config, prep, _log_url(config, directory))
    cdir.check_resume(directory, cdir.read_run(directory), new)
    cdir.check_log(directory, new)
    return Preparation(directory, True, book, spec)


def _start_broker(logs: Path) -> tuple[dict[str, Any], str]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [str(broker_binary()), "broker", "--listener-url", url,
               "--advertised-listener-url", url]  # fmt: skip
    log_file = logs / "broker.log"
    with open(log_file, "ab") as out:
        pid = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the terminal that ran `cluster up`
        ).pid
    entry = {"name": "broker", "role": "broker", "pid": pid, "command": command,
             "log_file": str(log_file)}  # fmt: skip
    if not wait_for_port("127.0.0.1", port, 10.0):
        _stop([pid])
        raise ConfigurationError(f"the broker did not start within 10 s (see {log_file})")
    return entry, f"kafka://127.0.0.1:{port}"


def _plan(config: ClusterConfig, prep: Preparation, log_url: str, db: str) -> Plan:
    directory, logs = prep.directory, prep.directory / cdir.LOGS_DIR
    settings_file = directory / cdir.SETTINGS_FILE
    common = [
        "--log", log_url, "--state", str(directory / cdir.STATE_DIR),
        "--partitions", str(config.partitions), "--prefix", config.prefix,
        "--max-batch", str(config.max_batch),
        "--snapshot-interval", str(config.snapshot_interval), "--book", str(prep.book),
        "--settings", str(settings_file), "--db", db, "--mpor", str(config.mpor),
        *(["--simm-version", config.simm_version] if config.simm_version else []),
    ]  # fmt: skip
    counts = {
        "position-keeper": config.keepers,
        "risk-calculator": config.calculators,
        "aggregator": config.aggregators,
        "simm": config.simm_workers,
        "sink": config.sinks,
    }
    specs: list[ProcessSpec] = []
    # Calculators share the machine's cores: each gets its share for its compiled kernels.
    # Two calculators of two threads each on two cores ran no faster than one (their
    # threads took turns), one thread each ran twice as fast (benchmarks/README.md).
    threads = ("--threads", str(calculator_threads(config.calculators)))
    for role in ROLES:
        wait = config.max_wait if role in LATENCY_ROLES else config.downstream_max_wait
        own = threads if role == "risk-calculator" else ()
        for i in range(counts[role]):
            command = (sys.executable, "-m", "marginflow.stream.runner", role, *common, *own,
                       "--max-wait", str(wait))  # fmt: skip
            specs.append(ProcessSpec(f"{role}-{i}", role, command, str(logs / f"{role}-{i}.log")))
    if not prep.resume:
        # A resumed day is already on the log: publishing it again would double its trades.
        gen = (
            sys.executable, "-m", "marginflow.sim.loadgen_main", "--log", log_url,
            "--prefix", config.prefix, "--partitions", str(config.partitions),
            "--book", str(prep.book), *config.load_args(),
            "--crif-portfolios", str(config.crif_portfolios),
        )  # fmt: skip
        specs.append(ProcessSpec("loadgen", "loadgen", gen, str(logs / "loadgen.log"), "never"))
    return Plan(tuple(specs), config.restart_policy())


def calculator_threads(calculators: int, cores: int | None = None) -> int:
    """Threads for each of ``calculators`` risk calculators on a machine of ``cores`` (this
    one's by default): an equal share, at least one."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(calculators, 1))


def up(config: ClusterConfig, prep: Preparation) -> dict[str, Any]:
    """Start the cluster in ``prep.directory`` as :func:`prepare` decided: the broker (if
    ``log`` is ``broker``), then the supervisor, which starts the workers and the load
    generator (not on a resume) and keeps them running. Returns the state (:func:`status`)
    once every process has a pid."""
    directory = prep.directory
    logs = directory / cdir.LOGS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    for name in (STATE_FILE, STATUS_FILE):  # a stale run's: prepare found nothing alive
        (directory / name).unlink(missing_ok=True)
    broker: dict[str, Any] | None = None
    if config.log == "broker":
        broker, log_url = _start_broker(logs)
    else:
        log_url = _log_url(config, directory)
    try:
        settings = MarginSettings.from_json(config.margin)
        settings.save(directory / cdir.SETTINGS_FILE)
        db = config.db_url(directory)
        # the store keeps the book the calculators start from, so their margins reproduce
        store = Database(db)
        try:
            record_book_load(store, prep.book, settings.to_json())
        finally:
            store.close()
        cdir.write_run(directory, _run_record(config, prep, log_url))
        plan = _plan(config, prep, log_url, db)
        state: dict[str, Any] = {
            "directory": str(directory),
            "config": asdict(config),
            "log": log_url,
            "db": db,
            "resumed": prep.resume,
            "started_ns": time.time_ns(),
            "broker": broker,
            "supervisor": None,
            "plan": plan.to_json(),
        }
        write_json_atomically(directory / STATE_FILE, state)
        log_file = logs / "supervisor.log"
        pid, command = start_detached(directory, log_file)
        state["supervisor"] = {"name": "supervisor", "role": "supervisor", "pid": pid,
                               "command": command, "log_file": str(log_file)}  # fmt: skip
        write_json_atomically(directory / STATE_FILE, state)
        _wait_for_start(directory, pid, plan, log_file)
    except BaseException:
        if (directory / STATE_FILE).exists():
            down(directory)
        elif broker is not None:
            _stop([broker["pid"]], timeout=2.0)
        raise
    return status(directory)


def _wait_for_start(directory: Path, pid: int, plan: Plan, log_file: Path) -> None:
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        record = read_status(directory)
        # every process started, or failed to and is in the supervisor's hands
        if record is not None and all(p["pid"] or p["last_exit"] for p in record["processes"]):
            return
        if not alive(pid):
            raise ConfigurationError(f"the supervisor stopped as it started (see {log_file})")
        time.sleep(0.02)
    raise ConfigurationError(
        f"the supervisor did not start {len(plan.processes)} processes in {UP_TIMEOUT:g} s "
        f"(see {log_file})"
    )


def read_state(directory: Path) -> dict[str, Any]:
    """``cluster.json`` of the cluster up in ``directory``, with ``processes``: the broker,
    the supervisor and each planned process as the supervisor last recorded it."""
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"no cluster is up in {directory}") from None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {directory / STATE_FILE}: {exc}") from None
    state["processes"] = _processes(directory, state)
    return state


def _processes(directory: Path, state: dict[str, Any]) -> list[dict[str, Any]]:
    record = read_status(directory) or {}
    records = {r["name"]: r for r in record.get("processes", [])}
    out: list[dict[str, Any]] = []
    for fixed in (state.get("broker"), state.get("supervisor")):
        if fixed:
            sup = fixed["role"] == "supervisor"
            out.append({**fixed, "pids": [fixed["pid"]], "restarts": 0,
                        "status": record.get("status", "running") if sup else "running",
                        "last_exit": None, "restart": "never"})  # fmt: skip
    for spec in Plan.from_json(state["plan"]).processes:
        rec = records.get(spec.name, {})
        out.append({
            "name": spec.name, "role": spec.role, "pid": rec.get("pid"),
            "pids": rec.get("pids", []), "restarts": rec.get("restarts", 0),
            "status": rec.get("status", "not started"), "last_exit": rec.get("last_exit"),
            "command": list(spec.command), "log_file": spec.log_file, "restart": spec.restart,
        })  # fmt: skip
    return out


def status(directory: Path) -> dict[str, Any]:
    """:func:`read_state` with, for each process, whether it is ``alive`` now (its pid runs
    its command line: a reused pid is not it) and its ``command_line`` as a shell would
    take it."""
    state = read_state(directory)
    for p in state["processes"]:
        p["alive"] = p["pid"] is not None and _ours(p["pid"], p["command"])
        p["command_line"] = shlex.join(p["command"])
    return state


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie does not; one of our own children is reaped here)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _ours(pid: int, command: list[str]) -> bool:
    """True if ``pid`` runs and still runs ``command`` (not a process that reused the pid)."""
    if not alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc: trust the pid
    except OSError:
        return True
    return [os.fsdecode(a) for a in cmdline.split(b"\0")[:-1]] == list(command)


def _alive_processes(directory: Path) -> list[dict[str, Any]]:
    """The processes of ``directory``'s cluster that still run (any pid they ran under)."""
    try:
        state = read_state(directory)
    except ConfigurationError:
        return []
    return [p for p in state["processes"] if any(_ours(pid, p["command"]) for pid in p["pids"])]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.kill(pid, sig)


def _stop(pids: list[int], timeout: float = 10.0) -> None:
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: return only once the kernel has ended them
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.01)


def down(directory: Path) -> list[dict[str, Any]]:
    """Stop what ``up`` started in ``directory``: the supervisor first (so it restarts
    nothing), then every process it ran, under any pid (SIGTERM: workers snapshot and
    commit; SIGKILL after 10 s), then the broker. Returns the processes."""
    directory = directory.resolve()
    state = read_state(directory)
    sup = state.get("supervisor")
    if sup and _ours(sup["pid"], sup["command"]):
        _stop([sup["pid"]])
    procs: list[dict[str, Any]] = read_state(directory)["processes"]  # its last record
    workers = [
        pid
        for p in procs
        if p["role"] not in ("broker", "supervisor")
        for pid in p["pids"]
        if _ours(pid, p["command"])
    ]
    _stop(workers)
    brokers = [p["pid"] for p in procs if p["role"] == "broker" and _ours(p["pid"], p["command"])]
    _stop(brokers, timeout=2.0)
    for name in (STATE_FILE, STATUS_FILE):
        (directory / name).unlink(missing_ok=True)
    return procs
