"""Serving the app in this process: uvicorn over HTTPS (TLS 1.2 at least: Python's server
default) or, behind a balancer that terminates TLS, plain HTTP; JSON logs on standard
error; a graceful stop.

Why these choices:

* **One process per replica**, no worker pool: the replicas are the processes the balancer
  spreads over (``marginflow serve`` started N times on one PostgreSQL), each with its own
  in-memory caches, so a replica killed mid-request costs only its own in-flight requests.
* **SIGTERM or SIGINT stop gracefully**: no new connection is accepted, requests in flight
  finish (live feeds are cut after :data:`GRACE_SECONDS`), the store's connections are
  closed, and the process exits with status 0, as a supervisor expects of a stop it asked
  for. (uvicorn would re-raise the signal after its shutdown, ending the process *by* the
  signal; :class:`_Server` keeps the shutdown and drops the re-raise.)
* **A self-signed certificate by default** (:func:`marginflow.service.tls.self_signed_certificate`
  in ``<directory>/tls``), made at first start and reused after, so a local run is HTTPS
  from the start; ``--tls-cert/--tls-key`` serve an operator's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn

from marginflow.core.errors import ConfigurationError
from marginflow.service.bootstrap import Credential, first_run_users
from marginflow.service.context import ServiceContext
from marginflow.service.tls import certificate_fingerprint, self_signed_certificate

GRACE_SECONDS = 5
"""How long a stop waits for open requests (a live feed never ends by itself)."""
TLS_DIR = "tls"


@dataclass(frozen=True, slots=True)
class Listener:
    """Where the service listens and with which certificate (None: plain HTTP)."""

    host: str
    port: int
    certificate: Path | None = None
    key: Path | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.certificate is None else "https"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104 (a check)
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"{self.scheme}://{host}:{self.port}"

    def fingerprint(self) -> str | None:
        """The certificate's SHA-256 fingerprint (None over plain HTTP)."""
        return None if self.certificate is None else certificate_fingerprint(self.certificate)


def tls_files(directory: Path, host: str, cert: Path | None, key: Path | None) -> tuple[Path, Path]:
    """``(certificate, key)``: the operator's pair if given, else the self-signed pair of
    ``directory`` (made now for localhost, 127.0.0.1 and ``host`` if it names one)."""
    if (cert is None) != (key is None):
        raise ConfigurationError("--tls-cert and --tls-key go together: give both or neither")
    if cert is not None and key is not None:
        for path in (cert, key):
            if not path.is_file():
                raise ConfigurationError(f"{path}: no such file")
        return cert, key
    names = ["localhost", "127.0.0.1"]
    if host not in ("", "0.0.0.0", "::", *names):  # noqa: S104 (a check, not a bind)
        names.append(host)
    return self_signed_certificate(directory / TLS_DIR, hostnames=names)


class _Server(uvicorn.Server):
    """uvicorn's server without the signal re-raised after a graceful shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        wanted = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in wanted}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(app: Any, listener: Listener) -> None:
    """Serve ``app`` on ``listener`` until SIGTERM or SIGINT (returns after the shutdown)."""
    options: dict[str, Any] = {}
    if listener.certificate is not None:
        options = {
            "ssl_certfile": str(listener.certificate),
            "ssl_keyfile": str(listener.key),
        }
    config = uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        log_config=None,  # the JSON handlers of marginflow.service.logs.configure
        access_log=False,  # the middleware's access line carries more
        server_header=False,
        proxy_headers=False,  # client addresses are the peer's, unless a balancer is trusted
        timeout_graceful_shutdown=GRACE_SECONDS,
        **options,
    )
    _Server(config).run()


def exit_with_parent() -> None:
    """Stop this process (SIGTERM to itself, so the shutdown is graceful) when its parent
    dies: a platform killed with SIGKILL cannot stop its children, who then stop
    themselves within a second."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def first_run(
    ctx: ServiceContext, members: Sequence[str] | None = None, simm_party: str | None = None
) -> list[Credential]:
    """The first-run users if the store has none yet (their passwords, to print once):
    over ``members`` and ``simm_party``, else the members holding margin in the store and
    the first SIMM party there. Empty if users exist, or another replica starting at the
    same moment made them first."""
    if ctx.access.users():
        return []
    if members is None:
        members = [m.member for m in ctx.db.member_margins()]
    if simm_party is None:
        parties = sorted({r.party for r in ctx.db.simm_results().values()})
        simm_party = parties[0] if parties else None
    try:
        return first_run_users(ctx, members, simm_party=simm_party)
    except sa.exc.IntegrityError:
        return []
