"""``marginflow lag`` (drift of every consumer group) and ``marginflow cluster up|down|status``
(a local cluster: broker, workers and load generator in one command)."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from marginflow.cli.output import fail, print_json, report_failures, stderr, table
from marginflow.core.errors import MarginflowError

EXIT_ALERT = 3
DEFAULT_DIR = Path(".marginflow/cluster")

cluster_app = typer.Typer(
    help="A local cluster: broker, workers and a load generator.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("lag")(lag_command)
    app.add_typer(cluster_app, name="cluster")


DirOpt = Annotated[Path, typer.Option("--dir", help="cluster directory (state, logs, snapshots)")]


def lag_command(
    directory: DirOpt = DEFAULT_DIR,
    log: Annotated[str | None, typer.Option(help="log URL instead of --dir's cluster")] = None,
    prefix: Annotated[str, typer.Option(help="topic and group prefix")] = "mf.",
    watch: Annotated[float, typer.Option(help="refresh every S seconds (0: once)")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document per reading")] = False,
    alert_messages: Annotated[
        int | None, typer.Option(help="alert above this many messages")
    ] = None,
    alert_seconds: Annotated[
        float | None, typer.Option(help="alert above this wall-time lag (s)")
    ] = None,
    alert_event_seconds: Annotated[
        float | None, typer.Option(help="alert above this event-time lag (s)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics on this port while watching")
    ] = None,
) -> None:
    """Lag of every consumer group behind its sources (messages, wall and event seconds) and
    the drift between consecutive stages. Exit status 3 when a threshold is exceeded, 2 when
    the log cannot be read (an unreachable broker); with --watch, an unreachable broker is
    shown (since when) and watched until it is back."""
    from marginflow.stream.drift import DriftMonitor, Thresholds, export_metrics
    from marginflow.stream.log import LogUnavailableError, open_log
    from marginflow.stream.log.health import health_of
    from marginflow.stream.topics import Topology

    try:
        if log is None:
            from marginflow.stream.cluster import read_state

            state = read_state(directory)
            log, prefix = state["log"], state["config"]["prefix"]
        assert log is not None
        if not log.startswith("kafka://"):
            path = Path(log.removeprefix("embedded://"))
            if not (path / "topics").is_dir():  # don't create an empty log by looking at it
                fail(f"no embedded log at {path}")
        thresholds = Thresholds(alert_messages, alert_seconds, alert_event_seconds)
        the_log = open_log(log)
        health = health_of(the_log)
        if health is not None and watch > 0:  # watching: one line as the broker goes, comes
            health.report = lambda line: stderr.print(escape(line), soft_wrap=True)
        monitor = DriftMonitor(the_log, Topology(prefix=prefix), thresholds=thresholds)
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port)
        while True:
            try:
                report = monitor.sample()
            except LogUnavailableError:
                if watch <= 0:
                    raise
                _show_unreachable(monitor, as_json, metrics_port is not None)
                time.sleep(watch)
                continue
            if metrics_port is not None:
                export_metrics(report)
            if as_json:
                print_json(report.to_json())
            else:
                _show(report)
            for g in report.alerts:
                stderr.print(
                    f"[bold red]ALERT[/] {g.group} on {g.topic}: {g.messages} messages, "
                    f"{g.wall_seconds:.2f} s wall, {g.event_seconds:.2f} s event time"
                )
            if watch <= 0:
                break
            time.sleep(watch)
    except MarginflowError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        return
    if report.alerts:
        raise typer.Exit(EXIT_ALERT)


def _show_unreachable(monitor: Any, as_json: bool, metrics: bool) -> None:
    """One reading of ``lag --watch`` with the broker away: since when (the broker's health
    already printed that line once, when it went down); the gauges say so too."""
    from marginflow.stream.drift import export_broker

    state = monitor.broker()
    if state is None:  # an embedded log is never unreachable
        return
    if metrics:
        export_broker(state)
    if as_json:
        print_json({"taken_ns": time.time_ns(), "broker": asdict(state)})


def _show(report: Any) -> None:
    rows = [
        (g.group, g.topic, g.messages, round(g.wall_seconds, 3), round(g.event_seconds, 3),
         "ALERT" if g.alert else "")
        for g in report.groups
    ]  # fmt: skip
    table("Lag per consumer group", ["group", "topic", "messages", "wall s", "event s", ""], rows)
    drift = [(d.upstream, d.downstream, round(d.seconds, 3)) for d in report.drift]
    table("Drift between stages (event time)", ["upstream", "downstream", "seconds"], drift)


@cluster_app.command("up")
def cluster_up(
    directory: DirOpt = DEFAULT_DIR,
    config: Annotated[Path | None, typer.Option(help="TOML file with a \\[cluster] table")] = None,
    log: Annotated[str | None, typer.Option(help="broker | embedded | kafka://host:port")] = None,
    partitions: Annotated[int | None, typer.Option(help="partitions of the keyed topics")] = None,
    keepers: Annotated[int | None, typer.Option(help="position keeper processes")] = None,
    calculators: Annotated[int | None, typer.Option(help="risk calculator processes")] = None,
    aggregators: Annotated[int | None, typer.Option(help="aggregator processes")] = None,
    sinks: Annotated[int | None, typer.Option(help="database sink processes")] = None,
    simm_workers: Annotated[int | None, typer.Option(help="SIMM worker processes")] = None,
    simm_version: Annotated[
        str | None, typer.Option(help="SIMM calibration (default: the newest)")
    ] = None,
    mpor: Annotated[int | None, typer.Option(help="SIMM margin period of risk: 10 or 1")] = None,
    max_batch: Annotated[int | None, typer.Option(help="micro-batch: records")] = None,
    max_wait: Annotated[
        float | None,
        typer.Option(help="micro-batch wait, seconds, for the keeper and calculator (default 0)"),
    ] = None,
    downstream_max_wait: Annotated[
        float | None,
        typer.Option(help="micro-batch wait for the aggregator, SIMM worker and sink (0.05)"),
    ] = None,
    snapshot_interval: Annotated[
        float | None, typer.Option(help="seconds between snapshots")
    ] = None,
    book: Annotated[
        Path | None, typer.Option(help="your book folder (default: a generated one)")
    ] = None,
    accounts: Annotated[int | None, typer.Option(help="accounts in the generated book")] = None,
    underlyings: Annotated[int | None, typer.Option(help="underlyings in the book")] = None,
    series: Annotated[int | None, typer.Option(help="option series in the book")] = None,
    lookback: Annotated[
        int | None, typer.Option(help="look-back of the ES scenarios, business days")
    ] = None,
    margin: Annotated[
        list[str] | None,
        typer.Option(help="margin setting key=value (repeatable), as marginflow margin's"),
    ] = None,
    trades: Annotated[
        str | None, typer.Option(help="trades to generate, or a trades file to replay")
    ] = None,
    market: Annotated[Path | None, typer.Option(help="market file to replay")] = None,
    speed: Annotated[
        float | None, typer.Option(help="replay files at X times real time (0: at once)")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="trades per second (0: unlimited)")] = None,
    db: Annotated[str | None, typer.Option(help="sqlite:/// or postgresql:// URL")] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh", help="clear DIR's old state (snapshots, offsets, database, logs) first"
        ),
    ] = False,
) -> None:
    """Start the broker, the workers and a load generator under a supervisor that restarts
    crashed workers: a day replayed from files or generated, on your book or a generated one.
    On a used DIR, resume where its embedded log survived, or refuse (--fresh starts over)."""
    from marginflow.stream.cluster import ClusterConfig, prepare, up

    trades_count, trades_file = _trades_option(trades)
    overrides = {
        "log": log, "partitions": partitions, "keepers": keepers, "calculators": calculators,
        "aggregators": aggregators, "sinks": sinks, "max_batch": max_batch, "max_wait": max_wait,
        "downstream_max_wait": downstream_max_wait, "snapshot_interval": snapshot_interval,
        "accounts": accounts, "underlyings": underlyings, "series": series,
        "trades": trades_count, "trades_file": trades_file,
        "market_file": None if market is None else str(market.resolve()), "speed": speed,
        "rate": rate, "db": db, "simm_workers": simm_workers, "simm_version": simm_version,
        "mpor": mpor, "book": None if book is None else str(book),
        "margin": _margin_options(margin, lookback),
    }  # fmt: skip
    try:
        cfg = ClusterConfig.load(config, overrides)
        prep = prepare(cfg, directory, fresh=fresh)
        if prep.book_spec is not None and not prep.resume:
            _generated_book(cfg, prep.book)
        _check_book(prep.book)
        state = up(replace(cfg, book=str(prep.book)), prep)
    except MarginflowError as exc:
        fail(str(exc))
    if prep.cleared:
        stderr.print(f"--fresh: removed {', '.join(prep.cleared)} from {prep.directory}")
    if prep.leftover is not None:
        stderr.print(f"--fresh: could not delete {prep.leftover} (nothing reads it): delete it")
    rows = [(p["name"], str(p["pid"]), p["log_file"]) for p in state["processes"]]
    table(f"Cluster up in {prep.directory} (log {state['log']})", ["process", "pid", "log"], rows)
    if prep.resume:
        stderr.print(
            "resumed on the log the directory kept; the load generator does not run again "
            f"(its day is on the log): publish more with marginflow publish --dir {directory}"
        )
    stderr.print(f"margins: {state['db']}; watch: marginflow lag --dir {directory} --watch 1")


def _trades_option(text: str | None) -> tuple[int | None, str | None]:
    if text is None:
        return None, None
    if text.isdigit():
        return int(text), None
    path = Path(text)
    if not path.is_file():
        fail(f"--trades must be a number of trades or a trades file, got {text!r}")
    return None, str(path.resolve())


def _margin_options(items: list[str] | None, lookback: int | None) -> dict[str, Any] | None:
    """``--margin key=value`` and ``--lookback`` as margin settings (JSON form)."""
    from marginflow.engine.settings import MarginSettings

    out: dict[str, Any] = {}
    known = {name: type(value) for name, value in MarginSettings().to_json().items()}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in known or key == "params":
            fail(f"--margin must be key=value with key one of {', '.join(sorted(known))}")
        out[key] = _typed(value, known[key], key)
    if lookback is not None:
        out["lookback"] = lookback
    return out or None


def _typed(text: str, kind: type, key: str) -> Any:
    try:
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        return kind(text)
    except ValueError:
        fail(f"--margin {key}: cannot read {text!r} as {kind.__name__}")


def _generated_book(cfg: Any, folder: Path) -> Path:
    """Write the generated book of ``cfg``'s sizes into ``folder``."""
    from marginflow.sim.synthetic_book import BookSpec

    return BookSpec(**cfg.book_spec()).write(folder)


def _check_book(folder: Path) -> None:
    """Load the book once here so its rejected rows are named to the user, not only in the
    workers' logs; a book that cannot be loaded at all stops ``up``."""
    from marginflow.io.book import load_book

    loaded = load_book(folder)
    if loaded.failures:
        report_failures(loaded.failures)


@cluster_app.command("down")
def cluster_down(directory: DirOpt = DEFAULT_DIR) -> None:
    """Stop everything ``cluster up`` started in DIR: the supervisor first, then every worker
    under any pid it ran (they snapshot and commit first), then the broker."""
    from marginflow.stream.cluster import down

    try:
        stopped = down(directory)
    except MarginflowError as exc:
        fail(str(exc))
    rows = [(p["name"], ", ".join(str(x) for x in p["pids"])) for p in stopped]
    table(f"Stopped in {directory}", ["process", "pids"], rows)


@cluster_app.command("status")
def cluster_status(
    directory: DirOpt = DEFAULT_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Each process of the cluster in DIR: role, pid, whether it runs, restarts, what the
    supervisor says of it, its log file and its full command line."""
    from marginflow.stream.cluster import status

    try:
        state = status(directory)
    except MarginflowError as exc:
        fail(str(exc))
    procs = state["processes"]
    if as_json:
        print_json({k: v for k, v in state.items() if k != "plan"})
        return
    rows = [
        (p["name"], p["role"], str(p["pid"] or ""), "yes" if p["alive"] else "no", p["restarts"],
         _describe(p), p["log_file"])
        for p in procs
    ]  # fmt: skip
    title = f"Cluster in {state['directory']} (log {state['log']}, database {state['db']})"
    table(title, ["process", "role", "pid", "alive", "restarts", "state", "log"], rows)
    # one line each, never wrapped, so that a command can be copied and run by hand
    typer.echo("Command lines:")
    for p in procs:
        typer.echo(f"  {p['name']}: {p['command_line']}")


def _describe(p: dict[str, Any]) -> str:
    """What the supervisor says of a process, with why it last ended."""
    text = str(p["status"])
    if p["status"] == "gave-up":
        text = f"gave up after {p['restarts']} restarts"
    return f"{text} (last: {p['last_exit']})" if p["last_exit"] else text
