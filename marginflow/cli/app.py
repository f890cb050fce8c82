"""The ``marginflow`` command: a Typer app with one module per command group.

Each command module defines ``register(app)``; this file lists them in one place.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="marginflow",
    help="Near-real-time initial margin: clearing-house risk and ISDA SIMM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    from marginflow.cli import (
        audit_cmd,
        demo_cmd,
        keys_cmd,
        log_cmd,
        margin_cmd,
        platform_cmd,
        price_cmd,
        publish_cmd,
        serve_cmd,
        simm_cmd,
        stream_cmd,
        trace_cmd,
        users_cmd,
    )

    for module in (
        platform_cmd,
        serve_cmd,
        demo_cmd,
        price_cmd,
        margin_cmd,
        simm_cmd,
        stream_cmd,
        publish_cmd,
        trace_cmd,
        users_cmd,
        audit_cmd,
        keys_cmd,
        log_cmd,
    ):
        module.register(app)


def main() -> None:
    """Entry point of the console script."""
    _register_commands()
    app()
