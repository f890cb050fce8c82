"""Check what the stream published against a batch recompute from the input log.

Used by the crash tests and the soak benchmark: after any number of crashes, every
published result must equal the batch recompute of the inputs it names (its version), and
the latest result of every key must equal the recompute of all inputs: nothing lost, and
nothing doubled (a replayed result has the same key and the same value, so an upsert keeps
one).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from marginflow.core.errors import ValidationError
from marginflow.engine.state import MarginEngine
from marginflow.store import Database
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec
from marginflow.stream.log.base import Log
from marginflow.stream.position_keeper import late_start_of_day
from marginflow.stream.risk_calculator import (
    MarginSetup,
    accept_parameter_change,
    listing,
    model_with,
)
from marginflow.stream.topics import MARGINS, MARKET, POSITIONS, TRADES, Topology


def read_events(
    log: Log, topic: str, codec: Codec[ev.Event]
) -> dict[int, list[tuple[int, ev.Event]]]:
    """Every valid event of ``topic`` by partition, as (offset, event) in offset order."""
    n = log.partitions(topic)
    ends = log.end_offsets([(topic, p) for p in range(n)])
    reader = log.consumer()
    reader.assign({(topic, p): 0 for p in range(n)})
    out: dict[int, list[tuple[int, ev.Event]]] = {p: [] for p in range(n)}
    seen = dict.fromkeys(range(n), 0)
    idle = 0
    while any(seen[p] < ends[(topic, p)] for p in range(n)) and idle < 50:
        batch = reader.consume(10_000, 0.1)
        idle = 0 if batch else idle + 1
        for r in batch:
            seen[r.partition] = r.offset + 1
            event = codec.try_decode(r.value)
            if isinstance(event, ev.Event):
                out[r.partition].append((r.offset, event))
    reader.close()
    return out


@dataclass
class Report:
    """The outcome of a reconciliation: empty ``mismatches`` and ``lost`` mean correct."""

    keys: int = 0
    results: int = 0
    distinct_results: int = 0
    mismatches: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        """Results published more than once (at-least-once delivery), absorbed by upsert."""
        return self.results - self.distinct_results

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.lost

    def summary(self) -> str:
        return (
            f"{self.keys} keys, {self.results} results ({self.replayed} replayed), "
            f"{len(self.mismatches)} mismatches, {len(self.lost)} lost"
        )


def check_positions(log: Log, topology: Topology) -> Report:
    """Reconcile the positions topic with a recompute from the trades topic."""
    trades = read_events(log, topology.name(TRADES), Codec(topology.spec(TRADES).events))
    published = read_events(log, topology.name(POSITIONS), Codec(topology.spec(POSITIONS).events))
    report = Report()
    by_version: dict[tuple[int, int], list[ev.AccountPositions]] = defaultdict(list)
    distinct: set[tuple[str, int, tuple[tuple[str, int], ...]]] = set()
    for events in published.values():
        for _, e in events:
            assert isinstance(e, ev.AccountPositions)
            by_version[(e.source_partition, e.source_offset)].append(e)
            report.results += 1
            distinct.add(
                (e.account, e.source_offset, tuple(zip(e.instruments, e.quantities, strict=True)))
            )
    report.distinct_results = len({(a, v) for a, v, _ in distinct})

    for p, events in trades.items():
        held: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        last: dict[str, int] = {}
        trade_time: dict[str, int] = {}
        for offset, e in events:
            if isinstance(e, ev.Trade):
                held[e.account][e.instrument] += e.quantity
                trade_time[e.account] = max(trade_time.get(e.account, 0), e.event_time)
            elif isinstance(e, ev.PositionSnapshot):
                if late_start_of_day(e, trade_time.get(e.account, 0)) is not None:
                    continue  # the keeper's late-event policy: refused
                held[e.account][e.instrument] = e.quantity
            else:
                continue
            last[e.account] = offset
            for result in by_version.pop((p, offset), ()):
                if result.account != e.account:
                    report.mismatches.append(
                        f"{result.account}@{p}:{offset}: version names a trade of {e.account}"
                    )
                    continue
                for inst, q in zip(result.instruments, result.quantities, strict=True):
                    want = held[e.account].get(inst, 0)
                    if q != want:
                        report.mismatches.append(
                            f"{e.account}@{p}:{offset} {inst}: published {q}, recomputed {want}"
                        )
        report.keys += len(last)
        latest = _latest_positions(published.get(p, []))
        for account, offset in last.items():
            version, quantities = latest.get(account, (-1, {}))
            if version != offset:
                report.lost.append(f"{account}: last result at {version}, last input at {offset}")
                continue
            expected = {k: v for k, v in held[account].items() if v}
            if expected != {k: v for k, v in quantities.items() if v}:
                report.mismatches.append(f"{account}: final positions differ")
    for (p, offset), results in by_version.items():
        report.mismatches.append(f"{len(results)} results name {p}:{offset}, not an input")
    return report


def _latest_positions(events: list[tuple[int, ev.Event]]) -> dict[str, tuple[int, dict[str, int]]]:
    """Apply position results in log order with the version guard a consumer uses."""
    out: dict[str, tuple[int, dict[str, int]]] = {}
    for _, e in events:
        assert isinstance(e, ev.AccountPositions)
        version, quantities = out.get(e.account, (-1, {}))
        if e.source_offset > version:
            quantities = dict(quantities)
            quantities.update(zip(e.instruments, e.quantities, strict=True))
            out[e.account] = (e.source_offset, quantities)
    return out


@dataclass
class MarginReport(Report):
    """Margins: ``max_rel_error`` is the largest relative difference from the batch
    recompute over all accounts (and members); ``versions`` counts the distinct published
    versions recomputed one by one, ``max_version_error`` their largest relative difference."""

    max_rel_error: float = 0.0
    members: int = 0
    versions: int = 0
    max_version_error: float = 0.0


def batch_margins(
    log: Log, topology: Topology, setup: MarginSetup
) -> tuple[dict[str, float], dict[str, int], dict[str, str], int]:
    """The batch recompute: every account's margin from all trades and all market data on
    the log, by a fresh engine (full revaluation and aggregation, no incremental path).

    Returns (margin per traded account, last trades offset per account, member per
    account, last market offset or -1)."""

    trades = read_events(log, topology.name(TRADES), Codec(topology.spec(TRADES).events))
    market = read_events(log, topology.name(MARKET), Codec(topology.spec(MARKET).events))
    engine0 = setup.engine()
    for _, e in market.get(0, []):
        apply_reference(engine0, e)
    book = engine0.book
    acc_index = {a: i for i, a in enumerate(book.positions.accounts)}
    ins_index = book.instruments.index()
    und_index = book.underlyings.index()
    held: dict[tuple[int, int], int] = defaultdict(int)
    last: dict[str, int] = {}
    for events in trades.values():
        trade_time: dict[str, int] = {}
        for offset, e in events:
            if isinstance(e, ev.Trade):
                trade_time[e.account] = max(trade_time.get(e.account, 0), e.event_time)
            elif not isinstance(e, ev.PositionSnapshot) or late_start_of_day(
                e, trade_time.get(e.account, 0)
            ):
                continue
            a, j = acc_index.get(e.account), ins_index.get(e.instrument)
            if a is None or j is None:
                continue  # the calculator dead-letters these too
            if engine0.is_expired(e.instrument):
                last[e.account] = offset
                continue  # an expired series left the book
            if isinstance(e, ev.Trade):
                held[(a, j)] += e.quantity
            else:
                held[(a, j)] = e.quantity
            last[e.account] = offset
    keys = [k for k, q in held.items() if q]
    matrix = sp.csr_matrix(
        (
            np.array([held[k] for k in keys], dtype=np.float64),
            (
                np.array([k[0] for k in keys], dtype=np.intp),
                np.array([k[1] for k in keys], dtype=np.intp),
            ),
        ),
        shape=book.positions.matrix.shape,
    )
    matrix.sort_indices()
    mkt = book.market
    last_market = -1
    params: dict[str, float | str] = {}
    seen: dict[str, tuple[int, bytes]] = {}
    for offset, e in market.get(0, []):
        if isinstance(e, ev.RiskParameterChange):
            accept_parameter_change(engine0, params, seen, offset, e)
            continue
        u = und_index.get(getattr(e, "underlying", ""))
        if u is None:
            continue
        if isinstance(e, ev.PriceUpdate):
            mkt = mkt.with_underlying(u, spot=e.price)
        elif isinstance(e, ev.VolUpdate) and _surface_move(e):
            mkt = mkt.with_underlying(u, atm_vol=e.vol, skew=e.skew)
        last_market = offset
    full = replace(book, positions=replace(book.positions, matrix=matrix), market=mkt)
    model = model_with(engine0.model, params)
    engine = MarginEngine(full, engine0.scenarios, model, revaluation=engine0.revaluation)
    members = {
        a: book.positions.members[book.positions.account_member[i]] for a, i in acc_index.items()
    }
    margins = {a: float(engine.margin[acc_index[a]]) for a in last}
    return margins, last, members, last_market


VersionKey = tuple[str, int, int]
"""(account, position version, market offset): what one published margin was computed from."""


def positions_at_versions(
    log: Log, topology: Topology, setup: MarginSetup, wanted: set[tuple[str, int]]
) -> dict[tuple[str, int], dict[str, int]]:
    """Each account's holdings (instrument -> quantity, non-zero) right after the trades-topic
    input at ``offset``, for every ``(account, offset)`` in ``wanted``, replaying the trades
    topic with the keeper's rules (as :func:`batch_margins` does)."""
    trades = read_events(log, topology.name(TRADES), Codec(topology.spec(TRADES).events))
    book = setup.book  # the ids only: no engine to build
    accounts, instruments = set(book.positions.accounts), set(book.instruments.ids)
    market = read_events(log, topology.name(MARKET), Codec(topology.spec(MARKET).events))
    for _, e in market.get(0, []):  # reference data listed during the day
        if isinstance(e, ev.AccountRef):
            accounts.add(e.id)
        elif isinstance(e, ev.InstrumentRef):
            instruments.add(e.id)
    out: dict[tuple[str, int], dict[str, int]] = {}
    for events in trades.values():
        held: dict[str, dict[str, int]] = defaultdict(dict)
        trade_time: dict[str, int] = {}
        for offset, e in events:
            if isinstance(e, ev.Trade):
                trade_time[e.account] = max(trade_time.get(e.account, 0), e.event_time)
            elif not isinstance(e, ev.PositionSnapshot) or late_start_of_day(
                e, trade_time.get(e.account, 0)
            ):
                continue
            if e.account not in accounts or e.instrument not in instruments:
                continue
            h = held[e.account]
            q = h.get(e.instrument, 0) + e.quantity if isinstance(e, ev.Trade) else e.quantity
            if q:
                h[e.instrument] = q
            else:
                h.pop(e.instrument, None)
            if (e.account, offset) in wanted:
                out[(e.account, offset)] = dict(h)
    return out


def margins_at_versions(
    setup: MarginSetup,
    market: Sequence[tuple[int, ev.Event]],
    positions: Mapping[tuple[str, int], Mapping[str, int]],
    keys: Iterable[VersionKey],
) -> dict[VersionKey, float]:
    """The margin of every ``(account, position version, market offset)`` in ``keys``,
    recomputed from its inputs alone: the account's holdings at that version
    (``positions``) under the market events up to and including that offset.

    The order of operations has nothing in common with a calculator's: market events are
    applied one at a time in log order (a calculator applies the last of each batch), and
    an account's holdings are set straight to the version's. A published margin must equal
    this one whatever batching, restarts or rebalances produced it."""
    engine = setup.engine()
    index = {a: i for i, a in enumerate(engine.book.positions.accounts)}
    underlyings = set(engine.book.underlyings.ids)
    params: dict[str, float | str] = {}
    seen: dict[str, tuple[int, bytes]] = {}
    now: dict[str, dict[str, int]] = {}
    out: dict[VersionKey, float] = {}
    m = 0
    for mo, group in _by_market_offset(keys):
        while m < len(market) and market[m][0] <= mo:
            offset, e = market[m]
            if isinstance(e, ev.RiskParameterChange):
                if accept_parameter_change(engine, params, seen, offset, e) is None:
                    engine.set_model(model_with(engine.model, params))
            else:
                _apply_market_event(engine, e, underlyings)
                if isinstance(e, ev.AccountRef):
                    index = {a: i for i, a in enumerate(engine.book.positions.accounts)}
                if isinstance(e, ev.DateRoll):  # positions in expired series left the engine
                    now = {
                        a: {i: q for i, q in h.items() if not engine.is_expired(i)}
                        for a, h in now.items()
                    }
            m += 1
        # rounds in which each account appears once, applied as one batch each
        while group:
            round_: dict[str, VersionKey] = {}
            rest: list[VersionKey] = []
            for key in group:
                if key[0] in round_:
                    rest.append(key)
                else:
                    round_[key[0]] = key
            changes: dict[str, dict[str, float]] = {}
            for account, key in round_.items():
                want = {
                    i: q
                    for i, q in positions[(account, key[1])].items()
                    if not engine.is_expired(i)
                }
                have = now.get(account, {})
                delta = {
                    i: float(want.get(i, 0) - have.get(i, 0))
                    for i in set(want) | set(have)
                    if want.get(i, 0) != have.get(i, 0)
                }
                if delta:
                    changes[account] = delta
                now[account] = dict(want)
            if changes:
                engine.apply_trades(changes)
            for account, key in round_.items():
                out[key] = float(engine.margin[index[account]])
            group = rest
    return out


def _by_market_offset(keys: Iterable[VersionKey]) -> list[tuple[int, list[VersionKey]]]:
    groups: dict[int, list[VersionKey]] = defaultdict(list)
    for key in sorted(set(keys), key=lambda k: (k[2], k[0], k[1])):
        groups[key[2]].append(key)
    return sorted(groups.items())


def apply_reference(engine: MarginEngine, e: ev.Event) -> bool:
    """Reference data as the calculator takes it (the same events refused); True if ``e``
    was reference data."""
    if isinstance(e, ev.AccountRef):
        if e.id not in set(engine.book.positions.accounts):
            engine.open_accounts([(e.id, e.member, e.account_type)])
        return True
    if isinstance(e, ev.InstrumentRef):
        if e.id not in engine.book.instruments.index():
            try:
                new = listing(engine.book, e)
            except ValidationError:
                return True
            engine.list_instruments(new)
        return True
    if isinstance(e, ev.DateRoll):
        day = dt.date.fromisoformat(e.business_date)
        if day > engine.book.market.valuation_date:
            engine.roll(day)
        return True
    return isinstance(e, ev.MemberRef)


def _apply_market_event(engine: MarginEngine, e: ev.Event, underlyings: set[str]) -> None:
    """One market event as the calculator takes it (the same events refused)."""
    if apply_reference(engine, e):
        return
    if not isinstance(e, ev.PriceUpdate | ev.VolUpdate) or e.underlying not in underlyings:
        return
    if isinstance(e, ev.PriceUpdate):
        engine.apply_market(e.underlying, spot=e.price)
    elif _surface_move(e):
        engine.apply_market(e.underlying, atm_vol=e.vol, skew=e.skew)


def _surface_move(e: ev.VolUpdate) -> bool:
    """A vol update the calculator applies (it refuses points and non-positive levels)."""
    return e.expiry is None and e.strike is None and (e.vol is None or e.vol > 0)


def check_margin_versions(
    log: Log, topology: Topology, setup: MarginSetup, *, rel_tol: float, abs_tol: float
) -> tuple[list[str], int, float]:
    """Recompute every margin published on the margins topic at its own version and
    compare: the same version published twice (a replay, a restarted or reassigned
    calculator) must carry the same value. Returns (mismatches, versions, max rel. error)."""
    published = read_events(log, topology.name(MARGINS), Codec(topology.spec(MARGINS).events))
    results: dict[VersionKey, set[float]] = defaultdict(set)
    for events in published.values():
        for _, e in events:
            assert isinstance(e, ev.AccountMargin)
            results[(e.account, e.position_version, e.market_offset)].add(e.margin)
    market = read_events(log, topology.name(MARKET), Codec(topology.spec(MARKET).events))
    wanted = {(a, pv) for a, pv, _ in results}
    positions = positions_at_versions(log, topology, setup, wanted)
    mismatches = [f"{a}@{pv}: no such input" for a, pv in sorted(wanted - set(positions))]
    keys = [k for k in results if (k[0], k[1]) in positions]
    expected = margins_at_versions(setup, market.get(0, []), positions, keys)
    worst = 0.0
    for key in keys:
        want = expected[key]
        for got in sorted(results[key]):
            err = abs(got - want)
            worst = max(worst, err / max(abs(want), 1.0))
            if err > max(rel_tol * abs(want), abs_tol):
                mismatches.append(
                    f"{key[0]}@{key[1]},market {key[2]}: published {got!r}, "
                    f"recomputed at that version {want!r}"
                    + (f" ({len(results[key])} values published)" if len(results[key]) > 1 else "")
                )
    return mismatches, len(keys), worst


def check_margins(
    log: Log,
    topology: Topology,
    setup: MarginSetup,
    db: Database,
    *,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-6,
) -> MarginReport:
    """Reconcile the database with a batch recompute: every traded account's latest margin
    (version and value) and every member's margin; and every margin published on the
    margins topic with a recompute at its own version (:func:`check_margin_versions`), so
    one version published with two values is a mismatch even if the database kept one.

    Tolerances: the stream sums P&L vectors incrementally in the order changes arrived and
    the batch sums them in one pass; both in float64, so they differ by rounding only:
    ``rel_tol`` 1e-9 of the margin, or ``abs_tol`` 1e-6 currency units near zero."""
    expected, last, members, _ = batch_margins(log, topology, setup)
    stored = db.account_margins()
    report = MarginReport(keys=len(expected))
    report.results = db.history_count()
    report.distinct_results = report.results  # the history table's key makes them distinct
    worst = 0.0
    for account, want in expected.items():
        got = stored.get(account)
        if got is None:
            report.lost.append(f"{account}: no margin stored")
            continue
        margin, version = got.margin, got.position_version
        if version != last[account]:
            report.lost.append(f"{account}: stored version {version}, last input {last[account]}")
            continue
        err = abs(margin - want)
        worst = max(worst, err / max(abs(want), 1.0))
        if err > max(rel_tol * abs(want), abs_tol):
            report.mismatches.append(f"{account}: stored {margin!r}, recomputed {want!r}")
    by_member: dict[str, float] = defaultdict(float)
    for account, want in expected.items():
        by_member[members[account]] += want
    stored_members = {m.member: m.margin for m in db.member_margins()}
    report.members = len(by_member)
    for member, want in by_member.items():
        got_m = stored_members.get(member)
        if got_m is None:
            report.lost.append(f"member {member}: no margin stored")
            continue
        err = abs(got_m - want)
        worst = max(worst, err / max(abs(want), 1.0))
        if err > max(rel_tol * abs(want), abs_tol * 100):
            report.mismatches.append(f"member {member}: stored {got_m!r}, recomputed {want!r}")
    report.max_rel_error = worst
    mismatches, report.versions, report.max_version_error = check_margin_versions(
        log, topology, setup, rel_tol=rel_tol, abs_tol=abs_tol
    )
    report.mismatches += mismatches
    return report
