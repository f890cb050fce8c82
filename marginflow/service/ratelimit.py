"""Rate limits: a token bucket per (limit, key) in the process. With N replicas behind a
balancer a client gets at most N times the rate, which is the intent of these limits (stop
password guessing and one user starving the others of compute), not a quota; the sign-in
lockout, which must hold across replicas, is counted in the database."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``per_minute`` requests per key, in bursts of up to ``burst`` (default: the same)."""

    def __init__(self, per_minute: int, burst: int | None = None, *, max_keys: int = 100_000):
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else per_minute)
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, *, now: float | None = None) -> float:
        """0.0 if a request of ``key`` may go now (and count it), else the seconds to wait."""
        t = time.monotonic() if now is None else now
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:  # bounded memory under a key flood
                    self._buckets.clear()
                b = self._buckets[key] = _Bucket(self.burst, t)
            b.tokens = min(self.burst, b.tokens + (t - b.stamp) * self.rate)
            b.stamp = t
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / self.rate if self.rate > 0 else math.inf
