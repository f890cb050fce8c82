"""The service: one FastAPI application serving the REST API (``/api/v1``, OpenAPI at
``/api/v1/openapi.json``), the web pages and the probes, over the store.

:func:`create_app` refuses to build an app with an endpoint that does not say who may call
it: every route either depends on :func:`marginflow.service.auth.require` (its permission
is published in the OpenAPI document as ``x-permission``) or is listed in
:data:`marginflow.service.auth.PUBLIC`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from marginflow.service import errors
from marginflow.service.auth import PUBLIC, _Tokens, _Users
from marginflow.service.config import ServiceConfig
from marginflow.service.context import ServiceContext
from marginflow.service.middleware import Metrics, ServiceMiddleware
from marginflow.service.ratelimit import RateLimiter
from marginflow.service.secrets_store import load_or_create
from marginflow.store import Database

API = "/api/v1"


def _permission_of(route: APIRoute) -> str | None:
    for dep in route.dependant.dependencies:
        permission = getattr(dep.call, "permission", None)
        if permission is not None:
            return str(permission)
        for sub in dep.dependencies:
            permission = getattr(sub.call, "permission", None)
            if permission is not None:
                return str(permission)
    return None


def declare_permissions(routes: Sequence[BaseRoute]) -> None:
    """Publish the permission of each API route in ``routes`` (included routers' too) as
    ``x-permission``; refuse a route with none.

    Call it on a router *before* including it: FastAPI copies a route's OpenAPI extras when
    it includes the router (the app's ``routes`` then hold the included routers, not their
    routes), so a permission set later would be missing from the document.
    """
    for context in iter_route_contexts(routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        path = context.path or route.path
        permission = _permission_of(route)
        if permission is None and path not in PUBLIC and route.include_in_schema:
            raise RuntimeError(f"{path} declares no permission: every endpoint must")
        extra: dict[str, Any] = dict(route.openapi_extra or {})
        extra["x-permission"] = permission or "public"
        route.openapi_extra = extra


def create_app(config: ServiceConfig, *, db: Database | None = None) -> FastAPI:
    """The service over ``config``'s store (or ``db``), secrets made at first run."""
    secrets, _ = load_or_create(config.directory)
    database = db or Database(config.db_url, prefix=config.prefix)
    ctx = ServiceContext(config, database, secrets)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.close()

    app = FastAPI(
        title="marginflow",
        version="1",
        summary="Initial margin for listed options and equities, and ISDA SIMM",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
        lifespan=lifespan,
        responses={
            401: {"model": errors_model()},
            403: {"model": errors_model()},
            422: {"model": errors_model()},
        },
    )
    app.state.ctx = ctx
    app.state.users = _Users()
    app.state.tokens = _Tokens()
    app.state.metrics = Metrics()
    app.state.login_limit = RateLimiter(config.login_per_minute)
    app.state.heavy_limit = RateLimiter(config.heavy_per_minute)
    app.state.started = time.monotonic()
    errors.install(app)
    for router in _routers():
        declare_permissions(router.routes)
        app.include_router(router)
    declare_permissions(app.routes)
    app.add_middleware(
        ServiceMiddleware,
        router=app.router,
        metrics=app.state.metrics,
        max_body=config.max_body,
        max_upload=config.max_upload,
        hsts=config.secure_cookies,
    )
    return app


def errors_model() -> Any:
    from marginflow.service.api.models import ErrorBody

    return ErrorBody


def _routers() -> list[Any]:
    from marginflow.service.api import (
        analysis,
        audit,
        auth_routes,
        book,
        events,
        ops,
        parameters,
        query,
        risk,
        simm,
    )
    from marginflow.service.web import pages

    # the margin reads first: a request is matched against the routes in this order
    return [
        book.router,
        ops.router,
        auth_routes.router,
        analysis.router,
        parameters.router,
        audit.router,
        simm.router,
        query.router,
        events.router,
        risk.router,
        pages.router,
    ]
