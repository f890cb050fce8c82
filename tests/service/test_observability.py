"""What operators see of ``marginflow serve`` as a process: Prometheus latency histograms
per route template (never per raw path), an ``X-Request-ID`` on every response, and the
same request id on every JSON log line a request causes (standard error, captured)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from tests.service.conftest import Service

PATIENCE = 300.0  # seconds: a guard against a hang, not a goal


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(service: Service, port: int, stderr: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "marginflow", "serve",
        f"--db=sqlite:///{service.directory / 'margins.db'}",
        f"--dir={service.directory / 'service'}", "--no-tls", f"--port={port}",
        f"--log=embedded://{service.directory / 'log'}", "--partitions=2",
    ]  # fmt: skip
    with open(stderr, "wb") as err:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        assert process.poll() is None, stderr.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2.0).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(stderr.read_text())


def test_metrics_request_ids_and_json_logs_of_a_serving_process(
    service: Service, tmp_path: Path
) -> None:
    port, stderr = free_port(), tmp_path / "serve.stderr"
    process = serve(service, port, stderr)
    user = f"{service.members[0].lower()}.user"
    answers: list[httpx.Response] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
            login = client.post(
                "/api/v1/auth/token",
                json={"username": user, "password": service.password(user)},
            )
            answers.append(login)
            assert login.status_code == 200, login.text
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            accounts = client.get("/api/v1/accounts", params={"limit": 3}).json()["items"]
            answers += [client.get(f"/api/v1/accounts/{a['account']}") for a in accounts]
            assert [r.status_code for r in answers[1:]] == [200] * len(accounts)
            unknown = client.get("/api/v1/accounts/NO-SUCH-ACCOUNT")
            denied = client.get("/api/v1/ops/lag")  # a member user is not an operator
            chosen = client.get("/api/v1/members", headers={"X-Request-ID": "trace-42.a_b"})
            garbage = client.get("/api/v1/members", headers={"X-Request-ID": "<script> x"})
            answers += [unknown, denied, chosen, garbage]
            assert (unknown.status_code, denied.status_code) == (404, 403)
            metrics = client.get("/metrics").text
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(PATIENCE)
    assert code == 0  # a graceful stop

    # every response carries a request id; one sent by the client is kept if well formed
    ids = [r.headers.get("x-request-id", "") for r in answers]
    assert all(ids)
    assert len(set(ids)) == len(ids)
    assert chosen.headers["x-request-id"] == "trace-42.a_b"
    assert garbage.headers["x-request-id"] != "<script> x"
    assert unknown.json()["error"]["request_id"] == unknown.headers["x-request-id"]

    # the latency histogram has one series per route template, none per raw path
    series = [line for line in metrics.splitlines() if line.startswith("marginflow_http_")]
    assert any('route="/api/v1/accounts/{account}"' in s and "_bucket" in s for s in series)
    assert any('route="/api/v1/auth/token"' in s for s in series)
    assert not any(a["account"] in s for s in series for a in accounts)
    assert not any("NO-SUCH-ACCOUNT" in s for s in series)
    refused = [s for s in series if s.startswith("marginflow_http_refused_total")]
    assert any('route="/api/v1/ops/lag"' in s and 'status="403"' in s for s in refused)

    # standard error is JSON lines; a request's lines all carry its id
    lines = [json.loads(line) for line in stderr.read_text().splitlines() if line.strip()]
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_id[line["request_id"]].append(line)
    for rid in ids:
        events = [line.get("event") for line in by_id[rid]]
        assert events.count("http.request") == 1, (rid, events)
    # the sign-in writes a security event and its audit line besides the access line
    login_lines = by_id[login.headers["x-request-id"]]
    assert {"auth.login", "http.request"} <= {line.get("event") for line in login_lines}
    assert any(line.get("security") for line in login_lines)
    denied_lines = by_id[denied.headers["x-request-id"]]
    assert "access.denied" in {line.get("event") for line in denied_lines}
    # no line about a request lacks its id: lines without one are the server's own
    for line in by_id[""]:
        assert line.get("event") not in ("http.request", "auth.login", "access.denied"), line
