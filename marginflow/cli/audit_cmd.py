"""``marginflow audit verify`` and ``marginflow audit show``: check the service's audit trail
and read its newest entries, from the operator's shell.

``verify`` walks the whole chain with the service's audit key and names every entry that was
altered, removed or reordered (:meth:`marginflow.store.audit_log.AuditLog.verify`). Removing
the newest entries leaves a chain that is still whole, so ``--anchor FILE`` keeps the head
(sequence number and seal) of the last good check outside the database: the next check
fails if that entry is gone or different, and a good check moves the anchor to the new head.

Exit status: 0 the trail is intact, 1 it is broken (each problem is named), 2 bad input (no
store, no audit key, an unreadable anchor). Nothing is created: a missing audit key is an
error, never replaced by a fresh one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from marginflow.cli.output import fail, print_json, say, table
from marginflow.cli.trace_cmd import DbOpt, JsonOpt, PrefixOpt, open_store

EXIT_BROKEN = 1
DEFAULT_DIR = Path("var/platform")

audit_app = typer.Typer(help="The service's audit trail: verify the chain, show entries.")
DirOpt = Annotated[
    Path,
    typer.Option(
        "--dir",
        help="the platform directory (its store, and its service secrets in service/), "
        "or the service directory itself (holding secrets/)",
    ),
]
AnchorOpt = Annotated[
    Path | None,
    typer.Option(
        "--anchor",
        help="file keeping the head of the last good check (read if present, then updated)",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


def service_directory(directory: Path) -> Path:
    """The service directory of ``directory``: itself if it holds the secrets, else its
    ``service/`` folder (a platform directory)."""
    return directory if (directory / "secrets").is_dir() else directory / "service"


def _store_directory(directory: Path) -> Path:
    """Where the store of ``directory`` is looked for: a service directory's store is in
    the platform directory above it."""
    return directory.parent if (directory / "secrets").is_dir() else directory


def read_anchor(path: Path) -> tuple[int, str] | None:
    """The (seq, seal) kept in ``path``; None if the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        fail(f"--anchor {path}: cannot be read: {exc.strerror or exc}")
    try:
        data = json.loads(text)
        seq, seal = data["seq"], data["hash"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("seq")
        if not isinstance(seal, str) or len(seal) != 64:
            raise ValueError("hash")
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"--anchor {path}: not an anchor (want {{seq, hash}}): {exc}")
    return seq, seal


def write_anchor(path: Path, seq: int, seal: str) -> None:
    """Replace ``path`` with the head ``(seq, seal)``, atomically (a crash leaves the old
    anchor or the new, never half of one)."""
    document = {
        "seq": seq,
        "hash": seal,
        "verified": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(document, indent=2) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        fail(f"--anchor {path}: cannot be written: {exc.strerror or exc}")


def _audit_log(directory: Path, db: str | None, prefix: str, *, keyed: bool) -> Any:
    from marginflow.core.errors import MarginflowError
    from marginflow.service.secrets_store import load_audit_key
    from marginflow.store.audit_log import AuditLog

    key = b""
    if keyed:
        try:
            key = load_audit_key(service_directory(directory))
        except MarginflowError as exc:
            fail(f"the audit key: {exc}")
    store = open_store(_store_directory(directory), db, prefix)
    return AuditLog(store, key)


def _read(what: Any) -> Any:
    import sqlalchemy as sa

    try:
        return what()
    except sa.exc.SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        first = str(orig if orig is not None else exc).strip().splitlines()[0]
        fail(f"the audit trail could not be read: {first}")


@audit_app.command("verify")
def verify_command(
    directory: DirOpt = DEFAULT_DIR,
    db: DbOpt = None,
    prefix: PrefixOpt = "mf_",
    anchor: AnchorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Walk the audit chain and name every altered, removed or reordered entry."""
    kept = read_anchor(anchor) if anchor is not None else None
    log = _audit_log(directory, db, prefix, keyed=True)
    try:
        result = _read(lambda: log.verify(anchor=kept))
    finally:
        log.db.close()
    moved = False
    if result.ok and anchor is not None:
        write_anchor(anchor, result.head_seq, result.head_hash)
        moved = True
    problems = [{"seq": p.seq, "reason": p.reason} for p in result.problems]
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "entries": result.entries,
                "head": {"seq": result.head_seq, "hash": result.head_hash},
                "anchor": None if kept is None else {"seq": kept[0], "hash": kept[1]},
                "anchor_written": moved,
                "problems": problems,
            }
        )
    elif result.ok:
        against = "" if kept is None else f", anchor at entry {kept[0]} matches"
        say(
            f"audit trail intact: {result.entries} entries, head entry {result.head_seq} "
            f"sealed {result.head_hash[:16]}…{against}"
            + (f"; anchor moved to entry {result.head_seq}" if moved else "")
        )
    else:
        table(
            f"audit trail BROKEN: {len(problems)} problem(s) in {result.entries} entries",
            ["entry", "problem"],
            [[p["seq"], p["reason"]] for p in problems],
        )
    if not result.ok:
        raise typer.Exit(EXIT_BROKEN)


@audit_app.command("show")
def show_command(
    directory: DirOpt = DEFAULT_DIR,
    db: DbOpt = None,
    prefix: PrefixOpt = "mf_",
    limit: Annotated[int, typer.Option("--limit", min=1, help="the newest N entries")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The newest entries, newest first (user text shown literally)."""
    log = _audit_log(directory, db, prefix, keyed=False)
    try:
        rows = _read(lambda: log.entries(descending=True, limit=limit))
    finally:
        log.db.close()
    if as_json:
        print_json(
            [
                {
                    "seq": e.seq,
                    "time": _iso(e.time),
                    "actor": e.actor,
                    "action": e.action,
                    "outcome": e.outcome,
                    "subject": e.subject,
                    "member": e.member,
                    "security": e.security,
                    "request_id": e.request_id,
                    "client": e.client,
                    "detail": json.loads(e.detail),
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in rows
            ]
        )
        return
    table(
        f"audit trail: the newest {len(rows)} entries",
        ["seq", "time", "actor", "action", "outcome", "subject", "member", "client"],
        [
            [e.seq, _iso(e.time), e.actor, e.action, e.outcome, e.subject, e.member or "", e.client]
            for e in rows
        ],
    )


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).isoformat(timespec="milliseconds")
