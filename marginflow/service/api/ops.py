"""Operability: liveness and readiness probes for load balancers, Prometheus metrics, and
the pipeline's lag and drift read from the log, plus the dead letters the sink kept."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from marginflow.service.api.models import Page, iso
from marginflow.service.auth import Caller, context, require
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission

router = APIRouter(tags=["operations"])
Operator = Annotated[Caller, Depends(require(Permission.OPERATIONS))]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    database: str
    schema_revision: str | None


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers (no dependency is checked)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
def readyz(request: Request, response: Response) -> Ready:
    """Readiness: the store answers at the schema revision this code needs; 503 if not,
    so a balancer sends no traffic to a replica that cannot serve it."""
    from marginflow.store.database import HEAD, revision

    ctx = context(request)
    try:
        with ctx.db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        rev = revision(ctx.db.engine, ctx.db.prefix)
    except sa.exc.SQLAlchemyError:
        response.status_code = 503
        return Ready(status="unavailable", database="unreachable", schema_revision=None)
    if rev != HEAD:
        response.status_code = 503
        return Ready(status="unavailable", database="ok", schema_revision=rev)
    return Ready(status="ok", database="ok", schema_revision=rev)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: request latency per route template, refusals, process."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class Lag(BaseModel):
    taken: str
    groups: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    partitions: list[dict[str, Any]]


@router.get("/api/v1/ops/lag", response_model=Lag)
def lag(caller: Operator) -> Lag:
    """Each consumer group's lag behind its sources (messages, wall and event seconds) and
    the drift between consecutive stages, read from the log now."""
    ctx = caller.ctx
    if ctx.config.log is None:
        raise ServiceError(503, "the service runs without a log: no lag to read")
    monitor = ctx.cache.get("drift")
    if monitor is None:
        from marginflow.stream.drift import DriftMonitor
        from marginflow.stream.log import open_log

        monitor = ctx.cache["drift"] = DriftMonitor(open_log(ctx.config.log), ctx.topology)
    from marginflow.stream.log import LogUnavailableError

    try:
        report = monitor.sample()
    except LogUnavailableError:  # "broker at A unreachable since T: why"
        state = monitor.broker()
        raise ServiceError(503, state.describe() if state else "the log is unreachable") from None
    return Lag(
        taken=iso(report.taken_ns),
        groups=[asdict(g) for g in report.groups],
        drift=[asdict(d) for d in report.drift],
        partitions=[asdict(p) for p in report.partitions],
    )


class Rejected(BaseModel):
    topic: str
    partition: int
    offset: int
    field: str
    reason: str
    raw: str
    time: str


@router.get("/api/v1/ops/rejects", response_model=Page[Rejected])
def rejects(caller: Operator, limit: int = 100, offset: int = 0) -> Page[Rejected]:
    """Events the pipeline refused (dead letters), with the field and reason and the raw
    input as text (shown literally)."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise ServiceError(422, "limit must be 1..1000 and offset >= 0", field="limit")
    rows = caller.ctx.db.rejects()
    page = rows[offset : offset + limit]
    return Page[Rejected](
        items=[
            Rejected(
                topic=r.source_topic,
                partition=r.source_partition,
                offset=r.source_offset,
                field=r.field,
                reason=r.reason,
                raw=r.raw.decode("utf-8", "replace")[:4000],
                time=iso(r.event_time),
            )
            for r in page
        ],
        total=len(rows),
        limit=limit,
        offset=offset,
    )


def uptime(request: Request) -> float:
    return time.monotonic() - float(request.app.state.started)
