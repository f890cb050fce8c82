"""``marginflow up`` as a user runs it: the service answers over HTTPS with the certificate
it printed the fingerprint of, the printed passwords sign in, margins stream in, and
Ctrl-C stops everything it started with status 0; a second start resumes the same day."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from marginflow.core.errors import ConfigurationError
from marginflow.sim.platform import clear

SMALL_DAY = [
    "--members=3", "--accounts=24", "--underlyings=5", "--series=80", "--positions=120",
    "--lookback=250", "--trades=600", "--market-moves=30", "--seconds=4", "--slices=4",
]  # fmt: skip
PATIENCE = 600.0  # seconds: a guard against a hang on a loaded machine, not a goal


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


class Up:
    """``marginflow up`` in a subprocess, its standard output collected by a thread."""

    def __init__(self, directory: Path, port: int, *extra: str) -> None:
        argv = [sys.executable, "-m", "marginflow", "up", f"--dir={directory}", f"--port={port}"]
        self.process = subprocess.Popen(
            [*argv, *SMALL_DAY, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            assert self.process.poll() is None, "\n".join(self.lines)
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(PATIENCE)
        self._reader.join(10)
        return code

    def passwords(self) -> dict[str, str]:
        rows = [re.split(r"\s*│\s*", line.strip(" │")) for line in self.lines if "│" in line]
        return {r[0]: r[3] for r in rows if len(r) == 4 and r[0] != "username"}


@pytest.fixture
def up_dir(tmp_path: Path) -> Path:
    return tmp_path / "platform"


def fingerprint(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_up_serves_https_streams_the_day_and_ctrl_c_stops_everything(up_dir: Path) -> None:
    port = free_port()
    up = Up(up_dir, port)
    try:
        url = up.wait_for(r"ready: (https://\S+)/").group(1)
        printed = up.wait_for(r"SHA-256 fingerprint (\S+)").group(1)
        cert = up_dir / "service" / "tls" / "tls.crt"
        assert printed == fingerprint(cert)
        pids = children_of(up.process.pid)
        assert len(pids) == 2  # the pipeline and the service
        trust = ssl.create_default_context(cafile=str(cert))  # verified: no verify=False
        passwords = up.passwords()
        assert {"m000.user", "risk.analyst", "risk.approver", "admin"} <= set(passwords)
        with httpx.Client(base_url=url, verify=trust) as client:
            assert client.get("/readyz").status_code == 200
            form = {"username": "m000.user", "password": passwords["m000.user"]}
            r = client.post("/api/v1/auth/token", json=form)
            assert r.status_code == 200, r.text
            client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
            deadline = time.monotonic() + PATIENCE
            while not client.get("/api/v1/members").json():  # the day streams in
                assert time.monotonic() < deadline
                time.sleep(0.5)
            assert [m["member"] for m in client.get("/api/v1/members").json()] == ["M000"]
            assert "strict-transport-security" in r.headers
    finally:
        code = up.stop(signal.SIGINT)
    assert code == 0, "\n".join(up.lines)
    assert all(gone(pid) for pid in pids)
    assert "stopped" in up.lines[-1]
    assert "live: stopped (the workers' state is committed)" in (
        (up_dir / "logs" / "pipeline.log").read_text()
    )

    # a second start resumes the day where it stopped: no new users; stopped by SIGTERM
    again = Up(up_dir, port)
    try:
        again.wait_for(r"ready: https://")
        again.wait_for(r"users: made at the first start")
        assert again.passwords() == {}
        pids = children_of(again.process.pid)
        deadline = time.monotonic() + PATIENCE
        while published(up_dir) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        code = again.stop(signal.SIGTERM)
    assert code == 0, "\n".join(again.lines)
    assert all(gone(pid) for pid in pids)
    log = (up_dir / "logs" / "pipeline.log").read_text().splitlines()
    starts = [line for line in log if "slices" in line and "of the day" in line]
    assert len(starts) == 2
    assert not starts[1].startswith(f"live: {up_dir}: slices 0..")


def published(directory: Path) -> int:
    try:
        return int(json.loads((directory / "day.json").read_text())["published"])
    except FileNotFoundError:
        return -1


def test_another_days_options_are_refused_until_fresh(up_dir: Path) -> None:
    (up_dir).mkdir()
    (up_dir / "platform.json").write_text(json.dumps({"day": {"trades": 1}}))
    argv = [sys.executable, "-m", "marginflow", "up", f"--dir={up_dir}", *SMALL_DAY]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=PATIENCE, check=False)
    assert r.returncode == 2
    assert "streams another day" in r.stderr
    assert "--fresh" in r.stderr
    assert "Traceback" not in r.stderr


def test_fresh_removes_only_a_platform_folder(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigurationError, match="not a platform folder"):
        clear(mine)
    assert (mine / "notes.txt").is_file()
    platform = tmp_path / "platform"
    platform.mkdir()
    (platform / "platform.json").write_text("{}")
    clear(platform)
    assert not platform.exists()
