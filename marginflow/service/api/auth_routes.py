"""Signing in and out, bearer tokens, API keys, passwords and users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from marginflow.service.api.models import (
    ApiKeyCreated,
    ApiKeyInfo,
    ApiKeyRequest,
    Login,
    LoginResult,
    Me,
    NewUser,
    PasswordChange,
    Token,
    UserCreated,
    UserInfo,
    iso,
)
from marginflow.service.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Caller,
    context,
    require,
)
from marginflow.service.context import now_ns
from marginflow.service.errors import ServiceError
from marginflow.service.passwords import check_policy, generate_password, hash_password
from marginflow.service.roles import MEMBER_ROLES, Permission, Role, parse_roles
from marginflow.service.scope import NotFoundError
from marginflow.service.sign_in import sign_in
from marginflow.service.tokens import issue_token, new_api_key, random_token, token_digest
from marginflow.store.rows import ApiKey, User, WebSession

router = APIRouter(prefix="/api/v1", tags=["authentication"])
Self = Annotated[Caller, Depends(require(Permission.SELF))]
Admin = Annotated[Caller, Depends(require(Permission.USERS))]
NS = 1_000_000_000


@router.post("/auth/login", response_model=LoginResult)
def login(form: Login, request: Request, response: Response) -> LoginResult:
    """Sign in for the web pages: sets the session cookie (Secure, HttpOnly,
    SameSite=Strict) and the CSRF cookie, whose value every change must send back as
    ``X-CSRF-Token``."""
    ctx = context(request)
    user = sign_in(ctx, request, form.username, form.password)
    session_id, csrf = random_token(), random_token()
    now = now_ns()
    expires = now + ctx.config.session_seconds * NS
    ctx.access.add_session(
        WebSession(token_digest(session_id), user.username, token_digest(csrf), now, expires)
    )
    secure = ctx.config.secure_cookies
    age = ctx.config.session_seconds
    response.set_cookie(
        SESSION_COOKIE, session_id, max_age=age, httponly=True, secure=secure, samesite="strict"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=age, httponly=False, secure=secure, samesite="strict"
    )
    return LoginResult(
        username=user.username,
        member=user.member,
        roles=list(user.roles),
        csrf_token=csrf,
        expires=iso(expires),
    )


@router.post("/auth/token", response_model=Token)
def token(form: Login, request: Request) -> Token:
    """A bearer token (JWT, short-lived) for API clients, for a username and password."""
    ctx = context(request)
    user = sign_in(ctx, request, form.username, form.password)
    ttl = ctx.config.token_seconds
    jwt = issue_token(
        ctx.secrets.signing_keys,
        subject=user.username,
        roles=list(user.roles),
        member=user.member,
        ttl_seconds=ttl,
    )
    return Token(access_token=jwt, expires_in=ttl)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, response: Response, caller: Self) -> Response:
    """End this web session (its cookie is cleared and its row deleted)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        caller.ctx.access.end_session(token_digest(session_id))
    caller.audit("auth.logout", security=True)
    out = Response(status_code=204)
    out.delete_cookie(SESSION_COOKIE)
    out.delete_cookie(CSRF_COOKIE)
    return out


@router.get("/auth/me", response_model=Me)
def me(caller: Self) -> Me:
    """Who you are signed in as, your roles and what they allow."""
    user = caller.ctx.access.user(caller.username)
    p = caller.principal
    return Me(
        username=p.username,
        display_name=user.display_name if user else "",
        member=p.member,
        roles=sorted(p.roles),
        permissions=sorted(p.permissions),
        via=p.via,
    )


@router.post("/auth/password", status_code=204)
def change_password(form: PasswordChange, request: Request, caller: Self) -> Response:
    """Change your password (the current one is checked; every session ends)."""
    ctx = caller.ctx
    sign_in(ctx, request, caller.username, form.current)
    reasons = check_policy(form.new, username=caller.username)
    if reasons:
        raise ServiceError(422, "; ".join(reasons), field="new")
    ctx.access.set_password(caller.username, hash_password(form.new), now=now_ns())
    ctx.access.end_sessions(caller.username)
    caller.audit("auth.password_changed", security=True)
    return Response(status_code=204)


@router.post("/auth/api-keys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(form: ApiKeyRequest, caller: Self) -> ApiKeyCreated:
    """A new API key for yourself; the key is shown once and stored only hashed."""
    key_id, full, digest = new_api_key()
    now = now_ns()
    expires = now + form.days * 86_400 * NS
    caller.ctx.access.add_api_key(ApiKey(key_id, caller.username, digest, form.name, now, expires))
    caller.audit("auth.api_key_created", subject=key_id, security=True)
    return ApiKeyCreated(key_id=key_id, key=full, name=form.name, expires=iso(expires))


@router.get("/auth/api-keys", response_model=list[ApiKeyInfo])
def list_api_keys(caller: Self) -> list[ApiKeyInfo]:
    return [
        ApiKeyInfo(
            key_id=k.key_id,
            name=k.name,
            created=iso(k.created_time),
            expires=iso(k.expires_time),
            revoked=None if k.revoked_time is None else iso(k.revoked_time),
        )
        for k in caller.ctx.access.api_keys(caller.username)
    ]


@router.delete("/auth/api-keys/{key_id}", status_code=204)
def revoke_api_key(key_id: str, caller: Self) -> Response:
    key = caller.ctx.access.api_key(key_id)
    if key is None or key.username != caller.username:
        raise ServiceError(404, f"no API key {key_id!r}", field="key_id")
    caller.ctx.access.revoke_api_key(key_id, now=now_ns())
    caller.audit("auth.api_key_revoked", subject=key_id, security=True)
    return Response(status_code=204)


def _user_info(u: User) -> UserInfo:
    return UserInfo(
        username=u.username,
        display_name=u.display_name,
        member=u.member,
        roles=list(u.roles),
        disabled=u.disabled,
        locked_until=iso(u.locked_until) if u.locked_until > now_ns() else None,
    )


@router.get("/users", response_model=list[UserInfo])
def users(caller: Admin) -> list[UserInfo]:
    """Users you administer: your member's (a member administrator) or everyone."""
    return [
        _user_info(u)
        for u in caller.ctx.access.users()
        if caller.principal.house or u.member == caller.principal.member
    ]


@router.post("/users", response_model=UserCreated, status_code=201)
def create_user(form: NewUser, caller: Admin) -> UserCreated:
    """Add a user. A member administrator adds its own member's users with member roles
    only; a clearing-house user (no member) holds house roles only. Without a password one
    is generated and shown once."""
    try:
        roles = parse_roles(tuple(form.roles))
    except ValueError as exc:
        raise ServiceError(422, str(exc), field="roles") from None
    member = form.member if caller.principal.house else caller.principal.member
    if not caller.principal.house and form.member not in (None, caller.principal.member):
        # Another member is out of scope: not found, as everywhere, so that its existence
        # is not told.
        raise NotFoundError("member", form.member)
    if member is not None and not roles <= MEMBER_ROLES:
        raise ServiceError(422, "a member's user holds member roles only", field="roles")
    if member is None and roles & MEMBER_ROLES:
        raise ServiceError(422, "member roles need a member", field="member")
    if Role.ADMIN in roles and Role.ADMIN not in caller.principal.roles:
        raise ServiceError(403, "only an administrator makes an administrator")
    password = form.password or generate_password(username=form.username)
    reasons = check_policy(password, username=form.username)
    if reasons:
        raise ServiceError(422, "; ".join(reasons), field="password")
    if caller.ctx.access.user(form.username) is not None:
        raise ServiceError(409, f"user {form.username!r} exists", field="username")
    user = caller.ctx.access.add_user(
        form.username,
        password_hash=hash_password(password),
        roles=sorted(roles),
        member=member,
        display_name=form.display_name,
        now=now_ns(),
    )
    caller.audit(
        "user.created",
        subject=form.username,
        member=member,
        security=True,
        detail={"roles": sorted(roles)},
    )
    shown = None if form.password else password
    return UserCreated(**_user_info(user).model_dump(), password=shown)
