"""Checking a username and password: rate-limited per client address, with the account
locked after repeated failures (the lock doubles with each further failure, counted in the
database so every replica sees it), and the same work and the same answer whether or not
the user exists, so a failure tells nothing about which usernames exist."""

from __future__ import annotations

from fastapi import Request

from marginflow.service.auth import client_of
from marginflow.service.context import ServiceContext, now_ns
from marginflow.service.errors import ServiceError
from marginflow.service.passwords import hash_password, needs_rehash, verify_password
from marginflow.store.rows import User

MSG_WRONG = "wrong username or password"
_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password("not-a-password-of-anyone"))
    return _DUMMY[0]


def sign_in(ctx: ServiceContext, request: Request, username: str, password: str) -> User:
    """The user if ``password`` is theirs, else a 401 (or 429 while rate-limited or
    locked); every outcome is audited as a security event."""
    client = client_of(request)

    def attempt(outcome: str, member: str | None = None, **detail: object) -> None:
        ctx.record(
            actor=username,
            action="auth.login",
            outcome=outcome,
            security=True,
            client=client,
            member=member,
            detail=detail or None,
        )

    wait = request.app.state.login_limit.take(client)
    if wait > 0:
        attempt("rate-limited")
        raise ServiceError(
            429,
            f"too many sign-in attempts from your address: try again in {wait:.0f} s",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    user = ctx.access.user(username)
    now = now_ns()
    if user is not None and user.locked_until > now:
        seconds = (user.locked_until - now) / 1e9
        attempt("locked", user.member)
        raise ServiceError(
            429,
            f"too many failed sign-ins: the account is locked for {seconds:.0f} s more",
            headers={"Retry-After": str(max(1, round(seconds)))},
        )
    good = verify_password(user.password_hash if user else _dummy_hash(), password)
    if user is None or not good or user.disabled:
        if user is not None and not good:
            after = ctx.access.record_failure(
                username,
                now=now,
                lock_after=ctx.config.lock_after,
                lock_ns=ctx.config.lock_seconds * 1_000_000_000,
            )
            attempt(
                "failed",
                user.member,
                failures=after.failed_logins,
                locked=after.locked_until > now,
            )
        else:
            attempt("failed", user.member if user else None)
        raise ServiceError(401, MSG_WRONG, field="password")
    ctx.access.record_success(username)
    if needs_rehash(user.password_hash):
        ctx.access.set_password(username, hash_password(password), now=now)
    attempt("ok", user.member)
    return user
