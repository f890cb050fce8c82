"""Faults of the machine under a command (a full disk, a file too large, a read-only folder or
database, a folder given for a file, a bug of ours) give one line on standard error, never a
traceback: ``error: <path>: <reason>`` and exit status 2, or ``error: internal error (...)``
and 70. The faults are real: /dev/full, RLIMIT_FSIZE, folders without write rights (root is
run without its override of them), a PostgreSQL user without write rights."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from marginflow.core.errors import MSG_CANNOT_CLEAR, MSG_OUTPUT_IS_FOLDER
from tests.postgres import postgres_or_skip

EXE = shutil.which("marginflow")
OPTIONS = "kind,style,spot,strike,expiry_years,rate,dividend_yield,vol\n"
OPTIONS += "call,european,100,100,1,0.05,0,0.2\nput,bogus,100,100,1,0.05,0,0.2\n"


def without_override() -> list[str]:
    """A prefix that runs a command as root without its power to ignore file permissions
    (nothing for another user)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root cannot be denied a write here (no setpriv)")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def run(
    *args: str, prefix: list[str] | None = None, stdout: int | IO[str] = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run(
        [*(prefix or []), EXE, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,
        check=False,
    )


def one_line(res: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The single line a failed command printed on standard error."""
    assert res.returncode == status, (res.returncode, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def options(tmp_path: Path) -> Path:
    path = tmp_path / "options.csv"
    path.write_text(OPTIONS)
    return path


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def test_an_output_on_a_full_disk(options: Path) -> None:
    res = run("price", str(options), "--rejects", "/dev/full")
    assert one_line(res) == "error: --rejects /dev/full: No space left on device"
    with open("/dev/full", "w") as full:
        res = run("price", str(options), stdout=full)
    assert one_line(res) == "error: No space left on device"


def test_a_table_on_a_full_disk(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        sizes = ("--accounts", "5", "--members", "2", "--series", "10", "--positions", "20")
        res = run("generate-book", str(tmp_path / "b"), *sizes, stdout=full)
    assert one_line(res) == "error: No space left on device"


@pytest.mark.parametrize("command", ["price", "margin", "simm"])
def test_a_folder_given_for_an_output_file(tmp_path: Path, options: Path, command: str) -> None:
    args = {
        "price": [str(options)],
        "margin": [str(tmp_path)],
        "simm": [str(options), "--version", "2.5"],
    }[command]
    res = run(command, *args, "--rejects", str(tmp_path))
    expected = MSG_OUTPUT_IS_FOLDER.format(option="--rejects", path=tmp_path)
    assert one_line(res) == f"error: {expected}"  # before any work is done


def test_a_file_too_large(tmp_path: Path) -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    out = tmp_path / "book"
    res = subprocess.run(
        [str(EXE), "generate-book", str(out), "--accounts", "5", "--members", "2"],
        capture_output=True, text=True, timeout=600, check=False, preexec_fn=limit,
    )  # fmt: skip
    line = one_line(res)
    assert line.startswith(f"error: {out}")
    assert line.endswith("File too large")


def test_a_read_only_folder(read_only: Path) -> None:
    res = run("generate-book", str(read_only / "book"), prefix=without_override())
    assert one_line(res) == f"error: {read_only / 'book'}: Permission denied"


def test_the_demo_refuses_a_file_and_a_folder_it_cannot_clear(
    tmp_path: Path, read_only: Path
) -> None:
    res = run("demo", "--dir", "/dev/null")
    assert one_line(res) == "error: --dir /dev/null: is not a folder"
    read_only.chmod(0o755)
    old = read_only / "stream" / "log" / "segment"
    old.parent.mkdir(parents=True)
    old.write_text("yesterday")
    read_only.chmod(0o555)
    res = run("demo", "--dir", str(read_only), "--trades", "10", prefix=without_override())
    assert one_line(res) == "error: " + MSG_CANNOT_CLEAR.format(
        path=read_only / "stream", reason="Permission denied"
    )
    assert old.read_text() == "yesterday"  # all or nothing: the earlier run is as it was


def test_a_read_only_sqlite_database(tmp_path: Path, read_only: Path) -> None:
    res = run("users", "list", "--dir", str(tmp_path), "--db", f"sqlite:///{tmp_path}/m.db")
    assert res.returncode == 0, res.stderr
    (tmp_path / "m.db").chmod(0o444)
    add = ("users", "add", "bob", "--roles", "auditor", "--dir", str(tmp_path))
    res = run(*add, "--db", f"sqlite:///{tmp_path}/m.db", prefix=without_override())
    assert one_line(res) == (
        f"error: the database sqlite:///{tmp_path}/m.db: attempt to write a readonly database"
    )
    (tmp_path / "m.db").chmod(0o644)
    read_only.chmod(0o755)
    shutil.copy(tmp_path / "m.db", read_only / "m.db")
    read_only.chmod(0o555)
    res = run(*add, "--db", f"sqlite:///{read_only}/m.db", prefix=without_override())
    line = one_line(res)
    assert line.startswith(f"error: the database sqlite:///{read_only}/m.db: ")


def test_a_postgresql_user_without_write_rights(tmp_path: Path) -> None:
    import psycopg

    dsn = postgres_or_skip()
    name = f"mf_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        admin.execute(f"CREATE ROLE {name} LOGIN")
    base = dsn.rsplit("/", 1)[0]
    try:
        owner_url = f"{base}/{name}"
        res = run("users", "list", "--dir", str(tmp_path), "--db", owner_url)
        assert res.returncode == 0, res.stderr
        with psycopg.connect(owner_url, autocommit=True) as owner:
            owner.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name}")
        reader = owner_url.replace("://postgres@", f"://{name}@")
        res = run("users", "add", "bob", "--roles", "auditor", "--dir", str(tmp_path), "--db",
                  reader)  # fmt: skip
        line = one_line(res)
        assert line.startswith(f"error: the database postgresql+psycopg://{name}@")
        assert "permission denied" in line
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {name}")


BUG = """
import sys
from marginflow.cli import app as cli

@cli.app.command("boom")
def boom() -> None:
    raise RuntimeError("a bug\\nwith a second line")

sys.argv = ["marginflow", *sys.argv[1:]]
cli.main()
"""


def test_a_bug_is_one_line_and_its_traceback_is_on_request() -> None:
    res = subprocess.run(
        [sys.executable, "-c", BUG, "boom"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert one_line(res, 70) == (
        "error: internal error (RuntimeError: a bug); rerun with --debug (or "
        "MARGINFLOW_DEBUG=1) for the traceback"
    )
    for env, args in (({"MARGINFLOW_DEBUG": "1"}, []), ({}, ["--debug"])):
        res = subprocess.run(
            [sys.executable, "-c", BUG, *args, "boom"],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, **env},
        )  # fmt: skip
        assert res.returncode == 1
        assert "Traceback" in res.stderr
        assert "RuntimeError: a bug" in res.stderr
