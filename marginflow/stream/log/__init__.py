"""The event log behind one interface (:mod:`.base`): an embedded durable log
(:mod:`.embedded`, the default) and a Kafka-protocol broker (:mod:`.kafka`).

:func:`open_log` picks one from a URL: ``embedded:///path/to/dir`` (or a plain path) or
``kafka://host:port[,host:port]``.
"""

from __future__ import annotations

from marginflow.stream.log.base import (
    TP,
    Consumer,
    Log,
    LogCorruptError,
    LogError,
    LogUnavailableError,
    Producer,
    Record,
)


def open_log(url: str) -> Log:
    """The log at ``url``: ``kafka://host:port[,...][?client.setting=value&...]``,
    ``embedded:///dir`` or a directory."""
    if url.startswith("kafka://"):
        from urllib.parse import parse_qsl

        from marginflow.stream.log.kafka import KafkaLog

        rest, _, query = url.removeprefix("kafka://").partition("?")
        bootstrap = rest.rstrip("/")
        if not bootstrap:
            raise LogError(f"no broker address in {url!r}")
        return KafkaLog(bootstrap, config=dict(parse_qsl(query)))
    from marginflow.stream.log.embedded import EmbeddedLog

    path = url.removeprefix("embedded://")
    if not path:
        raise LogError(f"no directory in {url!r}")
    return EmbeddedLog(path)


__all__ = [
    "TP",
    "Consumer",
    "Log",
    "LogCorruptError",
    "LogError",
    "LogUnavailableError",
    "Producer",
    "Record",
    "open_log",
]
