"""Chaos tooling: SIGKILL worker processes at random points while input keeps arriving,
restart them, and let :mod:`marginflow.stream.reconcile` check that nothing was lost or
doubled. Used by the crash tests (a few kills) and ``python -m benchmarks.stream --soak``
(a hundred).

The broker going away: :class:`BrokerFront` is what the workers connect to (a
Kafka-protocol proxy in front of the broker); :func:`broker_outages` kills it and starts
it again, and :func:`pause_broker` freezes the broker process itself (a slow broker)."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from marginflow.app.reproduce import Reproduction, reproduce_sample
from marginflow.io.book import write_book
from marginflow.store import Database
from marginflow.store.loads import record_book_load
from marginflow.stream import events as ev
from marginflow.stream.broker import free_port, start_broker, wait_for_port
from marginflow.stream.log.base import Log
from marginflow.stream.reconcile import MarginReport, Report, check_margins, check_positions
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.sources import merge_by_time
from marginflow.stream.topics import Topology

FAST_FAILOVER = "session.timeout.ms=1000&heartbeat.interval.ms=300&max.poll.interval.ms=3000"
"""Kafka client settings for crash tests: a killed member's partitions move in ~1 s instead
of the ~11 s the defaults take on the test broker."""


@dataclass
class KillReport:
    kills: int = 0
    chaos_kills: int = 0
    runs: int = 0


def worker_command(role: str, log_url: str, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "marginflow.stream.runner",
        role,
        "--log",
        log_url,
        "--state",
        str(state),
        *extra,
    ]


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])  # the source tree, if not installed
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}


def kill_repeatedly(
    command: list[str],
    *,
    kills: int,
    seed: int,
    chaos: float = 0.004,
    max_delay: float = 0.8,
    feed: Callable[[], None] | None = None,
) -> KillReport:
    """Run ``command`` again and again, each time SIGKILLed by itself (``--chaos``: at a
    random point of the commit protocol) or from outside (at a random time), until
    ``kills`` kills; ``feed`` is called before each run to add input."""
    rng = random.Random(seed)
    report = KillReport()
    while report.kills < kills:
        if feed is not None:
            feed()
        run = [*command, "--chaos", str(chaos), "--seed", str(rng.randrange(1 << 30))]
        proc = subprocess.Popen(run, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        report.runs += 1
        assert proc.stdout is not None
        assert proc.stderr is not None
        _wait_for(proc, b"assigned\n", 30.0)  # start the clock once partitions are ours
        try:
            proc.wait(rng.uniform(0.05, max_delay))
            if proc.returncode == -signal.SIGKILL:
                report.chaos_kills += 1
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        err = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode != -signal.SIGKILL:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{err[-3000:]}")
        report.kills += 1
    return report


def _wait_for(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bool:
    """Read the raw stdout pipe until ``marker`` appears, EOF, or ``timeout`` seconds."""
    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return False
        chunk = os.read(fd, 4096)
        if not chunk:
            return False
        seen += chunk
    return True


def run_to_completion(command: list[str], *, idle_exit: float = 1.5, timeout: float = 120) -> str:
    """Run ``command`` without chaos until it has been idle ``idle_exit`` seconds."""
    proc = subprocess.run(
        [*command, "--idle-exit", str(idle_exit)],
        env=_env(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"final run failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}"
        )
    return proc.stdout.decode()


class Feeder:
    """Publishes input in a background thread while workers are being killed."""

    def __init__(self, publish: Callable[[int], None], *, chunks: int, interval: float) -> None:
        self._publish = publish
        self._chunks = chunks
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.published = 0

    def _run(self) -> None:
        for k in range(self._chunks):
            if self._stop.wait(self._interval):
                return
            self._publish(k)
            self.published += 1

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Supervisor:
    """Keeps one process per role running, kills them at random, restarts the dead.

    Each process is killed a random time (0.1 .. ``max_gap`` s) after it reports its first
    partition assignment, so kills land while it works, not while it starts. Output goes to
    ``logs/<role>-<n>.log`` so a failure can be read afterwards."""

    def __init__(self, commands: dict[str, list[str]], logs: Path, *, seed: int) -> None:
        self.commands = commands
        self.logs = logs
        self.rng = random.Random(seed)
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.assigned: dict[str, float] = {}
        self.delay: dict[str, float] = {}
        self.kills = 0
        self.chaos_kills = 0
        self.by_role: dict[str, int] = dict.fromkeys(commands, 0)
        self.runs = 0
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, role: str, *extra: str) -> subprocess.Popen[bytes]:
        self.runs += 1
        path = self.logs / f"{role}-{self.runs}.log"
        with open(path, "wb") as out:
            proc = subprocess.Popen(
                [*self.commands[role], *extra], env=_env(), stdout=out, stderr=subprocess.STDOUT
            )
        self.procs[role] = (proc, path)
        self.assigned.pop(role, None)
        return proc

    def _start_chaotic(self, role: str, chaos: float, max_gap: float) -> None:
        self.start(role, "--chaos", str(chaos), "--seed", str(self.rng.randrange(1 << 30)))
        self.delay[role] = self.rng.uniform(0.1, max_gap)

    def _fail(self, role: str, code: int | None) -> None:
        path = self.procs[role][1]
        raise AssertionError(f"{role} exited with {code}:\n{path.read_text()[-3000:]}")

    def kill_until(self, kills: int, *, chaos: float, max_gap: float) -> None:
        """Kill (and restart) processes until ``kills`` have died, by SIGKILL from here or
        by their own ``--chaos``."""
        for role in self.commands:
            self._start_chaotic(role, chaos, max_gap)
        while self.kills < kills:
            time.sleep(0.02)
            now = time.monotonic()
            for role in list(self.procs):
                proc, path = self.procs[role]
                code = proc.poll()
                if code is not None:
                    if code != -signal.SIGKILL:
                        self._fail(role, code)
                    self.kills += 1
                    self.chaos_kills += 1
                    self.by_role[role] += 1
                    self._start_chaotic(role, chaos, max_gap)
                    continue
                if role not in self.assigned:
                    if b"assigned" in path.read_bytes():
                        self.assigned[role] = now
                    continue
                if now - self.assigned[role] >= self.delay[role]:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    self.kills += 1
                    self.by_role[role] += 1
                    self._start_chaotic(role, chaos, max_gap)
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    def start_all(self, *, timeout: float = 600.0) -> None:
        """Start one process per role (no chaos) and wait until each has partitions."""
        for role in self.commands:
            self.start(role)
        deadline = time.monotonic() + timeout
        while set(self.assigned) != set(self.commands):
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"not assigned within {timeout} s: {sorted(self.procs)}")
            for role, (_, path) in self.procs.items():
                if role not in self.assigned and b"assigned" in path.read_bytes():
                    self.assigned[role] = time.monotonic()
            time.sleep(0.05)

    def check_alive(self) -> None:
        """Fail, with its log, if any process has ended."""
        for role, (proc, _) in self.procs.items():
            if proc.poll() is not None:
                self._fail(role, proc.returncode)

    def stop_all(self, timeout: float = 60.0) -> None:
        """SIGTERM every process (they snapshot and commit) and expect exit status 0."""
        for proc, _ in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for role, (proc, _) in self.procs.items():
            if proc.wait(timeout) != 0:
                self._fail(role, proc.returncode)

    def finish(self, order: list[str], *, idle_exit: float = 2.0, timeout: float = 180) -> None:
        """Run each role to completion, in pipeline order, without chaos."""
        for role in order:
            code = self.start(role, "--idle-exit", str(idle_exit)).wait(timeout)
            if code != 0:
                self._fail(role, code)


def book_args(setup: MarginSetup, folder: Path) -> tuple[list[str], MarginSetup]:
    """Write ``setup``'s book folder and margin settings under ``folder``: the runner
    options that make every calculator margin them, and the setup as the calculators read
    it back (the history's closes round-trip to rounding, so a batch recompute that is to
    agree bit for bit reads the same files)."""
    book_dir, settings = folder / "book", folder / "margin.json"
    write_book(book_dir, setup.book)
    setup.settings.save(settings)
    loaded, failures = MarginSetup.from_folder(book_dir, setup.settings)
    assert not failures, failures
    return ["--book", str(book_dir), "--settings", str(settings)], loaded


@dataclass
class ChaosResult:
    supervisor: Supervisor
    trades: int
    positions: Report
    margins: MarginReport
    reproduced: list[Reproduction]  # stored margins picked at random, from the store alone

    @property
    def ok(self) -> bool:
        return self.positions.ok and self.margins.ok and all(r.ok for r in self.reproduced)

    def summary(self) -> str:
        s = self.supervisor
        return (
            f"{s.kills} kills {s.by_role} ({s.chaos_kills} inside the commit protocol), "
            f"{self.trades} trades; positions: {self.positions.summary()}; margins: "
            f"{self.margins.summary()}, max rel. error {self.margins.max_rel_error:.1e}, "
            f"{self.margins.versions} published versions recomputed; "
            f"{sum(r.ok for r in self.reproduced)}/{len(self.reproduced)} stored margins "
            "reproduced from the store "
            f"(max rel. error {self.margins.max_version_error:.1e})"
        )


def pipeline_chaos(
    *,
    log: Log,
    log_url: str,
    topology: Topology,
    setup: MarginSetup,
    workdir: Path,
    kills: int,
    seed: int = 3,
    chunks: int = 20,
    chunk: int = 1_000,
    interval: float = 0.3,
    max_gap: float = 1.5,
    chaos: float = 0.005,
    day: tuple[Sequence[ev.Trade], Sequence[ev.Event]] | None = None,
    db_url: str | None = None,
    db_prefix: str = "mf_",
    disrupt: Callable[[Supervisor], None] | None = None,
) -> ChaosResult:
    """Run keeper, calculator, aggregator and sink as processes on ``log`` while a feeder
    publishes ``chunks`` x ``chunk`` trades (and price moves, and now and then an approved
    risk-parameter change); SIGKILL them ``kills`` times, finish the pipeline, then
    reconcile positions and the database with a batch recompute.

    ``day`` replaces the generated input by a day of trades and market events (from files:
    :mod:`marginflow.stream.sources`), published in time order in ``chunks`` parts, every
    part of it even if the kills end first, with no parameter changes. ``db_url`` is the
    sink's database (default SQLite in ``workdir``).

    ``disrupt`` replaces the kills: every role runs once, without chaos, while
    ``disrupt(supervisor)`` does its harm (takes the broker away); then every process must
    still be alive, and must stop cleanly on SIGTERM."""
    from marginflow.sim.loadgen import TradeFlow, book_spots, parameter_change, price_moves, trades
    from marginflow.stream.pipeline import ROLES
    from marginflow.stream.publish import (
        publish_market,
        publish_parameter_changes,
        publish_trades,
        sod_positions,
    )

    log.create_topics(topology.all())
    db_url = db_url or f"sqlite:///{workdir / 'margins.db'}"
    args, setup = book_args(setup, workdir)
    db = Database(db_url, prefix=db_prefix)
    record_book_load(db, Path(args[1]), setup.settings.to_json())
    db.close()
    common = [
        "--prefix", topology.prefix, "--partitions", str(topology.partitions),
        "--max-batch", "300", "--snapshot-interval", "0.1", *args, "--db", db_url,
        "--db-prefix", db_prefix,
    ]  # fmt: skip
    commands = {role: worker_command(role, log_url, workdir / "state", *common) for role in ROLES}
    book = setup.book
    flow = TradeFlow.over(book.positions.accounts, book.instruments.ids, seed=seed + 2)
    producer = log.producer()
    publish_trades(producer, topology, sod_positions(book))
    moves = list(price_moves(book_spots(book), chunks * 10, seed=seed + 2))

    merged = merge_by_time(*day) if day is not None else []
    part = -(-len(merged) // chunks) if merged else 0

    def publish_day(k: int) -> None:
        events = merged[k * part : (k + 1) * part]
        publish_trades(producer, topology, [e for e in events if isinstance(e, ev.Trade)])
        publish_market(producer, topology, [e for e in events if not isinstance(e, ev.Trade)])

    def publish(k: int) -> None:
        if day is not None:
            publish_day(k)
            return
        publish_trades(producer, topology, trades(flow, chunk, first=k * chunk))
        publish_market(producer, topology, moves[k * 10 : (k + 1) * 10])
        if k % 5 == 4:  # the confidence level stepping between 97.5% and 99.5%
            level = (0.975, 0.985, 0.995)[(k // 5) % 3]
            change = parameter_change(f"CHAOS-{k}", "confidence", level, at_ns=time.time_ns())
            publish_parameter_changes(producer, topology, [change])

    supervisor = Supervisor(commands, workdir / "logs", seed=seed)
    with Feeder(publish, chunks=chunks, interval=interval) as feeder:
        if disrupt is None:
            supervisor.kill_until(kills, chaos=chaos, max_gap=max_gap)
        else:
            supervisor.start_all()
            disrupt(supervisor)
            supervisor.check_alive()  # no worker left dead
    if disrupt is not None:
        supervisor.stop_all()
    if day is not None:  # the whole day, whenever the kills ended
        for k in range(feeder.published, chunks):
            publish_day(k)
    supervisor.finish(list(ROLES))
    positions = check_positions(log, topology)
    db = Database(db_url, prefix=db_prefix)
    try:
        margins = check_margins(log, topology, setup, db)
        reproduced = reproduce_sample(db, 25, seed=seed)
    finally:
        db.close()
    return ChaosResult(supervisor, feeder.published * chunk, positions, margins, reproduced)


class BrokerFront:
    """A broker whose clients all reach it through a TCP forwarder of its own
    (:mod:`marginflow.sim.forward`, a separate process): the broker advertises the
    forwarder's port, so every connection goes through it. :meth:`down` SIGKILLs the
    forwarder, so every client sees what a dead broker looks like (connections reset, new
    ones refused); :meth:`up` starts it again on the same port, the broker back with its log
    (the test broker keeps its log in memory: restarting the broker process itself would
    lose the log, which no client can survive). ``broker`` is the broker process, for
    :func:`pause_broker`."""

    def __init__(self, *, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.broker = start_broker(advertised_port=self.port, log_path=log_path)
        self._forwarder: subprocess.Popen[bytes] | None = None
        self.up()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def down(self) -> None:
        if self._forwarder is not None:
            self._forwarder.kill()
            self._forwarder.wait()
            self._forwarder = None

    def up(self) -> None:
        command = [sys.executable, "-m", "marginflow.sim.forward", str(self.port)]
        self._forwarder = subprocess.Popen(
            [*command, self.broker.bootstrap], env=_env(), stdin=subprocess.DEVNULL
        )
        if not wait_for_port("127.0.0.1", self.port, 30.0):
            raise AssertionError(f"the forwarder did not listen on {self.port}")

    def close(self) -> None:
        self.down()
        self.broker.stop()


@dataclass
class OutageReport:
    outages: int = 0
    down_seconds: float = 0.0
    seconds: float = 0.0


def broker_outages(
    front: BrokerFront,
    *,
    count: int,
    seed: int,
    down: tuple[float, float] = (1.0, 3.0),
    up: tuple[float, float] = (1.0, 3.0),
    check: Callable[[], None] | None = None,
) -> OutageReport:
    """Take the broker away ``count`` times, each time for ``down`` seconds (uniform), with
    ``up`` seconds of service between; ``check()`` runs after each (workers still alive)."""
    rng = random.Random(seed)
    report = OutageReport()
    t0 = time.monotonic()
    for _ in range(count):
        time.sleep(rng.uniform(*up))
        front.down()
        gone = rng.uniform(*down)
        time.sleep(gone)
        front.up()
        report.outages += 1
        report.down_seconds += gone
        if check is not None:
            check()
    report.seconds = time.monotonic() - t0
    return report


def pause_broker(pid: int, seconds: float) -> None:
    """Freeze the broker process for ``seconds`` (SIGSTOP, then SIGCONT): connections stay
    open and requests go unanswered, as with a broker stalled on a full disk or a long GC."""
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
