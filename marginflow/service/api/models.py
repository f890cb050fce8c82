"""The API's pydantic models: what requests carry and responses hold."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from marginflow.store import MemberMargin, StoredMargin

T = TypeVar("T")
MAX_INT64 = 2**63 - 1
"""The largest integer the store holds: a bound on every integer a request may carry into
a query (a larger one would overflow the driver and fail the request)."""


def iso(ns: int) -> str:
    """UTC nanoseconds as ISO 8601 (microseconds)."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).isoformat()


class ErrorDetail(BaseModel):
    status: int
    code: str
    field: str | None
    reason: str
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items``, how many match in all, and where the page starts."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Margin(BaseModel):
    """A stored account margin with its breakdown and what it was computed from. Amounts
    in the book's currency; ``time`` is the event time of the input that produced it."""

    model_config = ConfigDict(from_attributes=True)
    account: str
    member: str
    margin: float
    model: str
    es: float | None
    var: float | None
    apc: float | None
    concentration: float | None
    driver: str
    business_date: str
    time: str
    event_time_ns: int
    position_version: int
    market_offset: int
    market_from: int | None = Field(
        None,
        description="first market-topic offset the computing micro-batch read (it covered "
        "market_from .. market_offset; equal when it read none); null before this was kept",
    )
    market_ticks: int | None = Field(
        None, description="price and vol ticks that batch accepted (coalesced per underlying)"
    )
    market_moves: int | None = Field(
        None, description="underlyings that batch moved in the engine (the ticks coalesced)"
    )
    settings: str
    book_load: str

    @classmethod
    def of(cls, m: StoredMargin) -> Margin:
        return cls(
            account=m.account,
            member=m.member,
            margin=m.margin,
            model=m.model,
            es=m.es,
            var=m.var,
            apc=m.apc,
            concentration=m.concentration,
            driver=m.driver,
            business_date=m.business_date,
            time=iso(m.event_time),
            event_time_ns=m.event_time,
            position_version=m.position_version,
            market_offset=m.market_offset,
            market_from=m.market_from,
            market_ticks=m.market_ticks,
            market_moves=m.market_moves,
            settings=m.settings,
            book_load=m.book_load,
        )


class Member(BaseModel):
    member: str
    margin: float
    accounts: int

    @classmethod
    def of(cls, m: MemberMargin) -> Member:
        return cls(member=m.member, margin=m.margin, accounts=m.accounts)


class Firm(BaseModel):
    margin: float
    members: list[Member]


class MemberAt(BaseModel):
    member: str
    at: str
    margin: float
    accounts: list[Margin]


class Position(BaseModel):
    instrument: str
    quantity: int


class Positions(BaseModel):
    account: str
    member: str
    version: int
    positions: list[Position]


class Me(BaseModel):
    username: str
    display_name: str
    member: str | None
    roles: list[str]
    permissions: list[str]
    via: str


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class LoginResult(BaseModel):
    username: str
    member: str | None
    roles: list[str]
    csrf_token: str
    expires: str


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth token type, not a secret)
    expires_in: int


class PasswordChange(BaseModel):
    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=1, max_length=1024)


class ApiKeyRequest(BaseModel):
    name: str = Field(default="", max_length=100)
    days: int = Field(default=90, ge=1, le=365)


class ApiKeyCreated(BaseModel):
    key_id: str
    key: str  # shown once
    name: str
    expires: str


class ApiKeyInfo(BaseModel):
    key_id: str
    name: str
    created: str
    expires: str
    revoked: str | None


class NewUser(BaseModel):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    display_name: str = Field(default="", max_length=128)
    member: str | None = Field(default=None, max_length=64)
    roles: list[str] = Field(min_length=1, max_length=7)
    password: str | None = Field(default=None, max_length=1024)  # None: generated


class UserInfo(BaseModel):
    username: str
    display_name: str
    member: str | None
    roles: list[str]
    disabled: bool
    locked_until: str | None


class UserCreated(UserInfo):
    password: str | None  # the generated password, shown once


JsonObject = dict[str, Any]
