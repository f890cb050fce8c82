"""``marginflow log``: check an embedded log's files, and repair them when asked.

* ``log verify --log DIR [--state DIR ...]``: reads every segment of every topic and
  partition batch by batch, every index, durable mark, ``meta.json`` and offsets file, and
  the snapshots under each ``--state`` folder. Exit 0 when nothing is damaged (a torn tail,
  never acknowledged, is listed but is no damage), 2 when something is.
* ``log repair --log DIR --truncate-after-last-good``: truncates each damaged partition to
  its last good batch, keeps what it drops under ``DIR/quarantine/``, and prints it (file,
  offsets, bytes). Stop every process using the log first. Nothing repairs by itself:
  readers and writers refuse damage until this is run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from marginflow.cli.output import EXIT_BAD_INPUT, fail, print_json, table
from marginflow.core.errors import MarginflowError

log = typer.Typer(
    help="Check the embedded log's files (verify), and repair them on request (repair).",
    no_args_is_help=True,
)

LogOpt = Annotated[Path, typer.Option("--log", help="the embedded log's directory")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]


def register(app: typer.Typer) -> None:
    app.add_typer(log, name="log")


@log.command("verify")
def verify_command(
    log_dir: LogOpt,
    state: Annotated[
        list[Path] | None,
        typer.Option("--state", help="a folder of snapshots to check too (repeatable)"),
    ] = None,
    as_json: JsonOpt = False,
    all_files: Annotated[
        bool, typer.Option("--all", help="list every file, not only those with findings")
    ] = False,
) -> None:
    """Check every file of the log (and snapshots); exit 2 if anything is damaged."""
    from marginflow.stream.log.integrity import verify

    try:
        findings = verify(log_dir, state or [])
    except (MarginflowError, OSError) as exc:
        fail(str(exc))
    damaged = [f for f in findings if f.status == "damaged"]
    if as_json:
        print_json({"damaged": len(damaged), "files": [f.to_json() for f in findings]})
    else:
        shown = findings if all_files else [f for f in findings if f.status != "ok"]
        rows = [
            [f.path, f.kind, f.status, "" if f.position is None else f.position,
             "" if f.offset is None else f.offset, f.detail]
            for f in shown
        ]  # fmt: skip
        title = f"{log_dir}: {len(findings)} files checked, {len(damaged)} damaged"
        if rows:
            table(title, ["file", "kind", "status", "byte", "offset", "detail"], rows)
        else:
            typer.echo(title)
        if damaged:
            typer.echo(
                f"repair: stop every process using the log, then "
                f"`marginflow log repair --log {log_dir} --truncate-after-last-good`"
            )
    if damaged:
        raise typer.Exit(EXIT_BAD_INPUT)


@log.command("repair")
def repair_command(
    log_dir: LogOpt,
    truncate: Annotated[
        bool,
        typer.Option(
            "--truncate-after-last-good",
            help="truncate each damaged partition to its last good batch (required)",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Truncate damaged partitions to their last good batch; keep what is dropped."""
    from marginflow.stream.log.integrity import repair

    if not truncate:
        fail("repair drops data: pass --truncate-after-last-good to say so")
    try:
        changes = repair(log_dir)
    except (MarginflowError, OSError) as exc:
        fail(str(exc))
    if as_json:
        print_json({"changes": [c.to_json() for c in changes]})
        return
    rows = [
        [c.path, c.action,
         "" if c.first_offset is None else c.first_offset,
         "" if c.last_offset is None else c.last_offset, c.bytes, c.kept_in]
        for c in changes
    ]  # fmt: skip
    if not changes:
        typer.echo(f"{log_dir}: nothing damaged, nothing changed")
        return
    table(
        f"{log_dir}: {len(changes)} files changed",
        ["file", "action", "first offset", "last offset", "bytes", "kept in"],
        rows,
    )
