"""Margin reads over the API under an open-loop load, with the stream running: issue 10's
goal is p99 < 50 ms at 500 requests/s, reported against a static health endpoint measured
in the same run.

``python -m benchmarks.api`` (``--quick``: 5 s phases at 200/s; ``--rate``, ``--seconds``).

Setup: the embedded platform of ``marginflow up`` (:mod:`marginflow.sim.platform`) in a
temporary folder, as two processes apart from this one: the pipeline streaming the demo
day (the demo book: 200 accounts, 5 members; 20,000 trades and 200 price moves paced
over the whole measurement, so the sink writes new margins into the SQLite store while the
service reads it) and the service over **HTTPS** (its self-signed certificate, verified).

Load: this process, asyncio, raw HTTP/1.1 on keep-alive TLS connections (a pool that
grows when every connection is busy), signed in as a member's user with a bearer token.
Open loop: request *i* is scheduled at ``t0 + i / rate`` whatever happened to the ones
before, and its latency runs **from its scheduled time** to the last byte of the answer,
so a stall of the service counts against every request it delayed (no coordinated
omission). Phases, one after the other in the same run: a warm-up (not counted), margin
reads (``GET /api/v1/accounts/{account}`` and ``GET /api/v1/margins?account=...&limit=20``
alternately, over the member's accounts at random), then ``GET /healthz``.
An error is any answer other than 200, or a failed connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import print_table
from marginflow.service.server import Listener
from marginflow.sim.live import DayPlan
from marginflow.sim.platform import Platform, PlatformOptions, prepare, start

GOAL_P99_MS = 50.0
GOAL_RATE = 500.0
MEMBER_USER = "m000.user"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class Pool:
    """At most ``size`` keep-alive HTTP/1.1 connections to one server, opened as needed; a
    request waits for a free one (that wait counts in its latency), as a client's
    connection pool does. A request that fails on a reused connection before any byte of
    the answer (the server closed it while idle) is sent again on a new one, as HTTP
    clients do for idempotent requests."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, headers: bytes, size: int):
        self.host, self.port, self.tls, self.headers = host, port, tls, headers
        self.free = asyncio.Semaphore(size)
        self.idle: list[Connection] = []
        self.opened = 0

    async def _open(self) -> Connection:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None
        )
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return Connection(reader, writer)

    async def _exchange(self, conn: Connection, path: str) -> tuple[int, dict[str, str], bytes]:
        conn.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n".encode() + self.headers + b"\r\n"
        )
        head = await conn.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        body = await conn.reader.readexactly(int(fields.get("content-length", "0")))
        return status, fields, body

    async def get(self, path: str) -> tuple[int, bytes]:
        """``(status, body)`` of ``GET path``."""
        async with self.free:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self._open()
            try:
                try:
                    status, fields, body = await self._exchange(conn, path)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                    if not reused or partial:
                        raise
                    conn.writer.close()
                    conn = await self._open()
                    status, fields, body = await self._exchange(conn, path)
            except BaseException:
                conn.writer.close()
                raise
            if fields.get("connection") == "close":
                conn.writer.close()
            else:
                self.idle.append(conn)
            return status, body

    def close(self) -> None:
        for conn in self.idle:
            conn.writer.close()
        self.idle.clear()


@dataclass
class Phase:
    """The outcome of one phase: per route, latencies (s) of the answered requests."""

    name: str
    rate: float
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    first_due: float = 0.0
    last_done: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process name

    @property
    def answered(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + sum(self.errors.values())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_phase(
    pool: Pool,
    name: str,
    paths: list[tuple[str, str]],
    rate: float,
    seconds: float,
    pids: dict[str, int],
) -> Phase:
    """Send ``rate * seconds`` requests open-loop, request i to ``paths[i % len]``; the
    CPU the processes ``pids`` used meanwhile is kept."""
    loop = asyncio.get_running_loop()
    phase = Phase(name, rate, seconds)
    before = {k: cpu_seconds(pid) for k, pid in pids.items()}
    n = int(rate * seconds)
    t0 = loop.time() + 0.05
    phase.first_due = t0

    async def one(route: str, path: str, due: float) -> None:
        try:
            status, _ = await pool.get(path)
        except (OSError, asyncio.IncompleteReadError, ValueError, ssl.SSLError):
            status = 0
        done = loop.time()
        phase.last_done = max(phase.last_done, done)
        if status == 200:
            phase.latencies.setdefault(route, []).append(done - due)
        else:
            phase.errors[route] = phase.errors.get(route, 0) + 1

    tasks = []
    for i in range(n):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        route, path = paths[i % len(paths)]
        tasks.append(asyncio.create_task(one(route, path, due)))
    await asyncio.gather(*tasks)
    phase.cpu = {k: cpu_seconds(pid) - before[k] for k, pid in pids.items()}
    return phase


def row(phase: Phase, label: str, routes: list[str], target: float) -> list[object]:
    """route, target rate, achieved rate, p50/p90/p99/max ms, errors."""
    lat = np.array([x for r in routes for x in phase.latencies.get(r, [])]) * 1000
    errors = sum(phase.errors.get(r, 0) for r in routes)
    span = max(1e-9, phase.last_done - phase.first_due)
    q = np.percentile(lat, [50, 90, 99]) if lat.size else np.full(3, np.nan)
    worst = float(lat.max()) if lat.size else float("nan")
    achieved = (lat.size + errors) / span
    return [label, target, achieved, float(q[0]), float(q[1]), float(q[2]), worst, errors]


def p99(phase: Phase, routes: list[str]) -> float:
    lat = [x for r in routes for x in phase.latencies.get(r, [])]
    return float(np.percentile(np.array(lat) * 1000, 99)) if lat else float("nan")


async def measure(
    port: int,
    tls: ssl.SSLContext,
    token: str,
    accounts: list[str],
    args: argparse.Namespace,
    pids: dict[str, int],
) -> tuple[Phase, Phase]:
    rate, seconds = float(args.rate), float(args.seconds)
    auth = f"Authorization: Bearer {token}\r\n".encode()
    pool = Pool("127.0.0.1", port, tls, auth, int(args.connections))
    rng = random.Random(1)
    margin_paths = []
    for k in range(4096):
        account = rng.choice(accounts)
        if k % 2 == 0:
            margin_paths.append(("account", f"/api/v1/accounts/{account}"))
        else:
            margin_paths.append(("margins", f"/api/v1/margins?account={account}&limit=20"))
    say(f"warm-up: {args.warmup:.0f} s at {rate / 5:.0f}/s")
    await run_phase(pool, "warm-up", margin_paths, rate / 5, float(args.warmup), pids)
    say(f"margin reads: {seconds:.0f} s at {rate:.0f}/s")
    margins = await run_phase(pool, "margin", margin_paths, rate, seconds, pids)
    say(f"/healthz: {seconds:.0f} s at {rate:.0f}/s")
    health = await run_phase(pool, "healthz", [("healthz", "/healthz")], rate, seconds, pids)
    say(f"connections opened: {pool.opened}")
    pool.close()
    return margins, health


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s phases at 200 requests/s")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up")
    parser.add_argument("--connections", type=int, default=32, help="client connections at most")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rate, args.seconds, args.warmup = 200.0, 5.0, 2.0
    with tempfile.TemporaryDirectory(prefix="mf-bench-api-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        stream_seconds = 2 * args.seconds + args.warmup + 60
        plan = DayPlan(seconds=stream_seconds, slices=max(10, int(stream_seconds)))
        options = PlatformOptions(Path(tmp) / "platform", port=port, plan=plan)
        say("preparing the platform (demo book, store, first-run users, certificate) ...")
        made, listener = prepare(options)
        password = {c.username: c.password for c in made}[MEMBER_USER]
        platform = start(options, listener)
        try:
            return _bench(platform, listener, password, options, args)
        finally:
            platform.stop()


def _published(directory: Path) -> int:
    try:
        return int(json.loads((directory / "day.json").read_text())["published"])
    except (FileNotFoundError, ValueError, KeyError):
        return -1


def _bench(
    platform: Platform,
    listener: Listener,
    password: str,
    options: PlatformOptions,
    args: argparse.Namespace,
) -> int:
    import httpx

    directory = options.directory
    deadline = time.monotonic() + 600
    while not platform.ready():
        if platform.ended() or time.monotonic() > deadline:
            say(f"the platform did not start: see {directory / 'logs'}")
            return 1
        time.sleep(0.2)
    assert listener.certificate is not None
    tls = ssl.create_default_context(cafile=str(listener.certificate))
    with httpx.Client(base_url=listener.url, verify=tls) as client:
        r = client.post("/api/v1/auth/token", json={"username": MEMBER_USER, "password": password})
        r.raise_for_status()
        token = r.json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        accounts: list[str] = []
        while not accounts:  # the start-of-day positions margined
            if time.monotonic() > deadline:
                say(f"no margin stored: see {directory / 'logs'}")
                return 1
            accounts = [a["account"] for a in client.get("/api/v1/accounts").json()["items"]]
            time.sleep(0.5)
    say(f"{len(accounts)} accounts of {MEMBER_USER}; day over {options.plan.seconds:.0f} s")
    before = _published(directory)
    pids = {c.name: c.process.pid for c in platform.children}
    load = os.getloadavg()[0]
    margins, health = asyncio.run(measure(listener.port, tls, token, accounts, args, pids))
    after = _published(directory)
    rate = float(args.rate)
    both = ["account", "margins"]
    rows = [
        row(margins, "margin reads (both routes)", both, rate),
        row(margins, "  GET /api/v1/accounts/{account}", ["account"], rate / 2),
        row(margins, "  GET /api/v1/margins?account=..&limit=20", ["margins"], rate / 2),
        row(health, "GET /healthz", ["healthz"], rate),
    ]
    print_table(
        f"API over HTTPS, open loop, {args.seconds:.0f} s per phase, the stream running "
        f"(slices {before}..{after} of {options.plan.slices} published meanwhile)",
        ("route", "target /s", "achieved /s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"),
        rows,
    )
    goal = p99(margins, both)
    ratio = goal / p99(health, ["healthz"])
    print(f"p99(margin reads) / p99(/healthz) = {ratio:.2f}")
    for phase in (margins, health):
        cpu = phase.cpu["service"] / max(1, phase.answered) * 1000
        pipeline = phase.cpu["pipeline"] / phase.seconds
        print(f"{phase.name}: service CPU {cpu:.2f} ms per request; "
              f"pipeline {pipeline:.0%} of a core meanwhile")  # fmt: skip
    print(f"load average (1 min) {load:.1f} before, {os.getloadavg()[0]:.1f} after, 2 cores")
    verdict = "met" if goal < GOAL_P99_MS else "missed"
    if rate < GOAL_RATE:
        verdict = f"not measured (this run: {rate:.0f}/s)"
    print(f"goal p99 < {GOAL_P99_MS:.0f} ms at {GOAL_RATE:.0f}/s for margin reads: {verdict} "
          f"(p99 {goal:.1f} ms)")  # fmt: skip
    if args.json:
        print(json.dumps({"rows": rows, "ratio": ratio}, default=float))
    errors = sum(margins.errors.values()) + sum(health.errors.values())
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
