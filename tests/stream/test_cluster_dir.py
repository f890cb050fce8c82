"""``cluster up`` on a used directory: a resume on the embedded log it kept goes on where the
log left (positions and margins reconcile with a batch recompute); a directory that cannot
resume is refused in one line naming it and ``--fresh``; ``--fresh`` clears the old state
all or nothing; a new run refuses a database that holds another run's results."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from marginflow.app.reproduce import reproduce_sample
from marginflow.core.errors import ConfigurationError
from marginflow.engine.settings import MarginSettings
from marginflow.io.source import read_json
from marginflow.store import Database
from marginflow.stream import cluster_dir as cdir
from marginflow.stream.cluster import read_state, status
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.reconcile import check_margins, check_positions
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.snapshots import FileSnapshotStore, Snapshot
from marginflow.stream.topics import Topology
from marginflow.stream.worker import BROADCAST_KEY
from tests.stream.cluster_support import SMALL, cli, every_pid, none_alive, settled, wait_for

TOPOLOGY = Topology(partitions=2)


def up(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("cluster", "up", "--dir", str(directory), *args)


def down(directory: Path) -> None:
    pids = every_pid(read_state(directory))
    done = cli("cluster", "down", "--dir", str(directory))
    assert done.returncode == 0, done.stderr
    assert none_alive(pids)


def refused(result: subprocess.CompletedProcess[str], directory: Path, reason: str) -> None:
    """Exit status 2 and one line naming the directory, the reason and the way out."""
    assert result.returncode == 2, result.stdout + result.stderr
    line = " ".join(result.stderr.split())  # the terminal wraps it; the message is one line
    assert line.startswith(f"error: {directory} holds an earlier cluster's state"), line
    assert reason in line
    assert line.endswith("pass --fresh to start over, or choose another --dir"), line
    assert "Traceback" not in result.stderr
    assert not (directory / "cluster.json").exists()  # nothing was started


@pytest.mark.slow
def test_the_embedded_log_resumes_where_it_left(tmp_path: Path) -> None:
    directory = (tmp_path / "cluster").resolve()
    assert up(directory, *SMALL).returncode == 0
    try:
        wait_for(lambda: settled(directory), "the first day to settle")
        first = Database(f"sqlite:///{directory / 'margins.db'}")
        before = first.account_margins()
        first.close()
    finally:
        down(directory)
    again = up(directory, *SMALL)
    assert again.returncode == 0, again.stderr
    try:
        assert "resumed" in again.stderr
        roles = [p["role"] for p in status(directory)["processes"]]
        assert "loadgen" not in roles  # its day is on the log already
        # more trades after the resume, from a process of their own
        subprocess.run(
            [sys.executable, "-m", "marginflow.sim.loadgen_main",
             "--log", f"embedded://{directory / 'log'}", "--partitions", "2",
             "--book", str(directory / "book"), "--trades", "500", "--rate", "0",
             "--no-sod", "--crif-portfolios", "0", "--seed", "11"],
            check=True, capture_output=True,
        )  # fmt: skip
        wait_for(lambda: settled(directory), "the extra trades to settle")
    finally:
        down(directory)
    log = EmbeddedLog(directory / "log")
    db = Database(f"sqlite:///{directory / 'margins.db'}")
    setup, _ = MarginSetup.from_folder(
        directory / "book", MarginSettings.from_json(read_json(directory / "margin.json"))
    )
    try:
        assert check_positions(log, TOPOLOGY).ok
        report = check_margins(log, TOPOLOGY, setup, db)
        assert report.ok, report.mismatches[:5]
        after = db.account_margins()
        # new versions landed
        assert any(after[a].position_version > before[a].position_version for a in before)
        # after down, with the log closed: stored margins picked at random reproduce
        reproduced = reproduce_sample(db, 15, seed=2)
        assert len(reproduced) == 15
        assert [r.differences for r in reproduced if not r.ok] == []
    finally:
        db.close()
        log.close()


@pytest.mark.slow
def test_a_directory_that_cannot_resume_is_refused_and_fresh_clears_it(tmp_path: Path) -> None:
    directory = (tmp_path / "cluster").resolve()
    assert up(directory, *SMALL).returncode == 0
    try:
        busy = up(directory, *SMALL)
        assert busy.returncode == 2
        assert "a cluster is already up in" in busy.stderr
        wait_for(lambda: settled(directory), "the day to settle")
    finally:
        down(directory)
    no_broker = [a for a in SMALL if a not in ("--log", "embedded")]
    refused(up(directory, *no_broker), directory, "ran with log embedded, not broker")
    refused(up(directory, *SMALL, "--accounts", "21"), directory, "ran with generated book")
    refused(up(directory, *SMALL, "--partitions", "3"), directory, "ran with partitions 2, not 3")
    (directory / "log").rename(tmp_path / "log-aside")
    refused(up(directory, *SMALL), directory, f"its embedded log {directory / 'log'} is missing")

    # another directory may not take over this one's database: its results would hide
    other_db = tmp_path / "other.db"
    src, dst = sqlite3.connect(directory / "margins.db"), sqlite3.connect(other_db)
    with closing(src), closing(dst):
        src.backup(dst)  # the rows in the write-ahead log too
    taken = up(tmp_path / "other", *SMALL, "--db", f"sqlite:///{other_db}")
    if taken.returncode == 0:
        down(tmp_path / "other")
    assert taken.returncode == 2
    assert "already holds results of another run" in " ".join(taken.stderr.split())

    (directory / "state" / "old-marker").write_text("from the earlier run")
    with closing(sqlite3.connect(directory / "margins.db")) as con:
        con.execute("CREATE TABLE old_marker (x)")
    fresh = up(directory, *SMALL, "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    try:
        assert "--fresh: removed" in fresh.stderr
        assert not (directory / "state" / "old-marker").exists()
        assert not list(directory.glob(".fresh-*"))
        with closing(sqlite3.connect(directory / "margins.db")) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        assert "old_marker" not in tables
    finally:
        down(directory)


def test_fresh_refuses_rather_than_half_delete(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    for name in ("state", "log", "logs"):
        (directory / name).mkdir(parents=True)
        (directory / name / "x").write_text(name)
    (directory / "margin.json").write_text("{}")
    (directory / "run.json").write_text("not json")
    # the last item cannot be moved: the ones moved before it must come back
    locked = _lock(directory / "margin.json")
    try:
        result = up(directory, *SMALL, "--fresh")
    finally:
        locked()
    assert result.returncode == 2
    assert "nothing was removed" in result.stderr
    for name in ("state", "log", "logs"):
        assert (directory / name / "x").read_text() == name
    assert (directory / "run.json").read_text() == "not json"
    assert not list(directory.glob(".fresh-*"))


def _lock(path: Path) -> Callable[[], object]:
    """Make ``path`` impossible to rename (immutable for root, else its folder read-only);
    returns the undo."""
    if os.geteuid() == 0:
        if (
            shutil.which("chattr") is None
            or subprocess.run(
                ["chattr", "+i", str(path)], capture_output=True, check=False
            ).returncode
        ):
            pytest.skip("root cannot be stopped from renaming here (no chattr +i)")
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    path.parent.chmod(0o555)
    return lambda: path.parent.chmod(0o755)


def _log_record(directory: Path) -> dict[str, object]:
    """A run record of an embedded log in ``directory``, with its topics created."""
    log = EmbeddedLog(directory / "log")
    log.create_topics(TOPOLOGY.all())
    log.close()
    (directory / "book").mkdir()
    return cdir.run_record(
        log="embedded", log_url=f"embedded://{directory / 'log'}", partitions=2, prefix="mf.",
        db=f"sqlite:///{directory / 'margins.db'}", book=directory / "book", book_spec=None,
        margin={},
    )  # fmt: skip


def test_a_snapshot_beyond_the_end_of_the_log_is_refused(tmp_path: Path) -> None:
    record = _log_record(tmp_path)
    store = FileSnapshotStore(tmp_path / "state")
    store.save("mf.aggregator", ("mf.margins", 1), Snapshot(0, b""))
    cdir.check_log(tmp_path, record)  # consistent: nothing read yet
    store.save("mf.aggregator", ("mf.margins", 1), Snapshot(5_000, b""))
    with pytest.raises(ConfigurationError, match=r"offset 5000 of mf\.margins-1, which ends at 0"):
        cdir.check_log(tmp_path, record)


def test_a_broadcast_snapshot_beyond_the_end_of_the_log_is_refused(tmp_path: Path) -> None:
    import msgspec

    record = _log_record(tmp_path)
    data = msgspec.msgpack.encode([[["mf.market", 0, 70]], b""])
    FileSnapshotStore(tmp_path / "state").save(
        "mf.risk-calculator", BROADCAST_KEY, Snapshot(0, data)
    )
    with pytest.raises(ConfigurationError, match=r"at offset 70 of mf\.market-0"):
        cdir.check_log(tmp_path, record)


def test_a_damaged_snapshot_or_a_missing_database_is_refused(tmp_path: Path) -> None:
    record = _log_record(tmp_path)
    store = FileSnapshotStore(tmp_path / "state")
    store.save("mf.sink", ("mf.margins", 0), Snapshot(0, b"state"))
    with pytest.raises(ConfigurationError, match=r"its database .*margins\.db is missing"):
        cdir.check_log(tmp_path, record)
    path = tmp_path / "state" / "mf.sink" / "mf.margins-0.snap"
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    with pytest.raises(ConfigurationError, match="damaged"):
        cdir.check_log(tmp_path, record)


def test_a_changed_book_is_refused(tmp_path: Path) -> None:
    record = _log_record(tmp_path)
    (tmp_path / "book" / "positions.csv").write_text("account,instrument,quantity\n")
    changed = {**record, "book_fingerprint": cdir.book_fingerprint(tmp_path / "book")}
    with pytest.raises(ConfigurationError, match=r"its book .* changed or is gone since"):
        cdir.check_resume(tmp_path, record, changed)
