"""``python -m marginflow.stream.runner``: a sink never writes to a database it was not
given (a default relative to wherever it starts would hide its results)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
