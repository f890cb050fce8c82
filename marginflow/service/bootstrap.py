"""First run: when the store has no user yet, make one user per role (and a second member's
user, so a member's view can be compared with another's), each with a generated password
that is returned once to be printed and is never stored except as its argon2 hash."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from marginflow.service.context import ServiceContext, now_ns
from marginflow.service.passwords import generate_password, hash_password
from marginflow.service.roles import Role


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    password: str
    roles: tuple[str, ...]
    member: str | None


def demo_users(
    members: Sequence[str], simm_party: str | None = None
) -> list[tuple[str, tuple[Role, ...], str | None, str]]:
    """(username, roles, member, display name) of the first-run users over ``members``."""
    first = members[0] if members else "M001"
    second = members[1] if len(members) > 1 else None
    out: list[tuple[str, tuple[Role, ...], str | None, str]] = [
        (f"{first.lower()}.user", (Role.MEMBER_USER,), first, f"{first} risk desk"),
        (f"{first.lower()}.admin", (Role.MEMBER_ADMIN,), first, f"{first} administrator"),
    ]
    if second is not None:
        out.append((f"{second.lower()}.user", (Role.MEMBER_USER,), second, f"{second} risk desk"))
    if simm_party is not None:
        out.append(
            (
                f"{simm_party.lower()}.user",
                (Role.MEMBER_USER,),
                simm_party,
                f"{simm_party} SIMM desk",
            )
        )
    out += [
        ("risk.analyst", (Role.RISK_ANALYST,), None, "Risk analyst"),
        ("risk.approver", (Role.RISK_APPROVER,), None, "Chief risk officer"),
        ("ops", (Role.OPERATIONS,), None, "Operations"),
        ("auditor", (Role.AUDITOR,), None, "Internal audit"),
        ("admin", (Role.ADMIN,), None, "Administrator"),
    ]
    return out


def first_run_users(
    ctx: ServiceContext, members: Sequence[str], *, simm_party: str | None = None
) -> list[Credential]:
    """Make the first-run users if the store has none; their generated passwords (empty
    list if users exist already)."""
    if ctx.access.users():
        return []
    made = []
    for username, roles, member, name in demo_users(members, simm_party):
        password = generate_password(username=username)
        ctx.access.add_user(
            username,
            password_hash=hash_password(password),
            roles=[str(r) for r in roles],
            member=member,
            display_name=name,
            now=now_ns(),
        )
        ctx.record(
            actor="system",
            action="user.created",
            subject=username,
            member=member,
            security=True,
            detail={"roles": [str(r) for r in roles], "first_run": True},
        )
        made.append(Credential(username, password, tuple(str(r) for r in roles), member))
    return made
