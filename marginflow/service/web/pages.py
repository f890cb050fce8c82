"""The pages' routes: each renders a shell (Jinja2, autoescaped) whose script reads the API.

A page declares a permission as an API endpoint does (:func:`page`); a browser without a
session is sent to ``/login`` (an API call gets its JSON 401 instead), and one whose roles
do not allow the page gets a page saying so (403). The navigation lists only the pages the
user's permissions allow. The pages hold no data of their own: whatever they show comes
from the API, so the query scope decides it there. Static files (CSS, scripts) are public:
they hold no data either.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from marginflow.service.auth import Caller, authenticate, context, require
from marginflow.service.errors import ServiceError
from marginflow.service.roles import Permission
from marginflow.service.scope import Principal

WEB = Path(__file__).resolve().parent
STATIC = WEB / "static"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(WEB / "templates"),
    autoescape=True,  # every value is escaped: user text is shown literally
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

NAV: tuple[tuple[str, str, Permission], ...] = (
    ("/", "Margins", Permission.READ),
    ("/what-if", "What-if", Permission.WHAT_IF),
    ("/simm", "SIMM", Permission.SIMM),
    ("/stress", "Stress", Permission.STRESS),
    ("/backtest", "Back-test", Permission.BACKTEST),
    ("/parameters", "Parameters", Permission.PARAMETERS_READ),
    ("/ops", "Lag and drift", Permission.OPERATIONS),
    ("/audit", "Audit log", Permission.AUDIT),
)
"""The pages in the navigation: path, label, and the permission each needs."""

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Visit:
    """A page request: the caller, or why not (no session: sign in; roles: not allowed)."""

    caller: Caller | None
    sign_in: Response | None = None
    denied: tuple[Principal, str] | None = None


def _next_of(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return quote(target, safe="/?=&")


def page(permission: Permission) -> Callable[[Request], Awaitable[Visit]]:
    """The dependency of a page that needs ``permission`` (declared like an endpoint's)."""
    check = require(permission)

    async def dependency(request: Request) -> Visit:
        try:
            return Visit(await check(request))
        except ServiceError as exc:
            if exc.status == 401:
                where = f"/login?next={_next_of(request)}"
                return Visit(None, sign_in=RedirectResponse(where, status_code=303))
            principal = await run_in_threadpool(authenticate, request)
            return Visit(None, denied=(principal, exc.reason))

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def _nav(principal: Principal) -> list[dict[str, str]]:
    return [{"path": p, "label": label} for p, label, need in NAV if principal.can(need)]


def render(
    request: Request,
    template: str,
    *,
    principal: Principal | None,
    title: str,
    script: str,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """``template`` with the page frame's values (user, navigation, the page's script)."""
    user: dict[str, Any] | None = None
    nav: list[dict[str, str]] = []
    if principal is not None:
        row = request.app.state.users.get(context(request), principal.username)
        user = {
            "username": principal.username,
            "name": (row.display_name if row else "") or principal.username,
            "member": principal.member,
            "roles": ", ".join(sorted(principal.roles)),
        }
        nav = _nav(principal)
    html = _env.get_template(template).render(
        title=title, script=script, user=user, nav=nav, path=request.url.path, **values
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _forbidden(request: Request, principal: Principal, reason: str) -> HTMLResponse:
    return render(
        request,
        "forbidden.html",
        principal=principal,
        title="Not allowed",
        script="frame",
        status=403,
        reason=reason,
    )


def _show(
    visit: Visit, request: Request, template: str, title: str, script: str, **values: Any
) -> Response:
    if visit.sign_in is not None:
        return visit.sign_in
    if visit.denied is not None:
        return _forbidden(request, *visit.denied)
    assert visit.caller is not None
    return render(
        request, template, principal=visit.caller.principal, title=title, script=script, **values
    )


Signed = Annotated[Visit, Depends(page(Permission.SELF))]
Reader = Annotated[Visit, Depends(page(Permission.READ))]


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, visit: Signed) -> Response:
    """Margins by member and account with their history; a user who may not read margins
    is sent to the first page their roles allow."""
    if visit.caller is not None and not visit.caller.principal.can(Permission.READ):
        allowed = _nav(visit.caller.principal)
        if allowed:
            return RedirectResponse(allowed[0]["path"], status_code=303)
        return _forbidden(request, visit.caller.principal, "your roles show no page")
    return _show(visit, request, "dashboard.html", "Margins", "dashboard")


@router.get("/accounts/{account}", response_class=HTMLResponse)
def account(account: str, request: Request, visit: Reader) -> Response:
    """One account's drill-down: breakdown, positions, contributions, history and the
    scenario P&L distribution."""
    return _show(visit, request, "account.html", f"Account {account}", "account", account=account)


@router.get("/what-if", response_class=HTMLResponse)
def what_if(
    request: Request, visit: Annotated[Visit, Depends(page(Permission.WHAT_IF))]
) -> Response:
    return _show(visit, request, "what_if.html", "What-if margin", "what_if")


@router.get("/simm", response_class=HTMLResponse)
def simm(request: Request, visit: Annotated[Visit, Depends(page(Permission.SIMM))]) -> Response:
    return _show(visit, request, "simm.html", "SIMM", "simm")


@router.get("/stress", response_class=HTMLResponse)
def stress(request: Request, visit: Annotated[Visit, Depends(page(Permission.STRESS))]) -> Response:
    """Stress losses by member, Cover-1 / Cover-2 and the worst accounts' P&L over the
    stress scenarios, of the stored book (``POST /api/v1/stress``)."""
    return _show(visit, request, "stress.html", "Stress test", "stress", reports=_reports(visit))


@router.get("/backtest", response_class=HTMLResponse)
def backtest(
    request: Request, visit: Annotated[Visit, Depends(page(Permission.BACKTEST))]
) -> Response:
    """Margin against realised P&L with breaches marked, and the coverage table with zones,
    of the stored book (``POST /api/v1/backtest``)."""
    return _show(
        visit, request, "backtest.html", "Margin back-test", "backtest", reports=_reports(visit)
    )


def _reports(visit: Visit) -> bool:
    """Whether the page offers the whole-firm HTML report (``risk.reports``)."""
    return visit.caller is not None and visit.caller.principal.can(Permission.RISK_REPORTS)


@router.get("/parameters", response_class=HTMLResponse)
def parameters(
    request: Request, visit: Annotated[Visit, Depends(page(Permission.PARAMETERS_READ))]
) -> Response:
    return _show(visit, request, "parameters.html", "Risk parameters", "parameters")


@router.get("/ops", response_class=HTMLResponse)
def ops(
    request: Request, visit: Annotated[Visit, Depends(page(Permission.OPERATIONS))]
) -> Response:
    return _show(visit, request, "ops.html", "Lag and drift", "ops")


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, visit: Annotated[Visit, Depends(page(Permission.AUDIT))]) -> Response:
    return _show(visit, request, "audit.html", "Audit log", "audit")


@router.get("/login", response_class=HTMLResponse)
def login(request: Request) -> Response:
    """The sign-in form (public). Its script posts to ``/api/v1/auth/login``."""
    return render(request, "login.html", principal=None, title="Sign in", script="login")


def _static_files() -> dict[str, Path]:
    return {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file()}


_FILES = _static_files()
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@router.get("/static/{name:path}")
def static(name: str) -> Response:
    """A file shipped with the pages (public: scripts and styles, no data); only files
    that exist under ``static/`` when the service starts are served."""
    found = _FILES.get(name)
    if found is None:
        raise ServiceError(404, f"no static file {name!r}", field="name")
    media = _TYPES.get(found.suffix) or mimetypes.guess_type(found.name)[0] or "text/plain"
    return FileResponse(found, media_type=media, headers={"Cache-Control": "no-cache"})
