"""Fixtures of the stream tests: a real Kafka-protocol broker per session (or the one
``.ci/services.sh`` started, named by ``MARGINFLOW_KAFKA_BOOTSTRAP``), an embedded log in
``tmp_path``, and a topology with a unique prefix per test so tests sharing the broker
never see each other's topics."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl

import pytest

from marginflow.sim.chaos import FAST_FAILOVER
from marginflow.stream.broker import start_broker
from marginflow.stream.log.base import Log
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.log.kafka import KafkaLog
from marginflow.stream.topics import Topology


@pytest.fixture(scope="session")
def broker_bootstrap() -> Iterator[str]:
    """``host:port`` of a running broker: the CI one if exported, else one started here."""
    env = os.environ.get("MARGINFLOW_KAFKA_BOOTSTRAP")
    if env:
        yield env
        return
    broker = start_broker()
    try:
        yield broker.bootstrap
    finally:
        gc.collect()  # drop idle clients first, so they do not log the broker going away
        broker.stop()


@pytest.fixture
def topology() -> Topology:
    return Topology(partitions=4, prefix=f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
def embedded_log(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedLog:
    return EmbeddedLog(tmp_path_factory.mktemp("log"), rebalance_interval=0.05)


@pytest.fixture
def kafka_log(broker_bootstrap: str) -> Iterator[KafkaLog]:
    # fast failover (a group settles in ~1 s instead of 3-11 s); the contract is the same
    settings = dict(parse_qsl(FAST_FAILOVER))
    log = KafkaLog(broker_bootstrap, config=settings)
    yield log
    log.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.broker)])
def log(request: pytest.FixtureRequest) -> Log:
    """Each contract test runs on both implementations."""
    name = "embedded_log" if request.param == "embedded" else "kafka_log"
    result: Log = request.getfixturevalue(name)
    return result


@pytest.fixture
def drain() -> Callable[..., list[object]]:
    """``drain(consumer, n, timeout=10)``: consume until ``n`` records or the timeout."""
    import time

    def _drain(consumer: object, n: int, timeout: float = 15.0) -> list[object]:
        out: list[object] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            out.extend(consumer.consume(min(1000, n - len(out)), 0.2))  # type: ignore[attr-defined]
        return out

    return _drain
