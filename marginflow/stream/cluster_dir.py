"""A cluster directory between runs: what the last ``cluster up`` left there, whether a new
one may resume it, and clearing it (``cluster up --fresh``).

A directory holds durable state that only makes sense against the log it was read from:
snapshots (each with the offset of its partition it reflects), committed offsets, the
database of results (upserted over lower versions only) and, with the embedded log, the log
itself. Mixing that state with another log is silently wrong: a snapshot at offset 5,000 on
a log that holds 300 records skips the first 5,000 records the new log ever gets, and an
old result hides every new result of the same key. So a used directory is either resumed
on the log it was built from, checked to be consistent with it, or refused.

``run.json`` records what a run depends on (:func:`run_record`): the log, the partitions
and topic prefix, the database, the book (path and content fingerprint) and the margin
settings. It outlives ``cluster down``; a resume must match it field by field.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginflow.core.errors import ConfigurationError, DamagedFileError, MarginflowError
from marginflow.stream.durable import atomic_write, checked_json, load_checked_json
from marginflow.stream.log.base import LogError
from marginflow.stream.snapshots import FileSnapshotStore, SnapshotError
from marginflow.stream.topics import Topology
from marginflow.stream.worker import BROADCAST_KEY, broadcast_offsets

RUN_FILE = "run.json"
DB_FILE = "margins.db"
STATE_DIR = "state"
LOG_DIR = "log"
LOGS_DIR = "logs"
BOOK_DIR = "book"
SETTINGS_FILE = "margin.json"
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
_TRASH_PREFIX = ".fresh-"
# Files of the cluster's current or last processes: cleared with the rest by --fresh.
_PROCESS_FILES = ("cluster.json", "supervisor.json")


def refusal(directory: Path, reason: str) -> ConfigurationError:
    """The one-line refusal of ``cluster up`` on a directory it cannot resume."""
    return ConfigurationError(
        f"{directory} holds an earlier cluster's state and {reason}: pass --fresh to start "
        "over, or choose another --dir"
    )


def sqlite_path(db: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or None for any other database."""
    if not db.startswith("sqlite:///"):
        return None
    return Path(db.removeprefix("sqlite:///"))


def book_fingerprint(folder: Path) -> str:
    """SHA-256 of every file under ``folder`` (relative names and contents), or "" if there
    is no such folder: a calculator's snapshot is only valid against the same book."""
    if not folder.is_dir():
        return ""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def run_record(
    *,
    log: str,
    log_url: str,
    partitions: int,
    prefix: str,
    db: str,
    book: Path,
    book_spec: dict[str, int] | None,
    margin: dict[str, Any],
) -> dict[str, Any]:
    """What a run's durable state depends on; a resume must match it field by field.

    ``log`` is the kind (``broker``, ``embedded``) or the Kafka URL given, ``log_url`` the
    log the workers read; ``book_spec`` the sizes of a generated book (None: the user's)."""
    record = {
        "log": log,
        "log_url": log_url,
        "partitions": partitions,
        "prefix": prefix,
        "db": db,
        "book": str(book),
        "book_spec": book_spec,
        "book_fingerprint": book_fingerprint(book),
        "margin": margin,
    }
    out: dict[str, Any] = json.loads(json.dumps(record))  # the form it has read back
    return out


def read_run(directory: Path) -> dict[str, Any] | None:
    """The run record of ``directory`` (None: there is none); a damaged one is refused."""
    path = directory / RUN_FILE
    try:
        record: dict[str, Any] = load_checked_json(path, path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise refusal(directory, f"its {RUN_FILE} cannot be read ({exc})") from None
    except DamagedFileError as exc:
        raise refusal(directory, f"its {exc}") from None
    if not isinstance(record, dict) or not {"log", "log_url", "book_fingerprint"} <= set(record):
        raise refusal(directory, f"its {RUN_FILE} is not a run record")
    return record


def write_run(directory: Path, record: dict[str, Any]) -> None:
    """Replace the run record atomically, checksummed: a resume decides on it."""
    atomic_write(directory / RUN_FILE, [checked_json(record)], sync=True, error=ConfigurationError)


def _non_empty(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def used(directory: Path) -> list[str]:
    """The names of the state a run left in ``directory`` (empty: a new directory). The
    generated book and the settings file are inputs, rewritten by every run: not state."""
    names = [RUN_FILE, *_PROCESS_FILES, DB_FILE]
    present = [n for n in names if (directory / n).exists()]
    present += [n for n in (STATE_DIR, LOG_DIR, LOGS_DIR) if _non_empty(directory / n)]
    return present


# -- resume ---------------------------------------------------------------------------------
def check_resume(directory: Path, record: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Refuse unless the run recorded in ``directory`` can go on as ``new`` (a
    :func:`run_record`) on the log it was built from."""
    if record is None:
        raise refusal(directory, f"no {RUN_FILE} says which log it was built from")
    if record["log"] == "broker":
        raise refusal(directory, "the broker it ran on kept its log in memory, which is gone since")
    for key, what in (
        ("log", "log"),
        ("partitions", "partitions"),
        ("prefix", "topic prefix"),
        ("db", "database"),
        ("book", "book"),
        ("book_spec", "generated book"),
        ("margin", "margin settings"),
    ):
        if record.get(key) != new[key]:
            raise refusal(
                directory, f"ran with {what} {_show(record.get(key))}, not {_show(new[key])}"
            )
    if record["book_fingerprint"] != new["book_fingerprint"]:
        raise refusal(directory, f"its book {record['book']} changed or is gone since")


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def check_log(directory: Path, record: dict[str, Any]) -> None:
    """Refuse unless the directory's snapshots, committed offsets and database are
    consistent with the log the run recorded: every topic there with its partitions, no
    snapshot or commit beyond the end of its partition, and the database the sink's
    snapshots say holds results."""
    from marginflow.stream.log import open_log

    url = record["log_url"]
    if url.startswith("embedded://"):
        path = Path(url.removeprefix("embedded://"))
        if not (path / "topics").is_dir():
            raise refusal(directory, f"its embedded log {path} is missing")
    topology = Topology(partitions=record["partitions"], prefix=record["prefix"])
    try:
        log = open_log(url)
    except MarginflowError as exc:
        raise refusal(directory, f"its log {url} cannot be opened ({exc})") from None
    try:
        _check_topics(directory, log, topology)
        _check_snapshots(directory, log, topology)
    except (LogError, OSError) as exc:
        raise refusal(directory, f"its log {url} cannot be read ({exc})") from None
    finally:
        log.close()
    db_file = sqlite_path(record["db"])
    sink = directory / STATE_DIR / f"{record['prefix']}sink"
    if db_file is not None and not db_file.exists() and _non_empty(sink):
        raise refusal(directory, f"its database {db_file} is missing")


def _check_topics(directory: Path, log: Any, topology: Topology) -> None:
    for spec in topology.all():
        try:
            have = log.partitions(spec.name)
        except LogError:
            raise refusal(directory, f"its log has no topic {spec.name}") from None
        if have != spec.partitions:
            raise refusal(
                directory, f"its log has {have} partitions of {spec.name}, not {spec.partitions}"
            )


def _check_snapshots(directory: Path, log: Any, topology: Topology) -> None:
    state = directory / STATE_DIR
    store = FileSnapshotStore(state)
    topics = {spec.name for spec in topology.all()}
    groups = [g for g in state.iterdir() if g.is_dir()] if state.is_dir() else []
    for group in groups:
        for snap in sorted(group.glob("*.snap")):
            topic, _, part = snap.stem.rpartition("-")
            tp = (topic, int(part)) if part.isdigit() else ("", -1)
            if tp != BROADCAST_KEY and topic not in topics:
                raise refusal(directory, f"snapshot {snap} is of no topic of its log")
            try:
                snapshot = store.load(group.name, tp)
            except SnapshotError as exc:
                raise refusal(directory, f"snapshot {exc}") from None
            if snapshot is None:
                continue
            if tp == BROADCAST_KEY:  # a worker-wide state, with an offset per broadcast
                offsets = broadcast_offsets(snapshot.data)
            else:
                offsets = {tp: snapshot.offset}
            for (t, p), offset in offsets.items():
                if t not in topics:
                    raise refusal(directory, f"snapshot {snap} reads {t}, no topic of its log")
                end = log.end_offsets([(t, p)])[(t, p)]
                if offset > end:
                    raise refusal(
                        directory,
                        f"snapshot {snap} is at offset {offset} of {t}-{p}, which ends at {end}",
                    )
        tps = [(spec.name, p) for spec in topology.all() for p in range(spec.partitions)]
        ends = log.end_offsets(tps)
        for tp, offset in log.committed(group.name, tps).items():
            if offset is not None and offset > ends[tp]:
                raise refusal(
                    directory,
                    f"group {group.name} committed offset {offset} of {tp[0]}-{tp[1]}, "
                    f"which ends at {ends[tp]}",
                )


# -- a new run ------------------------------------------------------------------------------
def check_database_empty(db: str, prefix: str) -> None:
    """Refuse a new run's database if it holds results (of another run: they would hide the
    new run's results, see :meth:`marginflow.store.Database.is_empty`)."""
    from marginflow.store import Database

    path = sqlite_path(db)
    if path is not None and not path.exists():
        return
    try:
        database = Database(db, prefix=prefix)
    except MarginflowError:
        raise
    except Exception as exc:  # the driver's own errors (a server down, a locked file)
        raise ConfigurationError(f"cannot open the database {db}: {exc}") from None
    try:
        empty = database.is_empty()
    finally:
        database.close()
    if not empty:
        raise ConfigurationError(
            f"the database {db} already holds results of another run (its {prefix} tables): "
            "choose another --db, or empty them"
        )


@dataclass(frozen=True, slots=True)
class Cleared:
    """What :func:`clear` removed, and what it moved aside but could not delete."""

    removed: tuple[str, ...]
    leftover: Path | None


def fresh_items(directory: Path, record: dict[str, Any] | None) -> list[Path]:
    """Everything ``--fresh`` removes from ``directory``: the state of :func:`used`, the
    settings file, the earlier run's database if it lies in the directory, the book if that
    run generated it there, and what an earlier ``--fresh`` could not delete."""
    names = [RUN_FILE, *_PROCESS_FILES, STATE_DIR, LOG_DIR, LOGS_DIR, SETTINGS_FILE]
    items = [directory / n for n in names]
    dbs = [directory / DB_FILE]
    record = record if isinstance(record, dict) else {}  # a damaged record names nothing
    old_db = sqlite_path(str(record.get("db", "")))
    if old_db is not None and old_db.parent == directory:
        dbs.append(old_db)
    items += [db.with_name(db.name + s) for db in dbs for s in ("", *_SQLITE_SIDECARS)]
    if record.get("book_spec") is not None and record.get("book") == str(directory / BOOK_DIR):
        items.append(directory / BOOK_DIR)
    items += sorted(directory.glob(f"{_TRASH_PREFIX}*"))
    return [p for p in dict.fromkeys(items) if p.exists() or p.is_symlink()]


def clear(directory: Path, record: dict[str, Any] | None) -> Cleared:
    """Remove :func:`fresh_items`, all or nothing: each is first renamed into a trash folder
    in the directory (atomic, and undone if any rename fails, so a refusal leaves the
    directory as it was); only then is the trash deleted. A trash folder that cannot be
    deleted holds nothing a run reads; the next ``--fresh`` deletes it."""
    items = fresh_items(directory, record)
    trash = directory / f"{_TRASH_PREFIX}{uuid.uuid4().hex[:8]}"
    try:
        trash.mkdir()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot clear {directory}: {exc.strerror or exc}; nothing was removed"
        ) from None
    moved: list[Path] = []
    for item in items:
        try:
            os.rename(item, trash / item.name)
        except OSError as exc:
            for back in reversed(moved):
                os.rename(trash / back.name, back)
            trash.rmdir()
            raise ConfigurationError(
                f"cannot clear {item}: {exc.strerror or exc}; nothing was removed"
            ) from None
        moved.append(item)
    shutil.rmtree(trash, ignore_errors=True)
    return Cleared(tuple(p.name for p in moved), trash if trash.exists() else None)
