"""Reproduce a stored margin from the store alone: the start-of-day load it names (the
book files the calculators read and the settings), the market topic's events up to the
margin's market offset, and the account's positions at its version, all read back from the
store, through the calculator's own code; the broker and the log are not needed.

A margin is a function of the account's holdings, the market and the settings, to the bit
(an account's P&L vector is a sum of rounded terms, exact in any order), so the
recomputed margin equals the stored one exactly, or something differs and is named.
"""

from __future__ import annotations

import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marginflow.core.errors import ValidationError
from marginflow.engine.settings import MarginSettings, build_engine, fingerprint, identity
from marginflow.engine.state import MarginEngine
from marginflow.scenarios.scenario_set import ScenarioSet
from marginflow.store import Database, StoredMargin
from marginflow.store.loads import stored_book, stored_instruments
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec
from marginflow.stream.risk_calculator import MarginSetup, RiskCalculator
from marginflow.stream.topics import MARKET, Topology

PARAMETER_KIND = "risk_parameter"
"""The market-topic events that are risk-parameter changes (the other events are the
market: prices, vols and reference data)."""


@dataclass
class Recomputed:
    """A margin recomputed from stored inputs, with its breakdown."""

    margin: float
    es: float
    var: float
    apc: float
    concentration: float
    driver: str
    settings: str


@dataclass
class Reproduction:
    """A stored margin and the same margin recomputed from the store's inputs."""

    stored: StoredMargin
    recomputed: Recomputed
    positions: dict[str, int]
    market_events: int
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        s, r = self.stored, self.recomputed
        return {
            "account": s.account,
            "member": s.member,
            "ok": self.ok,
            "differences": self.differences,
            "position_version": s.position_version,
            "market_offset": s.market_offset,
            "business_date": s.business_date,
            "book_load": s.book_load,
            "settings": s.settings,
            "stored": {
                "margin": s.margin,
                "es": s.es,
                "var": s.var,
                "apc": s.apc,
                "concentration": s.concentration,
                "driver": s.driver,
            },
            "recomputed": {
                "margin": r.margin,
                "es": r.es,
                "var": r.var,
                "apc": r.apc,
                "concentration": r.concentration,
                "driver": r.driver,
                "settings": r.settings,
            },
            "positions": self.positions,
            "market_events": self.market_events,
            "seconds": self.seconds,
        }


class StoredInputs:
    """The inputs the store holds for margins of one start-of-day load: builds an engine at
    any (market offset, parameters offset) and margins positions on it.

    The engine covers only the underlyings the positions are in (every series on them, the
    whole book's scenario set): an account's margin depends on nothing else, so it is the
    stream's to the bit at a fraction of the cost of the whole book. Engines are kept per
    offsets and underlyings, so an attribution that evaluates four states builds each once.
    """

    def __init__(self, db: Database, book_load: str, *, only: frozenset[str] | None = None) -> None:
        """``only``: the underlyings every margin asked of these inputs is on. With
        filtered historical scenarios, which are generated underlying by underlying, the
        book is then read and its scenarios generated for those alone (the whole book's to
        the bit; tested); Monte Carlo scenarios are joint, so they need the whole book."""
        self.db = db
        load = db.book_load(book_load)
        if only is not None and (load is None or load.settings.get("source", "fhs") != "fhs"):
            only = None
        self.only = only
        with tempfile.TemporaryDirectory(prefix="marginflow-reproduce-") as scratch:
            self.load, loaded = stored_book(db, book_load, Path(scratch), only)
        self.setup = MarginSetup(
            loaded.book, MarginSettings.from_json(self.load.settings), self.load.id
        )
        self._book = loaded.book.without_positions()
        self._scenarios: ScenarioSet | None = None
        self._codec: Codec[ev.Event] = Codec(Topology().spec(MARKET).events)
        # Kept least recently used first and bounded: a service asked about the book "now"
        # meets a new market offset with every tick, and each whole-book engine is large.
        self._engines: OrderedDict[tuple[int, int, frozenset[str]], MarginEngine] = OrderedDict()
        self._events: OrderedDict[tuple[int, int], list[tuple[int, ev.Event]]] = OrderedDict()
        book = self._book
        self._underlying_of = {
            i: book.underlyings.ids[u]
            for i, u in zip(book.instruments.ids, book.instruments.underlying.tolist(), strict=True)
        }

    def events(self, market: int, parameters: int) -> list[tuple[int, ev.Event]]:
        """The stored market-topic events up to offset ``market``, risk-parameter changes
        up to ``parameters``, decoded, in log order (the series they list become known);
        read once per pair of offsets."""
        events = self._events.get((market, parameters))
        if events is not None:
            self._events.move_to_end((market, parameters))
            return events
        events = []
        for r in self.db.market_events(upto=max(market, parameters)):
            if r.offset <= (parameters if r.kind == PARAMETER_KIND else market):
                event = self._codec.decode(r.payload)
                if isinstance(event, ev.InstrumentRef):  # listed during the day
                    self._underlying_of.setdefault(event.id, event.underlying)
                events.append((r.offset, event))
        self._events[(market, parameters)] = events
        _bound(self._events)
        return events

    def engine(
        self,
        market: int,
        parameters: int | None = None,
        underlyings: frozenset[str] = frozenset(),
        *,
        extra: Sequence[ev.Event] = (),
    ) -> MarginEngine:
        """The engine with every account flat over ``underlyings`` (default: the whole
        book), after the market-topic events up to offset ``market`` but with risk-parameter
        changes only up to ``parameters`` (default: the same offset), applied by the
        calculator's code. ``extra`` events (a hypothetical listing) are applied after
        them, on an engine of its own that is not kept."""
        p = market if parameters is None else parameters
        key = (market, p, underlyings)
        engine = None if extra else self._engines.get(key)
        if engine is not None:
            self._engines.move_to_end(key)
            return engine
        events = self.events(market, p)
        if self._scenarios is None:
            self._scenarios = self.setup.settings.scenarios(self._book)
        book = self._book.restricted(underlyings) if underlyings else self._book
        engine = build_engine(book, self.setup.settings, scenarios=self._scenarios)
        calculator = RiskCalculator(Topology(), engine, book_load=self.load.id)
        calculator.replay_market(events)
        if extra:
            refused = calculator.replay_market([(market, e) for e in extra])
            if refused:
                _, why = refused[0]
                raise ValidationError(why.field, why.reason)
            return engine
        self._engines[key] = engine
        _bound(self._engines)
        return engine

    def underlyings(self, positions: Mapping[str, Mapping[str, int | float]]) -> frozenset[str]:
        """The underlyings of ``positions`` (at least one, so a flat account has an engine)."""
        found = {
            self._underlying_of[i]
            for p in positions.values()
            for i in p
            if i in self._underlying_of
        }
        return frozenset(found or {self._book.underlyings.ids[0]})

    @contextmanager
    def holding(
        self,
        positions: Mapping[str, Mapping[str, int]],
        market: int,
        parameters: int | None = None,
        *,
        extra: Sequence[ev.Event] = (),
        more_underlyings: frozenset[str] = frozenset(),
    ) -> Iterator[MarginEngine]:
        """An engine of ``(market, parameters)`` holding ``positions`` (account ->
        instrument -> quantity) while the block runs; the accounts are flat again after."""
        p = market if parameters is None else parameters
        self.events(market, p)  # listings first: they name the underlyings of new series
        underlyings = self.underlyings(positions) | more_underlyings
        engine = self.engine(market, p, underlyings, extra=extra)
        held = {a: {i: float(q) for i, q in pos.items()} for a, pos in positions.items() if pos}
        engine.apply_trades(held)
        try:
            yield engine
        finally:
            engine.apply_trades({a: {i: -q for i, q in pos.items()} for a, pos in held.items()})

    @property
    def underlying_ids(self) -> tuple[str, ...]:
        """Every underlying of the stored book."""
        return self._book.underlyings.ids

    def underlying_of(self, instrument: str) -> str | None:
        """The underlying of a series in the stored book or listed on the market topic."""
        return self._underlying_of.get(instrument)

    def margin(
        self, positions: Mapping[str, Mapping[str, int]], market: int, parameters: int | None
    ) -> dict[str, Recomputed]:
        """Each account's margin with ``positions`` (account -> instrument -> quantity) at
        the engine of ``(market, parameters)``; the accounts are flat again afterwards."""
        with self.holding(positions, market, parameters) as engine:
            known = set(engine.book.positions.accounts)
            # an account not yet opened at that market offset holds nothing: margin 0
            return {a: _recomputed(engine, a) if a in known else _FLAT for a in positions}


KEPT_STATES = 4
"""Engines (and decoded event lists) :class:`StoredInputs` keeps, most recently used: the
four states of an attribution (:mod:`marginflow.app.explain`) each built once."""


def _bound(kept: OrderedDict[Any, Any]) -> None:
    while len(kept) > KEPT_STATES:
        kept.popitem(last=False)


def held_positions(engine: MarginEngine, positions: Mapping[str, int]) -> dict[str, int]:
    """``positions`` without the series the engine no longer lists (expired at a date
    roll: they left the calculator's holdings with the engine)."""
    listed = engine.book.instruments.index()
    gone = {i for i in positions if i not in listed}
    gone |= {i for i in positions if i not in gone and engine.is_expired(i)}
    return {i: q for i, q in positions.items() if i not in gone}


_FLAT = Recomputed(0.0, 0.0, 0.0, 0.0, 0.0, "", "")


def _recomputed(engine: MarginEngine, account: str) -> Recomputed:
    a = engine.book.positions.accounts.index(account)
    return Recomputed(
        margin=float(engine.margin[a]),
        es=float(engine.es_base[a]),
        var=float(engine.var[a]),
        apc=float(engine.apc[a]),
        concentration=float(engine.concentration[a]),
        driver=engine.scenarios.labels[int(engine.worst[a])],
        settings=fingerprint(identity(engine)),
    )


def find_margin(
    db: Database, account: str, *, version: int | None = None, at: int | None = None
) -> StoredMargin:
    """The stored margin ``reproduce`` is asked for, or :class:`ValidationError` naming
    what is missing."""
    stored = db.margin(account, version=version, at=at)
    if stored is not None:
        return stored
    if not db.margin_history(account=account):
        raise ValidationError("account", f"no margin of {account!r} is stored")
    what = f"at version {version}" if version is not None else f"at or before {at} ns"
    raise ValidationError("version" if version is not None else "at", f"no margin {what}")


def reproduce(
    db: Database,
    account: str,
    *,
    version: int | None = None,
    at: int | None = None,
    inputs: StoredInputs | None = None,
) -> Reproduction:
    """Recompute ``account``'s stored margin (the latest, the last at position ``version``
    or the one in force at ``at``, ns) from the store and compare it, bit for bit, with the
    stored one: margin, breakdown, driving scenario and settings fingerprint."""
    t0 = time.perf_counter()
    stored = find_margin(db, account, version=version, at=at)
    result = reproduce_margin(db, stored, inputs)
    result.seconds = time.perf_counter() - t0
    return result


def reproduce_margin(
    db: Database, stored: StoredMargin, inputs: StoredInputs | None = None
) -> Reproduction:
    """Recompute ``stored`` from the store's inputs (see :func:`reproduce`)."""
    t0 = time.perf_counter()
    account = stored.account
    if not stored.book_load:
        raise ValidationError(
            "book_load",
            f"the margin of {account!r} names no start-of-day load (computed from a book given "
            "in memory): it cannot be reproduced from the store",
        )
    positions = db.positions(account, stored.position_version)
    if inputs is None or inputs.load.id != stored.book_load:
        inputs = StoredInputs(db, stored.book_load, only=_underlyings_of(db, stored, positions))
    inputs.events(stored.market_offset, stored.market_offset)  # series listed by then
    engine = inputs.engine(stored.market_offset, None, inputs.underlyings({account: positions}))
    held = held_positions(engine, positions)
    got = inputs.margin({account: held}, stored.market_offset, None)[account]
    result = Reproduction(
        stored,
        got,
        positions,
        len(inputs.events(stored.market_offset, stored.market_offset)),
    )
    result.differences = _differences(stored, got)
    result.seconds = time.perf_counter() - t0
    return result


def _underlyings_of(
    db: Database, stored: StoredMargin, positions: Mapping[str, int]
) -> frozenset[str] | None:
    """The underlyings of ``positions``, from the stored load's instruments and the series
    listed on the market topic by the margin's offset; None if one is not found."""
    load = db.book_load(stored.book_load)
    if load is None:
        return None
    of = stored_instruments(db, load)
    missing = [i for i in positions if i not in of]
    if missing:
        codec: Codec[ev.Event] = Codec(Topology().spec(MARKET).events)
        for r in db.market_events(upto=stored.market_offset):
            if r.kind == "instrument":
                event = codec.decode(r.payload)
                if isinstance(event, ev.InstrumentRef):
                    of.setdefault(event.id, event.underlying)
    if any(i not in of for i in positions):
        return None
    found = frozenset(of[i] for i in positions)
    return found or None


def _differences(stored: StoredMargin, got: Recomputed) -> list[str]:
    out = []
    for name in ("margin", "es", "var", "apc", "concentration"):
        want = getattr(stored, name)
        have = getattr(got, name)
        if want is not None and want != have:
            out.append(f"{name}: stored {want!r}, recomputed {have!r} ({have - want:+.6g})")
    if stored.driver and stored.driver != got.driver:
        out.append(f"driver: stored {stored.driver!r}, recomputed {got.driver!r}")
    if stored.settings and stored.settings != got.settings:
        out.append(
            f"settings: stored fingerprint {stored.settings[:12]}, "
            f"recomputed {got.settings[:12]} (the model or scenario set differs)"
        )
    return out


def reproduce_sample(db: Database, n: int, *, seed: int = 0) -> list[Reproduction]:
    """Reproduce ``n`` stored margins picked at random (with ``seed``) from the history,
    sharing the stored inputs' engines between them."""
    import random

    history = [m for m in db.margin_history() if m.book_load]
    picked = random.Random(seed).sample(history, min(n, len(history)))  # noqa: S311 (a sample, not a secret)
    inputs: StoredInputs | None = None
    out = []
    for m in sorted(picked, key=lambda m: (m.book_load, m.market_offset)):
        if inputs is None or inputs.load.id != m.book_load:
            inputs = StoredInputs(db, m.book_load)
        out.append(reproduce_margin(db, m, inputs))
    return out
