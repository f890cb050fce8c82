"""Whether the broker can be reached, and how long to wait before trying it again.

:class:`BrokerHealth` is the one record of a log's reachability that its clients share:
an operation that fails for want of the broker marks it **down** (with the wall time it
went down and why), one that succeeds marks it **up**. Each change is reported once, as
one line (:data:`~marginflow.core.errors.MSG_BROKER_DOWN` and
:data:`~marginflow.core.errors.MSG_BROKER_BACK`), never once per retry: librdkafka's own
per-reconnect lines are silenced (see :mod:`marginflow.stream.log.kafka`).

:class:`Backoff` spaces the retries: exponential, capped, with jitter so that the workers
of a cluster that lost the broker together do not come back in lockstep.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marginflow.core.errors import MSG_BROKER_BACK, MSG_BROKER_DOWN, ConfigurationError


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Retry ``n`` (1-based) waits ``min(maximum, initial * factor**(n-1))`` seconds, each
    wait drawn uniformly from ``[(1 - jitter) * d, d]`` (``jitter`` 0: exactly ``d``)."""

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ConfigurationError(
                f"backoff must satisfy 0 < initial <= maximum, got {self.initial}, {self.maximum}"
            )
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ConfigurationError(
                f"backoff factor must be >= 1 and jitter in [0, 1], got {self.factor}, "
                f"{self.jitter}"
            )

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry ``retry`` (1-based)."""
        return float(min(self.maximum, self.initial * self.factor ** max(retry - 1, 0)))


class Backoff:
    """The waits of one run of retries under ``policy``; :meth:`reset` after a success."""

    def __init__(self, policy: BackoffPolicy | None = None, *, seed: int | None = None) -> None:
        self.policy = policy or BackoffPolicy()
        self.retries = 0
        self._rng = random.Random(seed)  # noqa: S311 (spreading retries, not a secret)

    def next(self) -> float:
        """Seconds to wait before the next retry."""
        self.retries += 1
        ceiling = self.policy.ceiling(self.retries)
        return ceiling * (1.0 - self.policy.jitter * self._rng.random())

    def reset(self) -> None:
        self.retries = 0


def say(line: str) -> None:
    """Report one line on standard error with the local time (a worker's log)."""
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def iso_seconds(wall_ns: int) -> str:
    """``2026-03-14T09:26:53Z`` for a wall time in nanoseconds (UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall_ns / 1e9))


@dataclass(frozen=True, slots=True)
class BrokerState:
    """Whether the broker answered last time anyone asked, and if not since when and why."""

    address: str
    reachable: bool
    unreachable_since_ns: int | None = None
    reason: str = ""

    def describe(self) -> str:
        """``broker at A unreachable since T: reason`` (or ``broker at A reachable``)."""
        if self.unreachable_since_ns is None:
            return f"broker at {self.address} reachable"
        return MSG_BROKER_DOWN.format(
            address=self.address, since=iso_seconds(self.unreachable_since_ns), reason=self.reason
        )


class BrokerHealth:
    """Whether the broker at ``address`` answered last time anyone asked.

    ``down`` and ``up`` may be called from librdkafka's callbacks and from the worker
    thread; only the transitions are reported, one line each, through ``report`` (None:
    silent, as a one-shot command that says its own error wants it)."""

    def __init__(self, address: str, *, report: Callable[[str], None] | None = None) -> None:
        self.address = address
        self.report = report
        self.unreachable_since_ns: int | None = None
        self.reason = ""
        self.failures = 0  # failed operations since it went down
        self.outages = 0  # times it went down
        self._lock = threading.Lock()
        self._since_mono = 0.0
        self._suspect_since: float | None = None

    def suspect(self, reason: str, *, settle: float = 1.0) -> None:
        """A sign the broker is away that may be stale (librdkafka reports a failed
        connection attempt when it serves its queue, which can be after the broker is back):
        down only if signs keep coming for ``settle`` seconds with no success between."""
        now = time.monotonic()
        with self._lock:
            if self._suspect_since is None:
                self._suspect_since = now
            first = self._suspect_since
        if now - first >= settle:
            self.down(reason)

    @property
    def reachable(self) -> bool:
        return self.unreachable_since_ns is None

    def down(self, reason: str) -> None:
        with self._lock:
            self.failures += 1
            if self.unreachable_since_ns is not None:
                return
            self.unreachable_since_ns = time.time_ns()
            self._since_mono = time.monotonic()
            self.reason = reason
            self.outages += 1
        if self.report is not None:
            self.report(self.state().describe())

    def up(self, started: float | None = None) -> None:
        """The broker answered an operation begun at ``started`` (``time.monotonic()``; None:
        just now). An operation begun before the broker went away proves nothing: its answer
        may have come before, and been read after (a flush serves both)."""
        if self.unreachable_since_ns is None and self._suspect_since is None:
            return  # the common case: no lock on the hot path
        with self._lock:
            if started is not None and started < (self._suspect_since or 0.0):
                return
            self._suspect_since = None
            if self.unreachable_since_ns is None:
                return
            if started is not None and started < self._since_mono:
                return
            seconds = time.monotonic() - self._since_mono
            retries, self.failures = self.failures, 0
            self.unreachable_since_ns = None
        if self.report is not None:
            self.report(
                MSG_BROKER_BACK.format(address=self.address, seconds=seconds, retries=retries)
            )

    def state(self) -> BrokerState:
        return BrokerState(self.address, self.reachable, self.unreachable_since_ns, self.reason)


def health_of(log: Any) -> BrokerHealth | None:
    """The broker health of ``log`` (None: a log with no broker, the embedded one)."""
    health = getattr(log, "health", None)
    return health if isinstance(health, BrokerHealth) else None
