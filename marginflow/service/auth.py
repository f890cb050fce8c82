"""Who is asking, and may they: the FastAPI dependencies every endpoint declares.

A request is authenticated by one of

* a web session: the ``mf_session`` cookie (Secure, HttpOnly, SameSite=Strict) whose digest
  names a row of the session table; a request that changes something must also send the
  session's CSRF token in ``X-CSRF-Token`` (the pages read it from the ``mf_csrf`` cookie),
  checked against the digest stored with the session;
* a bearer token: a JWT signed by the service (HS256, ``kid`` names the key, so keys
  rotate), short-lived;
* an API key: ``Authorization: Bearer mf_<id>_<secret>`` or ``X-API-Key``, stored hashed.

Then :func:`require` checks the permission an endpoint declares and hands the endpoint a
:class:`Caller` whose :class:`~marginflow.service.scope.Scope` decides whose data it
reads. Every endpoint must declare one (or be listed in :data:`PUBLIC`): the app refuses to
start otherwise, and the permission is published in the OpenAPI document
(``x-permission``) where the authorisation matrix test reads it.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from marginflow.core.errors import AuthenticationError
from marginflow.service.context import ServiceContext, now_ns
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission, parse_roles
from marginflow.service.scope import Principal, Scope
from marginflow.service.tokens import (
    SigningKeys,
    TokenClaims,
    parse_api_key,
    token_digest,
    verify_api_key,
    verify_token,
)
from marginflow.store.rows import User

SESSION_COOKIE = "mf_session"
CSRF_COOKIE = "mf_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/api/v1/auth/login", "/api/v1/auth/token"})
"""Paths served without authentication (probes, metrics, signing in)."""

MSG_SIGN_IN = "sign in first: a session, a bearer token or an API key is needed"
MSG_CSRF = "missing or wrong CSRF token (send the mf_csrf cookie's value as X-CSRF-Token)"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: who, through what scope, from where."""

    ctx: ServiceContext
    principal: Principal
    scope: Scope
    client: str

    @property
    def username(self) -> str:
        return self.principal.username

    def privileged_read(self, what: str, subject: str, member: str) -> None:
        """A clearing-house user reading one member's confidential holdings (positions,
        scenario P&L) is privileged data access: it is audited. A member reading its own
        is not."""
        if self.principal.house:
            self.audit(
                "data.access", subject=subject, member=member, security=True, detail={"what": what}
            )

    def audit(self, action: str, **fields: Any) -> None:
        """Record this caller's action in the audit trail."""
        fields.setdefault("member", self.principal.member)
        self.ctx.record(actor=self.username, action=action, client=self.client, **fields)


def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def client_of(request: Request) -> str:
    return request.client.host if request.client else ""


class _Users:
    """A two-second cache of user rows: a token or key is checked against the user as it
    is now (disabled, roles changed) without a database read on every request."""

    def __init__(self, seconds: float = 2.0) -> None:
        self.seconds = seconds
        self._rows: dict[str, tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def cached(self, username: str) -> User | None:
        """The user if a fresh row is cached (None: a miss, or a user known to be gone)."""
        with self._lock:
            hit = self._rows.get(username)
        if hit is not None and time.monotonic() - hit[0] < self.seconds:
            return hit[1]
        return None

    def get(self, ctx: ServiceContext, username: str) -> User | None:
        t = time.monotonic()
        with self._lock:
            hit = self._rows.get(username)
        if hit is not None and t - hit[0] < self.seconds:
            return hit[1]
        user = ctx.access.user(username)
        with self._lock:
            if len(self._rows) > 10_000:
                self._rows.clear()
            self._rows[username] = (t, user)
        return user


class _Tokens:
    """Bearer tokens verified in the last ``seconds``: a client sends the same token with
    every request, and checking its signature (PyJWT parses and verifies it in Python)
    costs more than the rest of a margin read. A hit is the byte-identical token, not yet
    expired; a signing key dropped by rotation stops being honoured within ``seconds``."""

    def __init__(self, seconds: float = 60.0, size: int = 10_000) -> None:
        self.seconds, self.size = seconds, size
        self._rows: dict[str, tuple[float, TokenClaims]] = {}
        self._lock = threading.Lock()

    def verify(self, keys: SigningKeys, token: str) -> TokenClaims:
        """The claims of ``token``, or AuthenticationError as :func:`verify_token` raises."""
        now = time.time()
        hit = self._rows.get(token)
        if hit is not None and now - hit[0] < self.seconds and now < hit[1].expires:
            return hit[1]
        claims = verify_token(keys, token)
        with self._lock:
            if len(self._rows) >= self.size:
                self._rows.clear()
            self._rows[token] = (now, claims)
        return claims


def _tokens(request: Request) -> _Tokens:
    tokens: _Tokens = request.app.state.tokens
    return tokens


def principal_of(user: User, via: str) -> Principal:
    return Principal(user.username, parse_roles(user.roles), user.member, via)


def _refuse(request: Request, reason: str) -> ServiceError:
    """A 401 for a credential that was given but refused, logged as a security event (not
    audited: a flood of bad tokens would flood the trail; sign-in failures are audited)."""
    from marginflow.service.logs import security_event

    security_event("auth.refused", reason, client=client_of(request), path=request.url.path)
    return ServiceError(401, reason, headers={"WWW-Authenticate": 'Bearer realm="marginflow"'})


def authenticate(request: Request) -> Principal:
    """The principal of ``request`` or a 401 :class:`ServiceError`."""
    ctx = context(request)
    users: _Users = request.app.state.users
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    api_key = request.headers.get("x-api-key")
    if scheme.lower() == "bearer" and credential.startswith("mf_"):
        api_key = credential
    if api_key is not None:
        return _by_api_key(ctx, request, users, api_key)
    if scheme.lower() == "bearer" and credential:
        try:
            claims = _tokens(request).verify(ctx.secrets.signing_keys, credential.strip())
        except AuthenticationError as exc:
            raise _refuse(request, f"bearer token refused: {exc.reason}") from None
        user = users.get(ctx, claims.subject)
        if user is None or user.disabled:
            raise _refuse(request, "bearer token refused: the user is disabled or gone")
        return principal_of(user, "token")
    if header:
        raise _refuse(request, "unsupported Authorization scheme (use Bearer)")
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        session = ctx.access.session(token_digest(session_id), now=now_ns())
        if session is None:
            raise _refuse(request, "the session has expired or ended: sign in again")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(token_digest(sent), session.csrf_digest):
                raise ServiceError(403, MSG_CSRF, field="X-CSRF-Token")
        user = users.get(ctx, session.username)
        if user is None or user.disabled:
            raise _refuse(request, "the user is disabled or gone")
        return principal_of(user, "session")
    raise ServiceError(401, MSG_SIGN_IN, headers={"WWW-Authenticate": 'Bearer realm="marginflow"'})


def _by_api_key(ctx: ServiceContext, request: Request, users: _Users, text: str) -> Principal:
    parsed = parse_api_key(text.strip())
    key = ctx.access.api_key(parsed[0]) if parsed else None
    if key is None or not verify_api_key(text.strip(), key.key_hash):
        raise _refuse(request, "API key refused: unknown or wrong")
    if key.revoked_time is not None or key.expires_time <= now_ns():
        raise _refuse(request, "API key refused: revoked or expired")
    user = users.get(ctx, key.username)
    if user is None or user.disabled:
        raise _refuse(request, "API key refused: the user is disabled or gone")
    return principal_of(user, "api-key")


def _cached_principal(request: Request) -> Principal | None:
    """The principal of a request with a bearer token whose user row is cached: found
    without touching the store, so on the event loop. None when anything else is needed
    (a session, an API key, a cache miss, a bad token): :func:`authenticate` decides."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or credential.startswith("mf_"):
        return None
    if "x-api-key" in request.headers:
        return None
    try:
        claims = _tokens(request).verify(context(request).secrets.signing_keys, credential)
    except AuthenticationError:
        return None
    user = request.app.state.users.cached(claims.subject)
    if user is None or user.disabled:
        return None
    return principal_of(user, "token")


def _denied(caller: Caller, request: Request, permission: Permission) -> None:
    caller.audit(
        "access.denied",
        outcome="denied",
        security=True,
        subject=f"{request.method} {request.url.path}",
        detail={"permission": str(permission)},
    )
    raise ServiceError(403, f"your roles do not allow {permission!s}", field=None)


def require(permission: Permission) -> Callable[[Request], Awaitable[Caller]]:
    """The dependency of an endpoint that needs ``permission``.

    It runs on the event loop when the caller is known without the store (a bearer token
    of a cached user: most API calls), and in the thread pool otherwise: a request then
    waits for one thread hand-off (its endpoint's) instead of two."""

    async def dependency(request: Request) -> Caller:
        principal = _cached_principal(request)
        if principal is None:
            principal = await run_in_threadpool(authenticate, request)
        ctx = context(request)
        caller = Caller(ctx, principal, Scope(ctx.db, principal), client_of(request))
        if not principal.can(permission):
            await run_in_threadpool(_denied, caller, request, permission)
        return caller

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def heavy(request: Request, caller: Caller) -> None:
    """Count a compute-heavy request against the caller's rate (429 when over it)."""
    wait = request.app.state.heavy_limit.take(caller.username)
    if wait > 0:
        raise ServiceError(
            429,
            f"too many heavy requests: try again in {wait:.0f} s",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
