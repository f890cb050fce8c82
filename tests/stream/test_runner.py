"""``python -m marginflow.stream.runner``: a sink never writes to a database it was not
given (a default relative to wherever it starts would hide its results), and its OpenMP
threads wait passively unless the operator chose otherwise; a running worker prints its
stacks on SIGUSR1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marginflow.stream import runner
from marginflow.stream.cluster import calculator_threads


def test_a_sink_without_db_refuses_and_creates_nothing(tmp_path: Path) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "marginflow.stream.runner", "sink",
         "--log", f"embedded://{tmp_path / 'log'}", "--state", str(tmp_path / "state")],
        cwd=here, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "sink: --db is required (sqlite:///PATH or postgresql://...); a cluster's database "
        "is shown by marginflow cluster status --dir D"
    ]
    assert list(here.iterdir()) == []
    assert not (tmp_path / "log").exists()


def test_openmp_threads_wait_passively_unless_the_operator_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(SystemExit):
        runner.main(["--help"])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(SystemExit):
        runner.main(["--help"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_thread_count_outside_the_cores_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = f"embedded://{tmp_path / 'log'}"
    code = runner.main(
        ["risk-calculator", "--log", log, "--state", str(tmp_path), "--threads", "0"]
    )
    assert code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(r"[\d:]+ risk-calculator: --threads must be between 1 and \d+, got 0", line)
    assert not (tmp_path / "log").exists()  # refused before anything was opened


def test_calculators_share_the_cores() -> None:
    assert [calculator_threads(n, cores=2) for n in (1, 2, 3)] == [2, 1, 1]
    assert calculator_threads(2, cores=8) == 4
    assert calculator_threads(0, cores=2) == 2


def test_a_running_worker_prints_its_stacks_on_sigusr1_and_carries_on(tmp_path: Path) -> None:
    """What a worker that seems stuck is doing, without stopping it (operators, and the
    broker-outage tests when a worker does not say what they wait for)."""
    log_file = tmp_path / "keeper.log"
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marginflow.stream.runner", "position-keeper",
             "--log", f"embedded://{tmp_path / 'log'}", "--state", str(tmp_path / "state")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for(b"started", log_file, proc)
        time.sleep(0.5)  # past the start line, into the worker's loop
        proc.send_signal(signal.SIGUSR1)
        _wait_for(b"most recent call first", log_file, proc)
        time.sleep(0.5)
        assert proc.poll() is None  # it carries on
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_file.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_file.read_text()
    assert re.search(r'File ".*marginflow/stream/worker\.py", line \d+ in run', text), text
    assert "position-keeper stopped" in text


def _wait_for(text: bytes, path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while text not in path.read_bytes():
        assert proc.poll() is None, path.read_text()
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)
