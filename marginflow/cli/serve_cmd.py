"""``marginflow serve``: the REST API and the web pages over a store, one process per
replica (start several on one PostgreSQL behind any balancer: they share nothing else)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from marginflow.cli.output import fail, say, table

if TYPE_CHECKING:  # the service stack (SQLAlchemy, ...) is imported only by commands using it
    from marginflow.service.bootstrap import Credential


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    db: Annotated[
        str,
        typer.Option(
            "--db", help="the store: sqlite:///path/margins.db or postgresql://user@host/db"
        ),
    ] = "sqlite:///var/platform/margins.db",
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="the service's folder: its secrets (made at first start) and self-signed "
            "certificate; replicas on one store share it (or copies of its secrets)",
        ),
    ] = Path("var/platform/service"),
    log: Annotated[
        str | None,
        typer.Option(
            "--log",
            help="where approved parameter changes are published: embedded:///folder or "
            "kafka://host:port (none: approvals are refused, the rest works)",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 8443,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="your certificate (PEM; default: a self-signed one)"),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="the certificate's private key (PEM)")
    ] = None,
    no_tls: Annotated[
        bool,
        typer.Option(
            "--no-tls",
            help="plain HTTP: only for tests, or behind a balancer that terminates TLS "
            "(session cookies then lose their Secure flag)",
        ),
    ] = False,
    prefix: Annotated[str, typer.Option(help="the store's table name prefix")] = "mf_",
    partitions: Annotated[
        int, typer.Option(help="partitions per topic of the log (as the pipeline's)", min=1)
    ] = 4,
    exit_with_parent: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /api/v1/openapi.json) and the web pages,
    with /healthz, /readyz and /metrics for balancers and Prometheus.

    A first start on a store without users makes one user per role and prints their
    passwords once (they are kept only hashed). SIGTERM or Ctrl-C stop it gracefully."""
    from marginflow.core.errors import MarginflowError
    from marginflow.service import logs, server
    from marginflow.service.app import create_app
    from marginflow.service.config import ServiceConfig

    logs.configure()
    try:
        cert = key = None
        if not no_tls:
            cert, key = server.tls_files(directory, host, tls_cert, tls_key)
        elif tls_cert is not None or tls_key is not None:
            fail("--no-tls serves plain HTTP: drop --tls-cert/--tls-key, or drop --no-tls")
        config = ServiceConfig(
            db_url=db,
            directory=directory,
            prefix=prefix,
            log=log,
            partitions=partitions,
            secure_cookies=not no_tls,
        )
        app = create_app(config)
        made = server.first_run(app.state.ctx)
        listener = server.Listener(host, port, cert, key)
        fingerprint = listener.fingerprint()
    except MarginflowError as exc:
        fail(str(exc))
    say(f"marginflow service on {listener.url}/ (API {listener.url}/api/v1/docs)")
    if fingerprint is not None:
        say(f"certificate {cert} SHA-256 fingerprint {fingerprint}")
    else:
        say("plain HTTP: put it behind a balancer that terminates TLS")
    if made:
        print_credentials(made)
    if exit_with_parent:
        server.exit_with_parent()
    server.run(app, listener)


def print_credentials(made: Sequence[Credential]) -> None:
    """The first-run users and their passwords, shown this once (kept only hashed)."""
    table(
        "First-run users: note the passwords now, they are shown only this once",
        ("username", "roles", "member", "password"),
        [(c.username, ", ".join(c.roles), c.member or "-", c.password) for c in made],
    )
