"""The hostile CRIF corpus (``corpus/crif``, see its ``manifest.toml``) through ``marginflow
simm`` in this process: exit status 0 or 2, no traceback, and for files whose record count is
known, rows in = rows out + rows rejected, with every rejected row kept in ``--rejects``.

Minimal runner for this one directory, until the generic corpus runner folds it in."""

from __future__ import annotations

import csv
import shlex
import tomllib
import traceback
from pathlib import Path

import pytest

from marginflow.core.errors import ValidationError
from marginflow.io.crif import read_crif
from marginflow.simm.calibration import load_calibration
from tests.cli_runner import invoke

CORPUS = Path(__file__).resolve().parent / "corpus" / "crif"
MANIFEST = tomllib.loads((CORPUS / "manifest.toml").read_text())
FILES = sorted(p for p in CORPUS.iterdir() if p.name != "manifest.toml")


def test_the_corpus_is_large_enough() -> None:
    assert len(FILES) >= 200


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_file(path: Path, tmp_path: Path) -> None:
    args = shlex.split(MANIFEST["command"].format(file=path, tmp=tmp_path))
    result = invoke(args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"{path.name}: an exception escaped:\n{trace}")
    assert result.exit_code in MANIFEST["exit"], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    rows = MANIFEST["rows"].get(path.name)
    if rows is None:
        return
    try:
        load = read_crif(path, calibration=load_calibration("2.6"))
    except ValidationError:
        assert result.exit_code == 2
        return
    assert len(load.crif) + load.rejected_lines == rows
    rejects = tmp_path / "rejects.csv"
    kept = list(csv.reader(rejects.open(newline=""))) if rejects.exists() else [[]]
    assert len(kept) - 1 == load.rejected_lines
