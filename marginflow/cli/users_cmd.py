"""``marginflow users``: manage the service's users from the operator's shell (the API does
the same for administrators): list, add, reset a password, disable, enable. Every change is
audited with the operating-system user as the actor; a generated password is printed once
and stored only as its argon2 hash."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

from marginflow.cli.output import fail, print_json, say_fields, table
from marginflow.cli.trace_cmd import DbOpt, JsonOpt, PrefixOpt, store_url

users_app = typer.Typer(help="The service's users: list, add, reset-password, disable, enable.")
DirOpt = Annotated[
    Path,
    typer.Option("--dir", help="the platform directory (its store and service secrets)"),
]
DEFAULT_DIR = Path("var/platform")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _context(directory: Path, db: str | None, prefix: str) -> Any:
    import logging

    from marginflow.core.errors import MarginflowError
    from marginflow.service.config import ServiceConfig
    from marginflow.service.context import ServiceContext
    from marginflow.service.secrets_store import load_or_create
    from marginflow.store import Database

    # the audit trail in the store is the record here; the service's JSON log lines are for
    # the running service's SIEM feed, not for this terminal
    quiet = logging.getLogger("marginflow.service")
    quiet.handlers[:] = [logging.NullHandler()]
    quiet.propagate = False
    url = store_url(directory, db)
    try:
        secrets, _ = load_or_create(directory / "service")
        config = ServiceConfig(db_url=url, directory=directory / "service", prefix=prefix)
        return ServiceContext(config, Database(url, prefix=prefix), secrets)
    except MarginflowError as exc:
        fail(str(exc))


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@users_app.command("list")
def list_users(
    directory: DirOpt = DEFAULT_DIR,
    db: DbOpt = None,
    prefix: PrefixOpt = "mf_",
    as_json: JsonOpt = False,
) -> None:
    """Every user with roles, member and state (no secret is ever shown)."""
    import time

    ctx = _context(directory, db, prefix)
    now = time.time_ns()
    rows = [
        {
            "username": u.username,
            "member": u.member or "(clearing house)",
            "roles": ",".join(u.roles),
            "state": "disabled" if u.disabled else ("locked" if u.locked_until > now else "ok"),
            "failed": u.failed_logins,
        }
        for u in ctx.access.users()
    ]
    ctx.close()
    if as_json:
        print_json(rows)
    else:
        table("users", list(rows[0]) if rows else ["username"], [list(r.values()) for r in rows])


@users_app.command("add")
def add_user(
    username: Annotated[str, typer.Argument(help="lower-case letters, digits, . _ -")],
    roles: Annotated[str, typer.Option(help="comma-separated roles, e.g. member-user")],
    member: Annotated[str | None, typer.Option(help="the member (none: clearing house)")] = None,
    name: Annotated[str, typer.Option(help="display name")] = "",
    directory: DirOpt = DEFAULT_DIR,
    db: DbOpt = None,
    prefix: PrefixOpt = "mf_",
) -> None:
    """Add a user with a generated password, printed once."""
    import re

    from marginflow.service.context import now_ns
    from marginflow.service.passwords import generate_password, hash_password
    from marginflow.service.roles import MEMBER_ROLES, parse_roles

    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,63}", username):
        fail(f"username {username!r}: lower-case letters, digits, '.', '_', '-' (2-64)")
    try:
        parsed = parse_roles(roles)
    except ValueError as exc:
        fail(f"--roles: {exc}")
    if not parsed:
        fail("--roles: give at least one role")
    if member is not None and not parsed <= MEMBER_ROLES:
        fail("--roles: a member's user holds member roles only (member-user, member-admin)")
    if member is None and parsed & MEMBER_ROLES:
        fail("--member: member roles need a member")
    ctx = _context(directory, db, prefix)
    if ctx.access.user(username) is not None:
        ctx.close()
        fail(f"user {username!r} exists")
    password = generate_password(username=username)
    ctx.access.add_user(
        username,
        password_hash=hash_password(password),
        roles=sorted(parsed),
        member=member,
        display_name=name,
        now=now_ns(),
    )
    ctx.record(
        actor=_actor(),
        action="user.created",
        subject=username,
        member=member,
        security=True,
        detail={"roles": sorted(parsed)},
    )
    ctx.close()
    say_fields(username, password)


def _change(username: str, directory: Path, db: str | None, prefix: str, what: str) -> None:
    from marginflow.service.context import now_ns
    from marginflow.service.passwords import generate_password, hash_password

    ctx = _context(directory, db, prefix)
    user = ctx.access.user(username)
    if user is None:
        ctx.close()
        fail(f"no user {username!r}")
    shown = None
    if what == "reset-password":
        shown = generate_password(username=username)
        ctx.access.set_password(username, hash_password(shown), now=now_ns())
        ctx.access.record_success(username)  # a reset also lifts a lock
    else:
        ctx.access.set_disabled(username, what == "disable")
    ctx.access.end_sessions(username)
    ctx.record(
        actor=_actor(), action=f"user.{what}", subject=username, member=user.member, security=True
    )
    ctx.close()
    if shown is not None:
        say_fields(username, shown)


@users_app.command("reset-password")
def reset_password(
    username: str, directory: DirOpt = DEFAULT_DIR, db: DbOpt = None, prefix: PrefixOpt = "mf_"
) -> None:
    """Give a user a new generated password (printed once); lifts a lockout."""
    _change(username, directory, db, prefix, "reset-password")


@users_app.command("disable")
def disable(
    username: str, directory: DirOpt = DEFAULT_DIR, db: DbOpt = None, prefix: PrefixOpt = "mf_"
) -> None:
    """Stop a user signing in (their sessions end; tokens and keys stop working)."""
    _change(username, directory, db, prefix, "disable")


@users_app.command("enable")
def enable(
    username: str, directory: DirOpt = DEFAULT_DIR, db: DbOpt = None, prefix: PrefixOpt = "mf_"
) -> None:
    _change(username, directory, db, prefix, "enable")
