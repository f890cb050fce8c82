"""A local cluster in one command: the broker, N workers per role and a load generator, as
detached processes recorded in ``<dir>/cluster.json`` so ``down`` stops exactly what ``up``
started.

Configuration comes from options or a TOML file (a ``[cluster]`` table with the same keys
as :class:`ClusterConfig`'s fields); options win over the file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from marginflow.core.errors import ConfigurationError
from marginflow.engine.settings import MarginSettings
from marginflow.store import Database
from marginflow.store.loads import record_book_load
from marginflow.stream.broker import broker_binary, free_port, wait_for_port
from marginflow.stream.pipeline import LATENCY_ROLES, ROLES

STATE_FILE = "cluster.json"


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

    def __post_init__(self) -> None:
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

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any]) -> ClusterConfig:
        """Defaults, then the ``[cluster]`` table of ``path``, then ``overrides``."""
        values: dict[str, Any] = {}
        if path is not None:
            try:
                doc = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigurationError(f"cannot read {path}: {exc}") from exc
            table = dict(doc.get("cluster", doc))
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


@dataclass
class Started:
    role: str
    pid: int
    log_file: str


def _spawn(args: list[str], log_file: Path) -> int:
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the terminal that ran `cluster up`
        )
    return proc.pid


def up(config: ClusterConfig, directory: Path) -> dict[str, Any]:
    """Start the cluster; returns (and writes) its state. Refuses if one already runs."""
    state_path = directory / STATE_FILE
    if state_path.exists():
        raise ConfigurationError(
            f"a cluster is already up in {directory} (marginflow cluster down)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    logs = directory / "logs"
    logs.mkdir(exist_ok=True)
    started: list[Started] = []
    if config.log == "broker":
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        log_file = logs / "broker.log"
        pid = _spawn(
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            log_file,
        )
        started.append(Started("broker", pid, str(log_file)))
        if not wait_for_port("127.0.0.1", port, 10.0):
            _stop([s.pid for s in started])
            raise ConfigurationError("the broker did not start within 10 s")
        log_url = f"kafka://127.0.0.1:{port}"
    elif config.log == "embedded":
        log_url = f"embedded://{(directory / 'log').resolve()}"
    else:
        log_url = config.log
    db = config.db or f"sqlite:///{(directory / 'margins.db').resolve()}"
    if not config.book:
        raise ConfigurationError("no book folder: give --book DIR")
    book = str(Path(config.book).resolve())
    settings_file = directory / "margin.json"
    settings = MarginSettings.from_json(config.margin)
    settings.save(settings_file)
    # the store keeps the book the calculators start from, so their margins reproduce
    store = Database(db)
    record_book_load(store, Path(book), settings.to_json())
    store.close()
    common = [
        "--log", log_url, "--state", str((directory / "state").resolve()),
        "--partitions", str(config.partitions), "--prefix", config.prefix,
        "--max-batch", str(config.max_batch),
        "--snapshot-interval", str(config.snapshot_interval), "--book", book,
        "--settings", str(settings_file.resolve()), "--db", db, "--mpor", str(config.mpor),
        *(["--simm-version", config.simm_version] if config.simm_version else []),
    ]  # fmt: skip
    counts = {
        "position-keeper": config.keepers,
        "risk-calculator": config.calculators,
        "aggregator": config.aggregators,
        "simm": config.simm_workers,
        "sink": config.sinks,
    }
    for role in ROLES:
        wait = config.max_wait if role in LATENCY_ROLES else config.downstream_max_wait
        for i in range(counts[role]):
            log_file = logs / f"{role}-{i}.log"
            pid = _spawn(
                [sys.executable, "-m", "marginflow.stream.runner", role, *common,
                 "--max-wait", str(wait)],
                log_file,
            )  # fmt: skip
            started.append(Started(role, pid, str(log_file)))
    gen = [
        sys.executable, "-m", "marginflow.sim.loadgen_main", "--log", log_url,
        "--prefix", config.prefix, "--partitions", str(config.partitions),
        "--book", book, *config.load_args(), "--crif-portfolios", str(config.crif_portfolios),
    ]  # fmt: skip
    log_file = logs / "loadgen.log"
    started.append(Started("loadgen", _spawn(gen, log_file), str(log_file)))
    state = {
        "config": asdict(config),
        "log": log_url,
        "db": db,
        "processes": [asdict(s) for s in started],
        "started_ns": time.time_ns(),
    }
    state_path.write_text(json.dumps(state, indent=2))
    return state


def read_state(directory: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"no cluster is up in {directory}") from None
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


def _ours(pid: int, marker: str) -> bool:
    """True if ``pid`` still runs the program we started (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return alive(pid)  # no /proc: trust the pid
    return marker.encode() in cmdline


def _stop(pids: list[int], timeout: float = 10.0) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: return only once the kernel has ended them
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.01)


def down(directory: Path) -> list[dict[str, Any]]:
    """Stop what ``up`` started in ``directory``: workers and load generator first (SIGTERM:
    they snapshot and commit), then the broker. Returns the processes stopped."""
    state = read_state(directory)
    procs = state["processes"]
    mine = [
        p for p in procs if _ours(p["pid"], "broker" if p["role"] == "broker" else "marginflow")
    ]
    _stop([p["pid"] for p in mine if p["role"] != "broker"])
    _stop([p["pid"] for p in mine if p["role"] == "broker"], timeout=2.0)
    (directory / STATE_FILE).unlink()
    return list(procs)
