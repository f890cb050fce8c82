"""Every file of the hostile corpus, run through the CLI in-process (issue 11).

``corpus/<input path>/`` holds hostile files for one input path and a ``manifest.toml``:

``command``   the CLI arguments (a list, or one string split as a shell would), with
              ``{file}`` (the hostile file), ``{rejects}`` (a path for ``--rejects``, which
              is ``{tmp}/rejects.csv``), ``{base}`` (``tests/hostile/base``), ``{book}``
              (see ``place``) and ``{tmp}`` (a scratch folder of the run)
``exit``      optional: the exit statuses allowed (default 0 and 2)
``place``     optional: the file becomes this file of a fresh copy of the base book (``{book}``;
              ``{file}`` is then the placed copy), for inputs only a book folder names
``rows_out``  optional: how to count the rows a run kept: ``csv-stdout`` (data rows on
              standard output) or ``json:KEY`` (a number in the JSON on standard output)
``[rows]``    optional: file name -> its data rows, where counting them needs the format
``ok``        optional: the files that are good inputs: each must exit 0, every other file
              of the folder 2 (without it, either is allowed)
``located``   optional: a refusal's one line must read ``error: FIELD: ...FILE...: REASON``
              and, where it names a line (``FILE:N`` or ``line N``), one within the file
``[lines]``   optional: file name -> the line its refusal must name

For each file: the exit status is 0 or 2; no stack trace (``catch_exceptions=False`` lets
one fail the test); an exit 2 is either one ``error:`` line naming the file, or named row
rejects, all kept in ``--rejects`` (other lines on standard error are notes, never an
``error:``); where the command reports ``rejected_rows`` it matches
the rejects kept; and where rows can be counted, rows in = rows out + rows rejected.
Folders added by other inputs (``corpus/crif``) are found the same way.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import shutil
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import Result

from tests.cli_runner import invoke

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
BASE = HERE / "base"


def cases() -> list[Any]:
    out = []
    for manifest in sorted(CORPUS.glob("*/manifest.toml")):
        spec = tomllib.loads(manifest.read_text(encoding="utf-8"))
        for path in sorted(manifest.parent.iterdir()):
            if path.name != "manifest.toml" and path.is_file():
                out.append(pytest.param(spec, path, id=f"{manifest.parent.name}/{path.name}"))
    return out


def test_the_corpus_is_large_enough() -> None:
    assert len(cases()) >= 300


@pytest.mark.parametrize(("spec", "path"), cases())
def test_hostile_input(spec: dict[str, Any], path: Path, tmp_path: Path) -> None:
    file, book = path, BASE / "book"
    if "place" in spec:
        book = tmp_path / "book"
        shutil.copytree(BASE / "book", book)
        for old in book.glob(f"{spec['place']}.*"):
            old.unlink()
        file = book / f"{spec['place']}{path.suffix}"
        shutil.copyfile(path, file)
    rejects = tmp_path / "rejects.csv"
    names = {"file": file, "rejects": rejects, "base": BASE, "book": book, "tmp": tmp_path}
    command = spec["command"]
    tokens = shlex.split(command) if isinstance(command, str) else command
    args = [arg.format(**names) for arg in tokens]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning printed to a user is a fault too
        res = invoke(args, catch_exceptions=False)
    assert res.exit_code in spec.get("exit", (0, 2)), res.output
    assert "Traceback" not in res.output
    if "ok" in spec:
        assert res.exit_code == (0 if path.name in spec["ok"] else 2), res.stderr[-2000:]
    kept = _rejects(rejects)
    if res.exit_code == 2 and not kept:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith("error: "), lines[0]
        assert str(file) in lines[0] or file.name in lines[0], lines[0]
        if spec.get("located"):
            _check_located(lines[0], file, spec.get("lines", {}).get(path.name))
        return
    if res.exit_code == 0:
        assert kept == [], "exit 0 with rejected rows"
    else:  # the run went on past its rejects: no line says it stopped
        for line in res.stderr.strip().splitlines():
            assert not line.startswith("error:"), line
    doc = _json(res.stdout)
    if isinstance(doc, dict) and "rejected_rows" in doc:
        assert doc["rejected_rows"] == len(kept)
    if "rows_out" in spec:
        rows_in = spec.get("rows", {}).get(path.name) or _rows_in(path)
        assert rows_in == _rows_out(spec["rows_out"], res, doc) + len(kept)


_LINE = re.compile(r"(?::(\d+):|\bline (\d+)\b)")


def _check_located(message: str, file: Path, line: int | None) -> None:
    """``error: FIELD: ...FILE[:LINE]...: REASON``: a field first, the file, then a reason;
    a line it names lies within the file, and is ``line`` where the manifest pins one."""
    head = re.match(r"error: ([^\s:][^:]*): (.+)$", message)
    assert head, f"no field: {message}"
    rest = head.group(2)
    at = rest.find(str(file))
    assert at >= 0, f"no file: {message}"
    after = rest[at + len(str(file)) :]
    assert (rest[:at] + after).strip(" :()"), f"no reason: {message}"
    named = _LINE.search(after)
    n = int(named.group(1) or named.group(2)) if named else None
    if n is not None:
        assert 1 <= n <= file.read_bytes().count(b"\n") + 1, message
    if line is not None:
        assert n == line, f"expected line {line}: {message}"


def _rejects(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))[1:]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _rows_in(path: Path) -> int:
    """Data rows of the input as a reader sees them (blank lines are not rows)."""
    if path.suffix == ".parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return _records(path.read_bytes().decode("utf-8").removeprefix("\ufeff"))


def _records(text: str) -> int:
    """Rows after the header; a row the csv module refuses (a field over its size limit)
    counts, as the readers reject it rather than skip it."""
    reader = csv.reader(io.StringIO(text, newline=""))
    count = -1  # the header
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return max(count, 0)
        except csv.Error:
            count += 1
            continue
        count += count < 0 or any(c.strip() for c in cells)


def _rows_out(how: str, res: Result, doc: Any) -> int:
    if how == "csv-stdout":
        return _records(res.stdout)
    assert how.startswith("json:"), how
    return int(doc.get(how.removeprefix("json:"), 0))  # a count of none is left out
