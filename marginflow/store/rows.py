"""The store's typed rows: what is written and what reads return. They are the store's own
types (the stream's events are mapped onto them by the sink), so the store sits below the
stream and a reader such as the service needs nothing of the log.

Times are UTC nanoseconds since the epoch; amounts in the result's currency.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StoredMargin:
    """One account margin and what it was computed from: the positions at
    ``position_version`` (the trades-topic offset of the last change applied, on
    ``source_partition``) and the market at ``market_offset`` (the market topic's offset),
    under the settings with fingerprint ``settings`` started from book load ``book_load``.
    ``es``, ``var``, ``apc`` and ``concentration`` break the margin down (None where the
    model has no such part); ``driver`` labels the scenario at the ES tail's edge.
    ``market_from``, ``market_ticks`` and ``market_moves`` say what the micro-batch that
    computed it covered on the market topic (offsets ``market_from`` .. ``market_offset``,
    its price and vol ticks, the underlying moves they were coalesced into; None for
    margins stored before they were recorded: see
    :class:`marginflow.stream.events.AccountMargin`)."""

    account: str
    member: str
    margin: float
    model: str
    source_partition: int
    position_version: int
    market_offset: int
    event_time: int
    computed_time: int
    es: float | None = None
    var: float | None = None
    apc: float | None = None
    concentration: float | None = None
    driver: str = ""
    settings: str = ""
    book_load: str = ""
    business_date: str = ""
    market_from: int | None = None
    market_ticks: int | None = None
    market_moves: int | None = None

    @property
    def time(self) -> dt.datetime:
        """``event_time`` as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.event_time / 1e9, tz=dt.UTC)


@dataclass(frozen=True, slots=True)
class MemberPartial:
    """A member's margin over the accounts of one margins partition."""

    member: str
    source_partition: int
    margin: float
    accounts: int
    source_offset: int
    event_time: int


@dataclass(frozen=True, slots=True)
class MemberMargin:
    """A member's margin (the sum of its accounts') and how many accounts it covers."""

    member: str
    margin: float
    accounts: int


@dataclass(frozen=True, slots=True)
class Reject:
    """A dead letter: the input kept whole (``raw``), where it came from and why it was
    refused (``field``, ``reason``)."""

    source_topic: str
    source_partition: int
    source_offset: int
    field: str
    reason: str
    raw: bytes
    event_time: int


@dataclass(frozen=True, slots=True)
class SimmLine:
    """One line of a SIMM breakdown (see :class:`marginflow.stream.events.SimmLine`)."""

    side: str
    model: str
    product_class: str
    risk_class: str
    margin_type: str
    margin: float


@dataclass(frozen=True, slots=True)
class StoredSimm:
    """A SIMM result of one (party, portfolio, business date), amounts in ``currency``."""

    party: str
    portfolio: str
    business_date: str
    counterparty: str
    submission_id: str
    simm_version: str
    mpor_days: int
    currency: str
    collect_im: float
    post_im: float
    collect_regulation: str
    post_regulation: str
    rows: int
    breakdown: tuple[SimmLine, ...]
    source_partition: int
    source_offset: int
    event_time: int = 0
    computed_time: int = 0


@dataclass(frozen=True, slots=True)
class AuditedChange:
    """A risk-parameter change as recorded: what was changed, by whom (``requested_by``),
    approved by whom, and where on the log it was read."""

    change_id: str
    model: str
    parameter: str
    value: float | str
    requested_by: str
    approved_by: str
    effective_time: int
    event_time: int
    source_topic: str
    source_partition: int
    source_offset: int

    def content(self) -> tuple[Any, ...]:
        """What the change says (not where it was read): equal for a producer's retry."""
        return (
            self.change_id,
            self.model,
            self.parameter,
            self.value,
            self.requested_by,
            self.approved_by,
            self.effective_time,
            self.event_time,
        )


@dataclass(frozen=True, slots=True)
class PositionChange:
    """An account's new absolute quantities of the instruments that changed, at
    ``version`` (the trades-topic offset of the last input applied)."""

    account: str
    version: int
    source_partition: int
    event_time: int
    instruments: tuple[str, ...]
    quantities: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MarketRecord:
    """One market-topic event as it was on the log (``payload``, the wire bytes) at
    ``offset``; ``kind`` is its type tag and ``underlying`` its underlying, if any."""

    offset: int
    kind: str
    underlying: str
    event_time: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class BookLoad:
    """A start-of-day load: the book files the calculators read (by their fingerprint
    ``book``) and the margin settings they ran with (``settings``, JSON form). ``id`` is the
    fingerprint of both, which each stored margin names."""

    id: str
    book: str
    settings: dict[str, Any]
    valuation_date: str
    source: str
    loaded_time: int


# -- the service's rows (migration 0003) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """A person who signs in. ``member`` None is a clearing-house user (every member);
    ``roles`` are role names (the service defines them). Only the password's hash is kept."""

    username: str
    display_name: str
    member: str | None
    roles: tuple[str, ...]
    password_hash: str
    failed_logins: int
    locked_until: int
    disabled: bool
    created_time: int
    password_time: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key: its public id, its owner and the hash of its secret."""

    key_id: str
    username: str
    key_hash: str
    name: str
    created_time: int
    expires_time: int
    revoked_time: int | None = None


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in browser: the digests of its session id and CSRF token."""

    id_digest: str
    username: str
    csrf_digest: str
    created_time: int
    expires_time: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the tamper-evident audit log. ``hash`` covers every other field and
    ``prev_hash`` (the previous entry's hash), so an altered, removed or reordered entry
    breaks the chain where it happened. ``security`` marks what a SIEM alerts on (logins,
    failures, denials, changes of risk parameters or access)."""

    seq: int
    time: int
    actor: str
    action: str
    outcome: str
    subject: str
    member: str | None
    security: bool
    request_id: str
    client: str
    detail: str  # canonical JSON
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed risk-parameter change and, once decided, who decided it and how. It takes
    effect only when approved by someone other than its proposer."""

    id: str
    model: str
    parameter: str
    value: float | str
    reason: str
    proposed_by: str
    proposed_time: int
    status: str  # proposed | approved | rejected | withdrawn
    decided_by: str | None = None
    decided_time: int | None = None
    decision_note: str = ""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Blob:
    """An encrypted file the service keeps: an uploaded CRIF, an upload it refused, an
    export. ``content`` is the AES-GCM envelope; ``size`` the plaintext's bytes."""

    id: str
    kind: str
    owner: str
    member: str | None
    name: str
    content_type: str
    size: int
    key_id: str
    content: bytes
    detail: str
    created_time: int
