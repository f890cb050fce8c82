"""``marginflow up``: the embedded platform (what ``make run`` starts): the demo day
streaming through the pipeline into SQLite, and the API and pages on a local HTTPS port,
until Ctrl-C."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from marginflow.cli.output import fail, say, status
from marginflow.cli.serve_cmd import print_credentials

DAY = "The demo day"


def register(app: typer.Typer) -> None:
    app.command("up")(up_command)


def up_command(
    directory: Annotated[
        Path, typer.Option("--dir", help="the platform's folder (a second start resumes it)")
    ] = Path("var/platform"),
    fresh: Annotated[
        bool, typer.Option("--fresh", help="remove the folder's earlier run and start afresh")
    ] = False,
    host: Annotated[str, typer.Option(help="address the service listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port of the service", min=1, max=65535)] = 8443,
    trades: Annotated[int, typer.Option(help="trades in the day", rich_help_panel=DAY, min=1)] = (
        20_000
    ),
    market_moves: Annotated[
        int, typer.Option(help="price moves in the day", rich_help_panel=DAY, min=0)
    ] = 200,
    seconds: Annotated[
        float,
        typer.Option(help="wall-clock seconds the day streams over", rich_help_panel=DAY, min=0),
    ] = 120.0,
    slices: Annotated[
        int, typer.Option(help="slices the day is published in", rich_help_panel=DAY, min=1)
    ] = 60,
    members: Annotated[int, typer.Option(help="members", rich_help_panel=DAY, min=1)] = 5,
    accounts: Annotated[int, typer.Option(help="accounts", rich_help_panel=DAY, min=1)] = 200,
    underlyings: Annotated[int, typer.Option(help="underlyings", rich_help_panel=DAY, min=1)] = 20,
    series: Annotated[int, typer.Option(help="option series", rich_help_panel=DAY, min=1)] = 600,
    positions: Annotated[
        int, typer.Option(help="start-of-day positions", rich_help_panel=DAY, min=1)
    ] = 1_000,
    lookback: Annotated[
        int, typer.Option(help="business days of history (FHS)", rich_help_panel=DAY, min=20)
    ] = 1250,
) -> None:
    """Start the embedded platform: the demo day streams in (margins change on the pages),
    the API and pages answer on HTTPS (a self-signed certificate: compare its fingerprint
    with your browser's). Prints the address and, at first start, the users' passwords.
    Ctrl-C stops everything it started."""
    from marginflow.core.errors import MarginflowError
    from marginflow.sim.live import DayPlan
    from marginflow.sim.platform import PlatformOptions, clear, prepare, start

    plan = DayPlan(
        trades=trades,
        market_moves=market_moves,
        slices=slices,
        seconds=seconds,
        lookback=lookback,
        members=members,
        accounts=accounts,
        underlyings=underlyings,
        series=series,
        sod_positions=positions,
    )
    options = PlatformOptions(directory, host, port, plan)
    stop = _StopSignal()
    try:
        if fresh:
            clear(directory)
        with status("preparing the book, the store and the certificate ..."):
            made, listener = prepare(options)
        platform = start(options, listener)
    except MarginflowError as exc:
        fail(str(exc))
    say(f"marginflow on {listener.url}/ (API {listener.url}/api/v1/docs)")
    say(f"self-signed certificate {listener.certificate}")
    say(f"  SHA-256 fingerprint {listener.fingerprint()}")
    if made:
        print_credentials(made)
    else:
        say(
            "users: made at the first start, their passwords shown then "
            "(--fresh starts afresh with new ones)"
        )
    say(f"logs in {directory / 'logs'}; Ctrl-C stops the platform")
    ended = _supervise(platform, stop)
    say("stopping ...")
    platform.stop()
    say("stopped")
    if ended:
        raise typer.Exit(ended)


class _StopSignal:
    """SIGINT or SIGTERM asks the platform to stop (once: a second one is the same ask)."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._set)

    def _set(self, sig: int, frame: FrameType | None) -> None:
        self.requested = True


def _supervise(platform: object, stop: _StopSignal) -> int:
    """Wait for a stop signal (0) or a child that ends on its own (1, its log's tail shown),
    saying when the service is ready."""
    from marginflow.sim.platform import Platform

    assert isinstance(platform, Platform)
    ready = False
    while not stop.requested:
        child = platform.ended()
        if child is not None:
            say(
                f"the {child.name} stopped (exit status {child.process.returncode}); "
                f"the end of {child.log}:",
                style="red",
            )
            for line in child.tail().splitlines():
                say(line)
            return 1
        if not ready and platform.ready():
            ready = True
            say(f"ready: {platform.listener.url}/")
        time.sleep(0.2)
    return 0
