"""``marginflow reproduce`` and ``marginflow explain``: a stored margin recomputed from the
store alone, and the change of a margin between two times split by cause.

The store is found by ``--db URL``, or from a platform directory (``--dir``: a cluster's,
whose ``cluster.json`` names its database, or a demo's); the broker and the log are not
needed.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from marginflow.cli.options import refuse_ignored
from marginflow.cli.output import fail, note, output_file, print_json, say, table
from marginflow.core.errors import MarginflowError

EXIT_DIFFERENT = 1
DEFAULT_DIR = Path(".marginflow/cluster")

DirOpt = Annotated[
    Path,
    typer.Option("--dir", help="platform directory: a cluster's (cluster up) or a demo's"),
]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="the store's URL (sqlite:///file.db or postgresql://...)"),
]
PrefixOpt = Annotated[str, typer.Option("--db-prefix", help="the store's table prefix")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce_command)
    app.command("explain")(explain_command)


def store_url(directory: Path, db: str | None) -> str:
    """The store of ``--db``, else of the platform in ``directory``."""
    if db:
        return db
    state = directory / "cluster.json"
    if state.is_file():
        try:
            return str(json.loads(state.read_text(encoding="utf-8"))["db"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(f"{state}: cannot read the cluster's database: {exc}")
    for candidate in (directory / "margins.db", directory / "stream" / "margins.db"):
        if candidate.is_file():
            return f"sqlite:///{candidate.resolve()}"
    fail(f"no store in {directory}: give the platform's --dir or --db URL")


def parse_time(text: str, option: str) -> int:
    """``text`` (ISO 8601, UTC when no offset is given; or ``now``) as UTC nanoseconds."""
    if text == "now":
        return time.time_ns()
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r}: not a time (ISO 8601, e.g. 2026-12-06T14:30:00Z)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def open_store(directory: Path, db: str | None, prefix: str) -> Any:
    """The store to read, opened without changing it (no file made, no migration run)."""
    import sqlalchemy as sa

    from marginflow.store import Database, revision
    from marginflow.store.database import HEAD

    url = store_url(directory, db)
    path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if path is not None and not path.is_file():
        fail(f"{path}: " + ("a folder, not a store file" if path.is_dir() else "no such file"))
    try:
        store = Database(url, prefix=prefix, upgrade=False)
        at = revision(store.engine, prefix)
    except MarginflowError as exc:
        fail(str(exc))
    except sa.exc.SQLAlchemyError as exc:  # unreachable server, not a database, no access
        fail(f"cannot open the store {url}: {_first_line(exc)}")
    if at != HEAD:
        store.close()
        what = "no marginflow store" if at is None else f"a store at revision {at}, not {HEAD}"
        fail(f"{url} holds {what} (table prefix {prefix!r}); open it with the platform once")
    return store


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


def _run(what: Any, *args: Any, **kw: Any) -> Any:
    """A use case on an open store: its one-line errors, and the database's, as CLI errors."""
    import sqlalchemy as sa

    try:
        return what(*args, **kw)
    except MarginflowError as exc:
        fail(str(exc))
    except sa.exc.SQLAlchemyError as exc:
        fail(f"the store could not be read: {_first_line(exc)}")


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).isoformat(timespec="milliseconds")


def reproduce_command(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="the account whose stored margin to check")],
    version: Annotated[
        int | None,
        typer.Option(help="the margin at this position version (trades offset)", min=0),
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="the margin in force at this time (ISO 8601, UTC)")
    ] = None,
    directory: DirOpt = DEFAULT_DIR,
    db: DbOpt = None,
    prefix: PrefixOpt = "mf_",
    as_json: JsonOpt = False,
) -> None:
    """Recompute a stored margin from the store alone and show it equal bit for bit, or
    exit 1 naming what differs."""
    from marginflow.app.reproduce import reproduce

    if version is not None and at is not None:
        fail("give --version or --at, not both")
    if db:
        refuse_ignored(ctx, ["directory"], because="--db")
    when = parse_time(at, "--at") if at is not None else None
    store = open_store(directory, db, prefix)
    try:
        result = _run(reproduce, store, account, version=version, at=when)
    finally:
        store.close()
    if as_json:
        print_json(result.to_json())
    else:
        s, r = result.stored, result.recomputed
        rows = [
            (name, getattr(s, name), getattr(r, name), "=" if getattr(s, name) == getattr(r, name)
             else "DIFFERS")
            for name in ("margin", "es", "var", "apc", "concentration")
            if getattr(s, name) is not None
        ]  # fmt: skip
        rows.append(("driver", s.driver, r.driver, "=" if s.driver == r.driver else "DIFFERS"))
        table(
            f"{account} ({s.member}): position version {s.position_version}, "
            f"market offset {s.market_offset}, {s.business_date}, computed {_when(s.event_time)}",
            ["", "stored", "recomputed", ""],
            rows,
        )
        say(
            f"inputs: {len(result.positions)} positions, {result.market_events} market events, "
            f"load {s.book_load[:12]}, settings {s.settings[:12]}; {result.seconds:.2f} s"
        )
        if result.ok:
            say("reproduced bit for bit", style="green")
        for line in result.differences:
            say("differs", line, style="red")
    if not result.ok:
        raise typer.Exit(EXIT_DIFFERENT)


def explain_command(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="an account or a member")],
    start: Annotated[str, typer.Option("--from", help="start time (ISO 8601, UTC)")],
    end: Annotated[str, typer.Option("--to", help="end time (ISO 8601, UTC, or now)")] = "now",
    chart: Annotated[
        Path | None, typer.Option(help="write the waterfalls as a chart (.png or .svg)")
    ] = None,
    directory: DirOpt = DEFAULT_DIR,
    db: DbOpt = None,
    prefix: PrefixOpt = "mf_",
    as_json: JsonOpt = False,
) -> None:
    """Split the change of a margin between two times into trades, market moves and
    risk-parameter changes, in that order and in the reverse order."""
    from marginflow.app.explain import explain
    from marginflow.app.waterfall import chart as draw

    if db:
        refuse_ignored(ctx, ["directory"], because="--db")
    output_file(chart, "--chart")
    if chart is not None and chart.suffix.lower() not in (".png", ".svg"):
        fail(f"--chart {chart}: the file name must end in .png or .svg")
    t1, t2 = parse_time(start, "--from"), parse_time(end, "--to")
    store = open_store(directory, db, prefix)
    try:
        result = _run(explain, store, subject, t1, t2)
    finally:
        store.close()
    if chart is not None:
        try:
            draw([result.forward, result.reverse], chart, title=f"{subject}: {start} → {end}")
        except OSError as exc:
            fail(f"--chart {chart}: {exc.strerror or exc}")
    if as_json:
        print_json(result.to_json())
        return
    for fall in (result.forward, result.reverse):
        rows: list[tuple[Any, ...]] = [("start", fall.start, "", "")]
        for step in fall.steps:
            share = step.change / fall.change if fall.change else 0.0
            rows.append((step.cause, step.after, step.change, f"{share:.1%}"))
        rows.append(("end", fall.end, fall.change, "100.0%" if fall.change else ""))
        table(
            f"{result.kind} {subject}: {_when(t1)} → {_when(t2)} ({' → '.join(fall.order)})",
            ["", "margin", "change", "share"],
            rows,
        )
    for line in result.differences:
        note(line, label="note")
    if chart is not None:
        say(f"chart: {chart}")
