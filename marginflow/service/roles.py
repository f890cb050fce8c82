"""Roles and what each may do. A permission names a kind of action; *whose* data it reaches
is the query scope's business (:mod:`marginflow.service.scope`): a member's roles reach its
own member's data only, the clearing house's roles every member's.

Stress testing and back-testing (``stress``, ``backtest``) recompute over the stored book:
the risk roles and a member's users may run them, a member's user seeing its own member's
rows only (the scope decides, in :mod:`marginflow.service.api.risk`); the whole-firm HTML
reports (``risk.reports``) hold every member's numbers and go to the risk roles only. The
administrator gets neither: it manages users and does not read members' data.

Separation of duties is in the table: who proposes a risk-parameter change (risk analyst)
cannot approve one (risk approver), the administrator who manages users cannot approve
changes or read the audit trail's verdicts alone, and the auditor reads but changes
nothing.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    MEMBER_USER = "member-user"
    MEMBER_ADMIN = "member-admin"
    RISK_ANALYST = "risk-analyst"
    RISK_APPROVER = "risk-approver"
    OPERATIONS = "operations"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read"  # members, accounts, positions, margins, SIMM results (in scope)
    WHAT_IF = "what-if"
    EXPLAIN = "explain"  # reproduce and explain a stored margin (recomputes: heavy)
    SIMM = "simm"  # upload a CRIF and margin it
    QUERY = "query"  # ad hoc read-only queries (in scope)
    EXPORT = "export"  # CSV and Parquet downloads (audited)
    PARAMETERS_READ = "parameters.read"
    PARAMETERS_PROPOSE = "parameters.propose"
    PARAMETERS_APPROVE = "parameters.approve"
    OPERATIONS = "operations"  # lag, drift, dead letters, readiness detail
    AUDIT = "audit"  # read and verify the audit trail
    USERS = "users"  # manage users (a member administrator: its own member's)
    SELF = "self"  # one's own profile and API keys: every signed-in user
    STRESS = "stress"  # stress the stored book (recomputes: heavy; a member sees its own rows)
    BACKTEST = "backtest"  # back-test the stored book (recomputes: heavy; in scope)
    RISK_REPORTS = "risk.reports"  # the whole-firm stress and back-test reports (every member)


MEMBER_ROLES = frozenset({Role.MEMBER_USER, Role.MEMBER_ADMIN})
"""Roles a member's user may hold (and the only ones): a member user never holds a house
role, so no member can reach another member's data through a role."""

_MEMBER = {
    Permission.READ,
    Permission.WHAT_IF,
    Permission.EXPLAIN,
    Permission.SIMM,
    Permission.QUERY,
    Permission.EXPORT,
    Permission.SELF,
    Permission.STRESS,
    Permission.BACKTEST,
}

GRANTS: dict[Role, frozenset[Permission]] = {
    Role.MEMBER_USER: frozenset(_MEMBER),
    Role.MEMBER_ADMIN: frozenset(_MEMBER | {Permission.USERS}),
    Role.RISK_ANALYST: frozenset(
        _MEMBER
        | {Permission.PARAMETERS_READ, Permission.PARAMETERS_PROPOSE, Permission.RISK_REPORTS}
    ),
    Role.RISK_APPROVER: frozenset(
        {
            Permission.READ,
            Permission.EXPLAIN,
            Permission.PARAMETERS_READ,
            Permission.PARAMETERS_APPROVE,
            Permission.SELF,
            Permission.STRESS,
            Permission.BACKTEST,
            Permission.RISK_REPORTS,
        }
    ),
    Role.OPERATIONS: frozenset({Permission.READ, Permission.OPERATIONS, Permission.SELF}),
    Role.AUDITOR: frozenset(
        {
            Permission.READ,
            Permission.PARAMETERS_READ,
            Permission.AUDIT,
            Permission.EXPORT,
            Permission.QUERY,
            Permission.SELF,
        }
    ),
    Role.ADMIN: frozenset({Permission.USERS, Permission.OPERATIONS, Permission.SELF}),
}


def permissions(roles: frozenset[Role]) -> frozenset[Permission]:
    """Everything ``roles`` together may do."""
    out: set[Permission] = set()
    for role in roles:
        out |= GRANTS[role]
    return frozenset(out)


def parse_roles(text: str | tuple[str, ...]) -> frozenset[Role]:
    """Role names (comma-separated text or a tuple) as roles; unknown names raise
    ValueError naming them."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    unknown = [n for n in names if n and n not in Role._value2member_map_]
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(map(repr, unknown))}")
    return frozenset(Role(n) for n in names if n)
