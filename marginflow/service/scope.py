"""The query scope: the one place that decides whose data a request may read.

Every read of member data in the service goes through :class:`Scope`, built from the
authenticated :class:`Principal`. A member's user sees its own member's accounts, margins,
positions, SIMM portfolios, uploads and audit entries; a clearing-house user (no member)
sees every member's. Something out of scope is answered as *not found*, exactly as
something that does not exist, so a member cannot learn which other accounts exist.
Endpoints never filter by member themselves; the authorisation matrix test checks every
endpoint against this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa

from marginflow.service.roles import Permission, Role, permissions
from marginflow.store import Database, MemberMargin, StoredMargin, StoredSimm
from marginflow.store.rows import Blob

UPLOAD_KINDS = ("crif-upload", "crif-rejected")
"""Blob kinds that are SIMM uploads (accepted, or refused as a whole and kept)."""


class ArrivalKey(NamedTuple):
    """Where a stored margin falls in arrival order: computed time (ns), then its key."""

    computed_time: int
    account: str
    position_version: int
    market_offset: int


def arrival_key(m: StoredMargin) -> ArrivalKey:
    return ArrivalKey(m.computed_time, m.account, m.position_version, m.market_offset)


class NotFoundError(LookupError):
    """Nothing of that name in the caller's scope (whether or not it exists elsewhere)."""

    def __init__(self, field: str, value: str) -> None:
        self.field, self.value = field, value
        super().__init__(f"{field}: no {field} {value!r}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a signed-in user, by session, bearer token or API key."""

    username: str
    roles: frozenset[Role]
    member: str | None  # None: the clearing house
    via: str  # "session", "token" or "api-key"

    @property
    def permissions(self) -> frozenset[Permission]:
        return permissions(self.roles)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def house(self) -> bool:
        """A clearing-house user (sees every member)."""
        return self.member is None


class Scope:
    """The reads of one principal over one store."""

    def __init__(self, db: Database, principal: Principal) -> None:
        self.db, self.principal = db, principal

    # -- members ----------------------------------------------------------------------------
    @property
    def member(self) -> str | None:
        """The only member in scope, or None for every member."""
        return self.principal.member

    def sees_member(self, member: str | None) -> bool:
        return self.principal.member is None or member == self.principal.member

    def check_member(self, member: str) -> str:
        """``member`` if in scope, else :class:`NotFoundError`."""
        if not self.sees_member(member) or not self.db.member_margins(member):
            raise NotFoundError("member", member)
        return member

    def member_margin(self, member: str) -> MemberMargin:
        """``member``'s current margin, or :class:`NotFoundError`."""
        self.check_member(member)
        return self.db.member_margins(member)[0]

    def members(self) -> list[MemberMargin]:
        return self.db.member_margins(self.member)

    def firm(self) -> float | None:
        """The firm's total margin, for the clearing house only (None for a member)."""
        return self.db.firm_margin() if self.principal.house else None

    # -- accounts, margins, positions -------------------------------------------------------
    def account(self, account: str) -> StoredMargin:
        """``account``'s latest margin (and so its member), or :class:`NotFoundError`."""
        found = self.db.current_margin(account)
        if found is None or not self.sees_member(found.member):
            raise NotFoundError("account", account)
        return found

    def accounts(
        self, *, member: str | None = None, limit: int, offset: int
    ) -> tuple[list[StoredMargin], int]:
        if member is not None:
            self.check_member(member)
        return self.db.current_margins(member=member or self.member, limit=limit, offset=offset)

    def margin_history(
        self,
        *,
        account: str | None = None,
        member: str | None = None,
        start: int | None = None,
        end: int | None = None,
        business_date: str | None = None,
        limit: int,
        offset: int = 0,
        newest_first: bool = False,
    ) -> tuple[list[StoredMargin], int]:
        if account is not None:
            self.account(account)
        if member is not None:
            self.check_member(member)
        filters: dict[str, Any] = {
            "account": account,
            "member": member or self.member,
            "start": start,
            "end": end,
            "business_date": business_date,
        }
        page = self.db.margin_history(
            **filters, limit=limit, offset=offset, newest_first=newest_first
        )
        return page, self.db.margin_history_count(**filters)

    def margin(
        self, account: str, *, version: int | None = None, at: int | None = None
    ) -> StoredMargin:
        """A stored margin of ``account`` (as :meth:`Database.margin`), or NotFoundError."""
        self.account(account)
        found = self.db.margin(account, version=version, at=at)
        if found is None:
            raise NotFoundError("margin", account)
        return found

    def positions(self, account: str, version: int | None = None) -> dict[str, int]:
        """``account``'s holdings at ``version`` (default: its latest margin's)."""
        current = self.account(account)
        return self.db.positions(account, current.position_version if version is None else version)

    def member_margin_at(self, member: str, at: int) -> tuple[float, list[StoredMargin]]:
        return self.db.member_margin_at(self.check_member(member), at)

    def margin_arrivals(
        self, *, after: ArrivalKey, upto: ArrivalKey | None = None, limit: int
    ) -> list[StoredMargin]:
        """Margins of the accounts in scope stored after ``after`` (and at or before
        ``upto``) in arrival order, at most ``limit``: what the live feed sends.

        Arrival order is :func:`arrival_key`, the computation time first: a parameter
        change or a late trade stores margins whose event time is older than one already
        sent, but never computed earlier. The rest of the key makes the order total, so a
        reader paging with the last key it saw neither skips nor repeats a row."""
        h = self.db.t.account_margin_history
        key = sa.tuple_(h.c.computed_time, h.c.account, h.c.position_version, h.c.market_offset)
        where = [key > sa.tuple_(*after), self.member_clause(h.c.member)]
        if upto is not None:
            where.append(key <= sa.tuple_(*upto))
        query = (
            sa.select(h)
            .where(*where)
            .order_by(h.c.computed_time, h.c.account, h.c.position_version, h.c.market_offset)
            .limit(limit)
        )
        with self.db.engine.connect() as conn:
            return [StoredMargin(**row._mapping) for row in conn.execute(query)]

    def last_arrival(self) -> ArrivalKey:
        """The arrival key of the newest margin in scope (all zero when there is none)."""
        h = self.db.t.account_margin_history
        query = (
            sa.select(h.c.computed_time, h.c.account, h.c.position_version, h.c.market_offset)
            .where(self.member_clause(h.c.member))
            .order_by(
                h.c.computed_time.desc(),
                h.c.account.desc(),
                h.c.position_version.desc(),
                h.c.market_offset.desc(),
            )
            .limit(1)
        )
        with self.db.engine.connect() as conn:
            row = conn.execute(query).first()
        return ArrivalKey(0, "", 0, 0) if row is None else ArrivalKey(*row)

    # -- SIMM -------------------------------------------------------------------------------
    def simm_results(self) -> list[StoredSimm]:
        """The current SIMM results of the parties in scope (a SIMM party is a member)."""
        return [s for s in self.db.simm_results().values() if self.sees_member(s.party)]

    def simm_history(self, portfolio: str) -> list[StoredSimm]:
        found = [s for s in self.db.simm_history() if s.portfolio == portfolio]
        visible = [s for s in found if self.sees_member(s.party)]
        if not visible:
            raise NotFoundError("portfolio", portfolio)
        return visible

    # -- SIMM uploads (encrypted blobs) ----------------------------------------------------
    def _uploads_where(self) -> sa.ColumnElement[bool]:
        b = self.db.t.blob
        return sa.and_(b.c.kind.in_(UPLOAD_KINDS), self.member_clause(b.c.member))

    def uploads(self, *, limit: int, offset: int) -> tuple[list[Blob], int]:
        """The SIMM uploads in scope, newest first, without their content (``b""``): an
        upload belongs to the member it was made for (its party)."""
        b = self.db.t.blob
        info = [c for c in b.c if c.name != "content"]
        where = self._uploads_where()
        query = (
            sa.select(*info)
            .where(where)
            .order_by(b.c.created_time.desc(), b.c.id)
            .limit(limit)
            .offset(offset)
        )
        rows = [Blob(**{**r._mapping, "content": b""}) for r in self.db._rows(query)]
        total = self.db._rows(sa.select(sa.func.count()).select_from(b).where(where))[0][0]
        return rows, int(total)

    def upload(self, upload_id: str) -> Blob:
        """The SIMM upload ``upload_id`` with its encrypted content, or NotFoundError."""
        b = self.db.t.blob
        rows = self.db._rows(sa.select(b).where(b.c.id == upload_id, self._uploads_where()))
        if not rows:
            raise NotFoundError("upload", upload_id)
        found = dict(rows[0]._mapping)
        return Blob(**{**found, "content": bytes(found["content"])})

    def portfolio_uploads(self, portfolio: str) -> list[Blob]:
        """The accepted uploads in scope whose result names ``portfolio``, oldest first,
        without their content (the result is in ``detail``)."""
        b = self.db.t.blob
        info = [c for c in b.c if c.name != "content"]
        query = (
            sa.select(*info)
            .where(
                b.c.kind == UPLOAD_KINDS[0],
                self.member_clause(b.c.member),
                # a cheap pre-filter; the caller reads the portfolios from the detail
                b.c.detail.contains(json.dumps(portfolio), autoescape=True),
            )
            .order_by(b.c.created_time, b.c.id)
        )
        return [Blob(**{**r._mapping, "content": b""}) for r in self.db._rows(query)]

    def simm_portfolio(self, portfolio: str) -> tuple[list[StoredSimm], list[Blob]]:
        """``portfolio``'s stream results and the uploads naming it, in scope; NotFoundError
        when there is neither."""
        try:
            stream = self.simm_history(portfolio)
        except NotFoundError:
            stream = []
        uploads = self.portfolio_uploads(portfolio)
        if not stream and not uploads:
            raise NotFoundError("portfolio", portfolio)
        return stream, uploads

    # -- for queries over tables ------------------------------------------------------------
    def member_clause(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """A WHERE clause keeping the rows of ``column``'s members in scope."""
        return sa.true() if self.member is None else column == self.member

    def accounts_clause(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """A WHERE clause keeping the rows whose account ``column`` is in scope."""
        if self.member is None:
            return sa.true()
        a = self.db.t.account_margin
        return column.in_(sa.select(a.c.account).where(a.c.member == self.member))

    def table_clause(self, table: str, source: sa.FromClause) -> sa.ColumnElement[bool]:
        """The WHERE clause keeping the rows in scope of ad hoc query table ``table`` (see
        :mod:`marginflow.service.api.query`) selected from ``source``. A table not named
        here is refused: a new queryable table must say how it is scoped."""
        c = source.c
        if table in ("margins", "members"):
            return self.member_clause(c.member)
        if table == "positions":
            return self.accounts_clause(c.account)
        if table == "simm":
            return self.member_clause(c.party)  # a SIMM party is a member
        raise ValueError(f"no scope is defined for table {table!r}")


def visible(scope: Scope, members: Sequence[str | None]) -> list[bool]:
    return [scope.sees_member(m) for m in members]
