"""Two replicas active/active on one PostgreSQL: a client spreads reads and proposals over
both and retries a failed request on the other; one replica is SIGKILLed mid-load. No
request is lost, no retried POST makes a second proposal, and the audit chain, extended by
both replicas at once, still verifies."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from marginflow.engine.settings import MarginSettings
from marginflow.service.config import ServiceConfig
from marginflow.service.context import ServiceContext
from marginflow.service.secrets_store import load_or_create
from marginflow.service.server import first_run
from marginflow.sim.demo import prepare_demo
from marginflow.store import Database
from marginflow.store.audit_log import AuditLog
from tests.postgres import postgres_or_skip
from tests.service.conftest import BOOK

pytestmark = pytest.mark.postgres

REQUESTS = 600  # logical requests, a third of them proposals
THREADS = 8
KILL_AFTER = 150  # answered requests before replica A is killed
PATIENCE = 300.0  # seconds: a guard against a hang, not a goal


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Store:
    dsn: str
    prefix: str
    directory: Path
    passwords: dict[str, str]
    accounts: list[str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A small demo day streamed into PostgreSQL under a fresh prefix, and its users."""
    dsn = postgres_or_skip()
    root = tmp_path_factory.mktemp("replicas")
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    run = prepare_demo(
        root / "demo",
        spec=BOOK,
        settings=MarginSettings(lookback=250),
        trades_count=300,
        market_moves=10,
        partitions=2,
        slices=2,
        db_url=dsn,
        db_prefix=prefix,
    )
    try:
        for _ in run.publish_day():
            run.catch_up()
    finally:
        run.close()
    db = Database(dsn, prefix=prefix)
    config = ServiceConfig(db_url=dsn, directory=root / "service", prefix=prefix)
    ctx = ServiceContext(config, db, load_or_create(config.directory)[0])
    made = first_run(ctx)
    accounts = sorted(m.account for m in db.current_margins(member="M000")[0])
    try:
        yield Store(dsn, prefix, config.directory, {c.username: c.password for c in made}, accounts)
    finally:
        db.drop()
        ctx.close()


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_replica(store: Store, name: str, tmp: Path) -> Replica:
    port = free_port()
    err = tmp / f"{name}.stderr"
    argv = [
        sys.executable, "-m", "marginflow", "serve", f"--db={store.dsn}",
        f"--prefix={store.prefix}", f"--dir={store.directory}", "--no-tls",
        f"--port={port}", "--partitions=2",
    ]  # fmt: skip
    with open(err, "wb") as fh:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=fh)
    return Replica(name, port, process, err)


def wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        assert replica.process.poll() is None, replica.stderr.read_text()
        try:
            if httpx.get(f"{replica.url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica {replica.name} never ready: {replica.stderr.read_text()}")


@dataclass
class Outcome:
    """What the client saw: per logical request, its final status and the tries it took."""

    final: dict[int, int] = field(default_factory=dict)
    tries: Counter[str] = field(default_factory=Counter)
    proposals: dict[str, str] = field(default_factory=dict)  # idempotency key -> proposal id
    lock: threading.Lock = field(default_factory=threading.Lock)


def token(url: str, username: str, password: str) -> str:
    r = httpx.post(f"{url}/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_two_replicas_lose_no_request_and_duplicate_no_proposal_when_one_is_killed(
    store: Store, tmp_path: Path
) -> None:
    replicas = [start_replica(store, "a", tmp_path), start_replica(store, "b", tmp_path)]
    try:
        for replica in replicas:
            wait_ready(replica)
        reader = token(replicas[0].url, "m000.user", store.passwords["m000.user"])
        analyst = token(replicas[1].url, "risk.analyst", store.passwords["risk.analyst"])
        outcome = Outcome()
        answered = threading.Semaphore(0)
        clients = [httpx.Client(base_url=r.url, timeout=10.0) for r in replicas]

        def one(n: int) -> None:
            """Logical request ``n``, sent to replica n % 2 first, then alternately."""
            key = f"replica-test-{n}"
            for attempt in range(40):
                index = (n + attempt) % 2
                rid = f"r{n}-{attempt}-{replicas[index].name}"
                try:
                    if n % 3 == 0:
                        r = clients[index].post(
                            "/api/v1/parameters/proposals",
                            json={"parameter": "confidence", "value": 0.985, "reason": key},
                            headers={
                                "Authorization": f"Bearer {analyst}",
                                "Idempotency-Key": key,
                                "X-Request-ID": rid,
                            },
                        )
                    else:
                        account = store.accounts[n % len(store.accounts)]
                        r = clients[index].get(
                            f"/api/v1/accounts/{account}",
                            headers={"Authorization": f"Bearer {reader}", "X-Request-ID": rid},
                        )
                except httpx.TransportError:
                    with outcome.lock:
                        outcome.tries[f"failed on {replicas[index].name}"] += 1
                    continue
                with outcome.lock:
                    outcome.tries[f"{r.status_code} from {replicas[index].name}"] += 1
                if r.status_code >= 500:
                    continue
                with outcome.lock:
                    outcome.final[n] = r.status_code
                    if n % 3 == 0 and r.status_code == 201:
                        outcome.proposals.setdefault(key, r.json()["id"])
                        assert outcome.proposals[key] == r.json()["id"], key
                answered.release()
                return

        def worker(numbers: list[int]) -> None:
            for n in numbers:
                one(n)

        threads = [
            threading.Thread(target=worker, args=(list(range(k, REQUESTS, THREADS)),))
            for k in range(THREADS)
        ]
        for t in threads:
            t.start()
        for _ in range(KILL_AFTER):
            assert answered.acquire(timeout=PATIENCE)
        replicas[0].process.send_signal(signal.SIGKILL)  # mid-load, requests in flight
        for t in threads:
            t.join(PATIENCE)
        for client in clients:
            client.close()
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
            replica.process.wait(PATIENCE)

    print(f"tries: {dict(outcome.tries)}")
    # no request lost: every logical request answered 2xx in the end
    assert len(outcome.final) == REQUESTS, outcome.tries
    assert set(outcome.final.values()) <= {200, 201}, Counter(outcome.final.values())
    assert outcome.tries["failed on a"] > 0, outcome.tries  # the kill did hit requests
    assert replicas[0].process.returncode == -signal.SIGKILL
    assert replicas[1].process.returncode == 0  # SIGTERM: a graceful stop

    db = Database(store.dsn, prefix=store.prefix)
    try:
        # no duplicate: one stored proposal per idempotency key, the one every answer named
        from marginflow.store.proposals import Proposals

        stored = [p for p in Proposals(db).list(limit=100_000) if p.reason.startswith("replica")]
        assert Counter(p.reason for p in stored).most_common(1)[0][1] == 1
        assert {p.reason: p.id for p in stored} == outcome.proposals
        assert len(stored) == len(range(0, REQUESTS, 3))

        # the audit chain, extended by both replicas at once, verifies
        secrets, _ = load_or_create(store.directory)
        audit = AuditLog(db, secrets.audit_key)
        check = audit.verify()
        assert check.ok, [str(p) for p in check.problems[:5]]
        entries = audit.entries(limit=100_000)
        writers = Counter(
            e.request_id.rsplit("-", 1)[1]
            for e in entries
            if e.action == "parameters.proposed" and e.request_id.startswith("r")
        )
        assert writers["a"] > 0
        assert writers["b"] > 0
        seqs = sorted(e.seq for e in entries)
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no fork
    finally:
        db.close()
