"""``marginflow publish KIND FILE``: send a file of inputs to a running platform's log.

=============  ===========================================================================
``trades``     trades to replay (:mod:`marginflow.stream.sources`), ``--speed`` to pace them
``market``     market data to replay (spot, ATM vol, smile slope), ``--speed`` likewise
``positions``  a book folder's positions as start-of-day snapshots (before the day's trades)
``crif``       a CRIF file as one submission per portfolio (``PortfolioID`` column, or
               ``--portfolio``), by ``--party`` against ``--counterparty`` on
               ``--business-date``
``reference``  reference data in the book-folder formats (``members``, ``accounts``,
               ``instruments`` files): a folder holding any of them, or one of them;
               new members, accounts and listed series, on the market topic
``roll``       the date roll to a business date (``PATH`` is the ISO date): series expired
               by then leave the calculators' books
=============  ===========================================================================

The platform is found by its cluster directory (``--dir``, as ``cluster up`` made it) or by
``--log URL`` (``embedded:///path`` or ``kafka://host:port``) and ``--prefix``. Rows that
cannot be used are named (``file:line: field: reason``), kept with ``--rejects FILE``, the
rest is published, and the exit status is then 2.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from marginflow.cli.options import refuse_ignored
from marginflow.cli.output import (
    fail,
    output_file,
    print_json,
    report_failures,
    table,
    write_rejects,
)
from marginflow.core.errors import MSG_FILE_NO_HEADER, MarginflowError, RowFailure
from marginflow.io.csv_rows import numbered
from marginflow.io.source import check_header, read_input_text

KINDS = ("trades", "market", "positions", "crif", "reference", "roll")
REFERENCE_KINDS = ("members", "accounts", "instruments")


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_command)


def publish_command(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="trades, market, positions, crif, reference or roll")],
    path: Annotated[
        Path,
        typer.Argument(help="the file (a book folder for positions or reference; a date for roll)"),
    ],
    directory: Annotated[
        Path, typer.Option("--dir", help="cluster directory of the running platform")
    ] = Path(".marginflow/cluster"),
    log: Annotated[str | None, typer.Option(help="log URL instead of --dir's cluster")] = None,
    prefix: Annotated[str, typer.Option(help="topic prefix (with --log)")] = "mf.",
    partitions: Annotated[
        int, typer.Option(help="partitions of keyed topics (with --log)", min=1, max=10_000)
    ] = 4,
    speed: Annotated[
        float | None,
        typer.Option(help="replay at X times real time (default: at once)", min=0, max=1e6),
    ] = None,
    party: Annotated[str, typer.Option(help="crif: the submitting party")] = "",
    counterparty: Annotated[str, typer.Option(help="crif: the counterparty")] = "",
    portfolio: Annotated[str, typer.Option(help="crif: portfolio when no PortfolioID")] = "",
    business_date: Annotated[
        str, typer.Option(help="crif: business date (ISO; default today)")
    ] = "",
    rejects: Annotated[Path | None, typer.Option(help="write rejected rows here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Publish a file of trades, market data, start-of-day positions, a CRIF, reference
    data or a date roll."""
    from marginflow.stream.log import open_log

    if kind not in KINDS:
        fail(f"KIND must be one of {', '.join(KINDS)}, got {kind!r}")
    _refuse_ignored(ctx, kind, log)
    output_file(rejects, "--rejects")
    log_url, topology = _target(directory, log, prefix, partitions)
    try:
        events, failures, publish = _read(kind, path, party, counterparty, portfolio, business_date)
    except MarginflowError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    try:
        the_log = open_log(log_url)
    except MarginflowError as exc:
        fail(str(exc))
    t0 = time.monotonic()
    try:
        the_log.create_topics(topology.all())  # a no-op where they exist
        producer = the_log.producer()
        counts = publish(producer, topology, events, speed)
        producer.close()
    except MarginflowError as exc:
        fail(str(exc))
    finally:
        the_log.close()
    seconds = time.monotonic() - t0
    if rejects is not None:
        write_rejects(rejects, failures)
    if as_json:
        print_json({"kind": kind, "log": log_url, **counts, "rejected_rows": len(failures),
                    "seconds": seconds})  # fmt: skip
    else:
        table(
            f"published {path} to {log_url} ({seconds:.1f} s)",
            ("events", "count"),
            [*counts.items(), ("rejected rows", len(failures))],
        )
    if failures:
        report_failures(failures)
        raise typer.Exit(2)


def _refuse_ignored(ctx: typer.Context, kind: str, log: str | None) -> None:
    """The options that ``kind`` and the way the platform is found would ignore."""
    if kind not in ("trades", "market"):
        refuse_ignored(ctx, ["speed"], because=f"KIND {kind}")
    if kind != "crif":
        refuse_ignored(
            ctx, ["party", "counterparty", "portfolio", "business_date"], because=f"KIND {kind}"
        )
    if log is None:  # the cluster of --dir names its own prefix and partitions
        refuse_ignored(ctx, ["prefix", "partitions"], because="--dir (its cluster's own)")
    else:
        refuse_ignored(ctx, ["directory"], because="--log")


def _target(directory: Path, log: str | None, prefix: str, partitions: int) -> tuple[str, Any]:
    from marginflow.stream.topics import Topology

    if log is not None:
        return log, Topology(partitions=partitions, prefix=prefix)
    from marginflow.stream.cluster import read_state

    try:
        state = read_state(directory)
    except MarginflowError as exc:
        fail(f"{exc} (give --dir of a running cluster, or --log URL)")
    cfg = state["config"]
    return state["log"], Topology(partitions=int(cfg["partitions"]), prefix=str(cfg["prefix"]))


Publisher = Any


def _read(
    kind: str, path: Path, party: str, counterparty: str, portfolio: str, business_date: str
) -> tuple[list[Any], list[RowFailure], Publisher]:
    from marginflow.stream import publish as pub
    from marginflow.stream.sources import read_market, read_trades, replay

    if kind in ("trades", "market"):
        r = read_trades(path) if kind == "trades" else read_market(path)

        def send_replay(
            producer: Any, topology: Any, events: list[Any], speed: Any
        ) -> dict[str, int]:
            trades = events if kind == "trades" else []
            market = events if kind == "market" else []
            stats = replay(producer, topology, trades=trades, market=market, speed=speed)
            return {"trades": stats.trades, "market events": stats.market}

        return (r.trades if kind == "trades" else r.market), r.failures, send_replay
    if kind in ("reference", "roll"):
        market = _reference(path) if kind == "reference" else _roll(str(path))

        def send_market(
            producer: Any, topology: Any, events: list[Any], speed: Any
        ) -> dict[str, int]:
            counts: dict[str, int] = {}
            for e in events:
                name = f"{type(e).__struct_config__.tag} events"
                counts[name] = counts.get(name, 0) + 1
            pub.publish_market(producer, topology, events)
            return counts

        return market[0], market[1], send_market
    if kind == "positions":
        from marginflow.io.book import load_book

        loaded = load_book(path)
        events = list(pub.sod_positions(loaded.book))

        def send_sod(producer: Any, topology: Any, events: list[Any], speed: Any) -> dict[str, int]:
            return {"start-of-day positions": pub.publish_trades(producer, topology, events)}

        return events, list(loaded.failures), send_sod
    subs, failures = _crif_submissions(path, party, counterparty, portfolio, business_date)

    def send_crif(producer: Any, topology: Any, events: list[Any], speed: Any) -> dict[str, int]:
        return {"CRIF submissions": pub.publish_crif(producer, topology, events)}

    return subs, failures, send_crif


def _crif_submissions(
    path: Path, party: str, counterparty: str, portfolio: str, business_date: str
) -> tuple[list[Any], list[RowFailure]]:
    """One submission per portfolio of the CRIF at ``path`` (CSV). Rows are checked here
    only for what the event needs (numbers); the SIMM worker validates the rest and refuses
    a submission naming ``rows[i].<field>``."""
    from marginflow.simm.crif import canonical_column
    from marginflow.stream import events as ev
    from marginflow.stream.publish import crif_row

    if not party or not counterparty:
        fail("crif: give --party and --counterparty")
    day = business_date or dt.date.today().isoformat()
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        fail(f"--business-date must be an ISO date, got {business_date!r}")
    text = read_input_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        fail(f"{path}:1: header: not valid CSV: {exc}")
    if header is None:
        fail(f"{path} {MSG_FILE_NO_HEADER}")
    names = [canonical_column(h) or h for h in header]
    check_header(names, source=str(path))
    failures: list[RowFailure] = []
    by_portfolio: dict[str, list[ev.CrifRow]] = {}
    for line, cells in numbered(reader, str(path), failures):
        row = dict(zip(names, cells, strict=False))
        try:
            event_row = crif_row(row)
        except (KeyError, ValueError) as exc:
            failures.append(RowFailure(str(path), line, "Amount", f"{exc}", ",".join(cells)))
            continue
        name = row.get("PortfolioID") or portfolio
        if not name:
            failures.append(
                RowFailure(
                    str(path),
                    line,
                    "PortfolioID",
                    "is missing (or give --portfolio)",
                    ",".join(cells),
                )
            )
            continue
        by_portfolio.setdefault(name, []).append(event_row)
    now = time.time_ns()
    subs = [
        ev.CrifSubmission(
            submission_id=f"{party}-{name}-{day}-{path.name}",
            party=party,
            counterparty=counterparty,
            portfolio=name,
            business_date=day,
            rows=tuple(rows),
            event_time=now,
        )
        for name, rows in sorted(by_portfolio.items())
    ]
    return subs, failures


def _roll(text: str) -> tuple[list[Any], list[RowFailure]]:
    from marginflow.stream import events as ev

    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        fail(f"roll: give the business date as an ISO date, got {text!r}")
    return [ev.DateRoll(business_date=day.isoformat(), event_time=time.time_ns())], []


def _reference(path: Path) -> tuple[list[Any], list[RowFailure]]:
    """Members, then accounts, then instruments (so an account's member and a series'
    terms arrive before anything naming them), from a folder or one file."""
    from marginflow.io.book import (
        ACCOUNT_COLUMNS,
        INSTRUMENT_COLUMNS,
        MEMBER_COLUMNS,
        find_file,
        read_table,
    )
    from marginflow.stream import events as ev

    columns = {"members": MEMBER_COLUMNS, "accounts": ACCOUNT_COLUMNS,
               "instruments": INSTRUMENT_COLUMNS}  # fmt: skip
    if path.is_dir():
        files = {k: f for k in REFERENCE_KINDS if (f := find_file(path, k)) is not None}
        if not files:
            fail(f"{path} holds no members, accounts or instruments file (.csv or .parquet)")
    elif not path.exists():
        fail(f"{path}: no such file or folder")
    elif path.stem in REFERENCE_KINDS:
        files = {path.stem: path}
    else:
        fail(f"{path}: a reference file is named members, accounts or instruments (.csv)")
    now = time.time_ns()
    events: list[Any] = []
    failures: list[RowFailure] = []
    for kind in REFERENCE_KINDS:
        if kind not in files:
            continue
        rows = read_table(files[kind], columns[kind])
        failures += rows.failures
        v = rows.values
        for i, line in enumerate(rows.lines):
            try:
                if kind == "members":
                    name = v["name"][i] or ""
                    events.append(ev.MemberRef(id=v["member"][i], name=name, event_time=now))
                elif kind == "accounts":
                    events.append(
                        ev.AccountRef(
                            id=v["account"][i],
                            member=v["member"][i],
                            account_type=v["type"][i],
                            event_time=now,
                        )
                    )
                else:
                    option = v["type"][i] in ("call", "put")
                    expiry = v["expiry"][i]
                    events.append(
                        ev.InstrumentRef(
                            id=v["instrument"][i],
                            underlying=v["underlying"][i],
                            kind=v["type"][i] if option else "equity",
                            multiplier=v["multiplier"][i] or (100.0 if option else 1.0),
                            strike=v["strike"][i],
                            expiry=None if expiry is None else expiry.isoformat(),
                            style=v["style"][i],
                            event_time=now,
                        )
                    )
            except MarginflowError as exc:
                field = getattr(exc, "field", "$")
                reason = getattr(exc, "reason", str(exc))
                raw = ",".join(str(x) for x in rows.raw[i].values()) if rows.raw else ""
                failures.append(RowFailure(str(files[kind]), line, field, reason, raw))
    return events, failures
