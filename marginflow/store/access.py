"""Who may sign in: users, API keys and web sessions, as the service keeps them. Secrets are
never stored: passwords as argon2 hashes, API keys and session ids as digests (the service
hashes them before they reach here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from marginflow.store.database import Database
from marginflow.store.rows import ApiKey, User, WebSession


def _user(row: Any) -> User:
    v = dict(row._mapping)
    v["roles"] = tuple(r for r in v["roles"].split(",") if r)
    v["disabled"] = bool(v["disabled"])
    return User(**v)


class Access:
    """Users, API keys and sessions of one store."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.t = db.t

    # -- users ------------------------------------------------------------------------------
    def add_user(
        self,
        username: str,
        *,
        password_hash: str,
        roles: Sequence[str],
        member: str | None,
        display_name: str = "",
        now: int,
    ) -> User:
        row = {
            "username": username,
            "display_name": display_name,
            "member": member,
            "roles": ",".join(roles),
            "password_hash": password_hash,
            "failed_logins": 0,
            "locked_until": 0,
            "disabled": False,
            "created_time": now,
            "password_time": now,
        }
        with self.db.transaction() as conn:
            conn.execute(sa.insert(self.t.user), row)
        return _user(_Row(row))

    def user(self, username: str) -> User | None:
        u = self.t.user
        rows = self.db._rows(sa.select(u).where(u.c.username == username))
        return _user(rows[0]) if rows else None

    def users(self) -> list[User]:
        u = self.t.user
        return [_user(r) for r in self.db._rows(sa.select(u).order_by(u.c.username))]

    def set_password(self, username: str, password_hash: str, *, now: int) -> None:
        u = self.t.user
        with self.db.transaction() as conn:
            conn.execute(
                sa.update(u)
                .where(u.c.username == username)
                .values(password_hash=password_hash, password_time=now)
            )

    def record_failure(self, username: str, *, now: int, lock_after: int, lock_ns: int) -> User:
        """Count a failed sign-in; from the ``lock_after``-th failure in a row the account
        is locked for ``lock_ns`` doubled at each further failure (backoff). Returns the
        user as it is now. Counted in the database so every replica sees it."""
        u = self.t.user
        with self.db.transaction() as conn:
            conn.execute(
                sa.update(u)
                .where(u.c.username == username)
                .values(failed_logins=u.c.failed_logins + 1)
            )
            row = conn.execute(sa.select(u).where(u.c.username == username)).one()
            failures = int(row.failed_logins)
            if failures >= lock_after:
                extra = min(failures - lock_after, 10)  # at most 1024x
                until = now + lock_ns * (2**extra)
                conn.execute(
                    sa.update(u).where(u.c.username == username).values(locked_until=until)
                )
                row = conn.execute(sa.select(u).where(u.c.username == username)).one()
        return _user(row)

    def record_success(self, username: str) -> None:
        u = self.t.user
        with self.db.transaction() as conn:
            conn.execute(
                sa.update(u).where(u.c.username == username).values(failed_logins=0, locked_until=0)
            )

    def set_disabled(self, username: str, disabled: bool) -> None:
        u = self.t.user
        with self.db.transaction() as conn:
            conn.execute(sa.update(u).where(u.c.username == username).values(disabled=disabled))

    # -- API keys ---------------------------------------------------------------------------
    def add_api_key(self, key: ApiKey) -> None:
        with self.db.transaction() as conn:
            conn.execute(sa.insert(self.t.api_key), _fields(key))

    def api_key(self, key_id: str) -> ApiKey | None:
        k = self.t.api_key
        rows = self.db._rows(sa.select(k).where(k.c.key_id == key_id))
        return ApiKey(**dict(rows[0]._mapping)) if rows else None

    def api_keys(self, username: str) -> list[ApiKey]:
        k = self.t.api_key
        query = sa.select(k).where(k.c.username == username).order_by(k.c.created_time)
        return [ApiKey(**dict(r._mapping)) for r in self.db._rows(query)]

    def revoke_api_key(self, key_id: str, *, now: int) -> bool:
        k = self.t.api_key
        with self.db.transaction() as conn:
            done = conn.execute(
                sa.update(k)
                .where(k.c.key_id == key_id, k.c.revoked_time.is_(None))
                .values(revoked_time=now)
            )
        return bool(done.rowcount)

    # -- sessions ---------------------------------------------------------------------------
    def add_session(self, session: WebSession) -> None:
        with self.db.transaction() as conn:
            conn.execute(sa.insert(self.t.session), _fields(session))

    def session(self, id_digest: str, *, now: int) -> WebSession | None:
        """The live session with this id digest (None if unknown or expired)."""
        s = self.t.session
        query = sa.select(s).where(s.c.id_digest == id_digest, s.c.expires_time > now)
        rows = self.db._rows(query)
        return WebSession(**dict(rows[0]._mapping)) if rows else None

    def end_session(self, id_digest: str) -> None:
        s = self.t.session
        with self.db.transaction() as conn:
            conn.execute(sa.delete(s).where(s.c.id_digest == id_digest))

    def end_sessions(self, username: str) -> None:
        """Sign ``username`` out everywhere (a password change, a disabled user)."""
        s = self.t.session
        with self.db.transaction() as conn:
            conn.execute(sa.delete(s).where(s.c.username == username))

    def purge_sessions(self, *, now: int) -> None:
        s = self.t.session
        with self.db.transaction() as conn:
            conn.execute(sa.delete(s).where(s.c.expires_time <= now))


class _Row:
    """A mapping dressed as a result row (for rows built here, not read)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._mapping = values


def _fields(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__slots__}
