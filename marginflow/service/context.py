"""What every request handler reaches: the store and its service tables, the secrets, the
log publisher, and the helpers that audit and log a security event in one call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from marginflow.service.config import ServiceConfig
from marginflow.service.logs import log, request_id, security_event
from marginflow.service.secrets_store import ServiceSecrets
from marginflow.store import Database
from marginflow.store.access import Access
from marginflow.store.audit_log import AuditLog
from marginflow.store.blobs import Blobs
from marginflow.store.proposals import Proposals
from marginflow.store.rows import AuditEntry
from marginflow.stream.log.base import Producer
from marginflow.stream.topics import Topology

T = TypeVar("T")


def now_ns() -> int:
    return time.time_ns()


@dataclass
class ServiceContext:
    """One per process; shared by every request (the store's engine pools connections)."""

    config: ServiceConfig
    db: Database
    secrets: ServiceSecrets
    access: Access = field(init=False)
    audit: AuditLog = field(init=False)
    proposals: Proposals = field(init=False)
    blobs: Blobs = field(init=False)
    topology: Topology = field(init=False)
    _producer: Producer | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    cache: dict[str, Any] = field(default_factory=dict, init=False)
    # the recomputing use cases share engines (kept per start-of-day load), which are not
    # safe to use from two threads at once: one recompute at a time per process
    engines: dict[str, Any] = field(default_factory=dict, init=False)
    engine_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.access = Access(self.db)
        self.audit = AuditLog(self.db, self.secrets.audit_key)
        self.proposals = Proposals(self.db)
        self.blobs = Blobs(self.db)
        self.topology = Topology(partitions=self.config.partitions, prefix=self.config.topic_prefix)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, a short read of the store, from an ``async`` endpoint:
        on the event loop when the store is SQLite (a local read is CPU work, which a
        thread hand-off only adds to, as the GIL runs one thread at a time) and in the
        thread pool otherwise (a round trip to PostgreSQL must not hold the loop). The
        hot margin reads use it; anything long (exports, queries) stays in the pool."""
        if self.db.dialect == "sqlite":
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    def producer(self) -> Producer | None:
        """The log's producer (opened on first use), or None when the service has no log."""
        if self.config.log is None:
            return None
        with self._lock:
            if self._producer is None:
                from marginflow.stream.log import open_log

                self._producer = open_log(self.config.log).producer()
            return self._producer

    def record(
        self,
        *,
        actor: str,
        action: str,
        outcome: str = "ok",
        subject: str = "",
        member: str | None = None,
        security: bool = False,
        client: str = "",
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append to the audit trail and log the entry (with its seal, so the SIEM holds a
        copy of the chain outside the database)."""
        entry = self.audit.append(
            time=now_ns(),
            actor=actor,
            action=action,
            outcome=outcome,
            subject=subject,
            member=member,
            security=security,
            request_id=request_id(),
            client=client,
            detail=detail,
        )
        fields = {
            "audit_seq": entry.seq,
            "audit_hash": entry.hash,
            "actor": actor,
            "outcome": outcome,
            "subject": subject,
            "member": member,
            "client": client,
        }
        if security:
            security_event(action, f"{action} {outcome}", **fields)
        else:
            log.info(f"{action} {outcome}", extra={"event": action, **fields})
        return entry

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush()
        self.db.close()
