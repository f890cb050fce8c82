"""Use cases over a stored margin that need the engine: an account's full breakdown (every
position's contribution), its P&L under every scenario with the expected-shortfall tail
marked, and what-if margin for hypothetical trades (a series not yet listed may be defined
inline). All are computed from the store alone, as ``reproduce`` is, on the market and
settings the stored margin names, through the calculator's own code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marginflow.app.reproduce import StoredInputs, held_positions
from marginflow.core.errors import ValidationError
from marginflow.core.ids import InstrumentId, UnderlyingId
from marginflow.engine.state import WhatIf
from marginflow.margin.base import AccountMargin
from marginflow.store import Database, StoredMargin
from marginflow.stream import events as ev


@dataclass(frozen=True, slots=True)
class ScenarioPnl:
    """One scenario's P&L of an account (profit positive, book currency) and its share
    of the ES tail (0 outside it)."""

    label: str
    pnl: float
    tail_share: float


@dataclass(frozen=True, slots=True)
class AccountDetail:
    """A stored margin recomputed with everything an analyst drills into."""

    stored: StoredMargin
    margin: AccountMargin  # the breakdown with every position's contribution
    scenarios: tuple[ScenarioPnl, ...]
    confidence: float
    positions: dict[str, int]


def inputs_for(db: Database, stored: StoredMargin, cache: dict[str, StoredInputs]) -> StoredInputs:
    """The stored inputs of ``stored``'s start-of-day load, kept in ``cache`` by load."""
    if not stored.book_load:
        raise ValidationError(
            "book_load", f"the margin of {stored.account!r} names no start-of-day load"
        )
    found = cache.get(stored.book_load)
    if found is None:
        found = cache[stored.book_load] = StoredInputs(db, stored.book_load)
    return found


def account_detail(
    db: Database, stored: StoredMargin, *, cache: dict[str, StoredInputs]
) -> AccountDetail:
    """``stored`` recomputed with its full breakdown and scenario P&L."""
    inputs = inputs_for(db, stored, cache)
    account = stored.account
    positions = db.positions(account, stored.position_version)
    with inputs.holding({account: positions}, stored.market_offset) as engine:
        held = held_positions(engine, positions)
        if held != positions:  # expired series leave: margin what the calculator held
            delta = {account: {i: -float(q) for i, q in positions.items() if i not in held}}
            engine.apply_trades(delta)
        try:
            a = engine.book.positions.accounts.index(account)
            margin = engine.account_margin(account, top=max(1, len(held)))
            row = engine.pnl[a].copy()
            tail = engine.model.tail(row, engine.scenarios.group)
        finally:
            if held != positions:
                engine.apply_trades({a_: {i: -q for i, q in d.items()} for a_, d in delta.items()})
    share = np.zeros(row.shape[0])
    share[tail.index] = tail.share
    labels = engine.scenarios.labels
    scenarios = tuple(
        ScenarioPnl(str(labels[k]), float(row[k]), float(share[k])) for k in range(row.shape[0])
    )
    return AccountDetail(stored, margin, scenarios, engine.model.confidence, held)


@dataclass(frozen=True, slots=True)
class Listing:
    """A series not yet listed, defined inline for a what-if (as a listing would be)."""

    id: str
    underlying: str
    kind: str
    strike: float | None = None
    expiry: str | None = None
    style: str = "american"
    multiplier: float = 100.0


def what_if(
    db: Database,
    stored: StoredMargin,
    trades: Sequence[tuple[str, float]],
    *,
    listings: Sequence[Listing] = (),
    cache: dict[str, StoredInputs],
) -> WhatIf:
    """``stored``'s account margin if ``trades`` (instrument, quantity) were added to its
    holdings, on the market of ``stored``; ``listings`` define series not yet listed."""
    if not trades:
        raise ValidationError("trades", "give at least one trade")
    inputs = inputs_for(db, stored, cache)
    account = stored.account
    positions = db.positions(account, stored.position_version)
    now = time.time_ns()
    try:
        refs = [
            ev.InstrumentRef(
                id=InstrumentId(x.id),
                underlying=UnderlyingId(x.underlying),
                kind=x.kind,
                strike=x.strike,
                expiry=x.expiry,
                style=x.style,
                multiplier=x.multiplier,
                event_time=now,
            )
            for x in listings
        ]
    except ValidationError as exc:
        raise ValidationError(f"listings.{exc.field}", exc.reason) from None
    new = {x.id: x.underlying for x in listings}
    clash = [i for i in new if inputs.underlying_of(i) is not None]
    if clash:
        raise ValidationError("listings.id", f"{clash[0]!r} is listed already")
    unknown = [i for i, _ in trades if i not in new and inputs.underlying_of(i) is None]
    if unknown:
        raise ValidationError("trades.instrument", f"no series {unknown[0]!r} is listed")
    more = frozenset(new.values()) | frozenset(
        u for i, _ in trades if (u := inputs.underlying_of(i)) is not None
    )
    with inputs.holding(
        {account: positions}, stored.market_offset, extra=refs, more_underlyings=more
    ) as engine:
        if any(engine.is_expired(i) for i, _ in trades):
            raise ValidationError("trades.instrument", "a series in the trades has expired")
        return engine.what_if(account, [(i, float(q)) for i, q in trades])
