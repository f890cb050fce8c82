"""A published margin is a function of its version alone: (account, position version,
market offset) fixes the value, whatever batching, snapshots, crashes, restores and
partition moves happened before it was computed.

No broker: risk calculators are driven directly (apply / recompute / snapshot / restore,
as :class:`~marginflow.stream.worker.MicroBatchWorker` calls them) over a scripted log,
and every result is compared with :func:`~marginflow.stream.reconcile.margins_at_versions`,
a recompute of each version from its inputs in an unrelated order of operations.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import msgspec
import numpy as np
import pytest

from marginflow.core.ids import AccountId, InstrumentId, UnderlyingId
from marginflow.engine.revaluation import RevaluationSettings
from marginflow.engine.settings import MarginSettings
from marginflow.engine.state import MarginEngine
from marginflow.sim.demo import publish_generated_day
from marginflow.sim.synthetic_book import BookSpec
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, encode
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.pipeline import BatchSettings, build_pipeline
from marginflow.stream.reconcile import VersionKey, check_margins, margins_at_versions
from marginflow.stream.risk_calculator import MarginSetup, RiskCalculator
from marginflow.stream.topics import MARGINS, MARKET, POSITIONS, Topology, partition_for

BOOK = BookSpec(members=3, accounts=40, underlyings=6, series=150, sod_positions=200)
SETUP = MarginSetup(BOOK.book(), MarginSettings(lookback=250))
TOPO = Topology(partitions=4)
POS, MKT = TOPO.name(POSITIONS), TOPO.name(MARKET)
T0 = 1_717_000_000_000_000_000

# The P&L matrix rows are bit-identical whatever the history (subset revaluation, any
# thread count); an account's float64 P&L vector is a sum in the order changes arrived, so
# a restored calculator (holdings applied at once) and an uninterrupted one differ by its
# rounding: measured at most 1.1e-15 relative. 1e-12 leaves room for larger books and is
# 10^5 times below the 2e-7 that engines built differently produce.
REL_TOL = 1e-12


@dataclass(frozen=True)
class Script:
    """The calculator's inputs: positions events per partition and market events, each
    list indexed by offset; and each (account, version)'s holdings."""

    positions: dict[int, list[ev.AccountPositions]]
    market: list[ev.Event]
    holdings: dict[tuple[str, int], dict[str, int]]


@cache
def script(seed: int = 5, trades: int = 250, moves: int = 50) -> Script:
    book = BOOK.book()
    rng = np.random.default_rng(seed)
    accounts, ids = book.positions.accounts, book.instruments.ids
    held: dict[str, dict[str, int]] = defaultdict(dict)
    x = book.positions.matrix.tocoo()
    for a, j, q in zip(x.row.tolist(), x.col.tolist(), x.data.tolist(), strict=True):
        if round(q):
            held[accounts[a]][ids[j]] = round(q)
    parts: dict[int, list[ev.AccountPositions]] = {p: [] for p in range(TOPO.partitions)}
    holdings: dict[tuple[str, int], dict[str, int]] = {}

    def emit(account: str, changed: dict[str, int]) -> None:
        p = partition_for(account, TOPO.partitions)
        offset = len(parts[p])
        parts[p].append(
            ev.AccountPositions(
                account=AccountId(account),
                instruments=tuple(InstrumentId(i) for i in changed),
                quantities=tuple(changed.values()),
                source_partition=p,
                source_offset=offset,
                event_time=T0 + offset,
            )
        )
        holdings[(account, offset)] = dict(held[account])

    for account in sorted(held):
        emit(account, dict(held[account]))
    for _ in range(trades):
        account = accounts[int(rng.integers(len(accounts)))]
        h = held[account]
        changed = {}
        for j in rng.integers(len(ids), size=int(rng.integers(1, 4))):
            q = h.get(ids[j], 0) + int(rng.integers(-40, 41))
            changed[ids[j]] = q
            if q:
                h[ids[j]] = q
            else:
                h.pop(ids[j], None)
        emit(account, changed)
    spot = dict(zip(book.underlyings.ids, book.market.spot.tolist(), strict=True))
    vol = dict(zip(book.underlyings.ids, book.market.atm_vol.tolist(), strict=True))
    market: list[ev.Event] = []
    for k in range(moves):
        u = book.underlyings.ids[int(rng.integers(len(spot)))]
        if rng.random() < 0.7:
            spot[u] *= float(np.exp(rng.normal(0.0, 0.02)))
            market.append(
                ev.PriceUpdate(underlying=UnderlyingId(u), price=spot[u], event_time=T0 + k)
            )
        else:
            vol[u] *= float(rng.uniform(0.85, 1.15))
            market.append(ev.VolUpdate(underlying=UnderlyingId(u), vol=vol[u], event_time=T0 + k))
    return Script(parts, market, holdings)


@cache
def _pristine() -> MarginEngine:
    return SETUP.engine()


def _fresh_engine() -> MarginEngine:
    # A copy of a freshly built engine: building is deterministic (same rows bit for bit in
    # any process and with any thread count), and a copy saves a second per restart.
    return copy.deepcopy(_pristine())


@dataclass
class Calculator:
    """One calculator process: its engine, the partitions it owns and where it reads."""

    parts: tuple[int, ...]
    engine_factory: Callable[[], MarginEngine] = _fresh_engine
    calc: RiskCalculator = field(init=False)
    cursor: dict[int, int] = field(init=False)
    market_cursor: int = 0
    saved: tuple[int, bytes, dict[int, tuple[int, bytes]]] | None = None

    def __post_init__(self) -> None:
        self.start()

    def start(self) -> None:
        """Start (or restart after a crash) from the last snapshot, as a worker does."""
        self.calc = RiskCalculator(TOPO, self.engine_factory())
        if self.saved is None:
            self.calc.restore_broadcast(None)
            self.market_cursor = 0
            for p in self.parts:
                self.calc.restore((POS, p), None)
            self.cursor = dict.fromkeys(self.parts, 0)
            return
        self.market_cursor, broadcast, parts = self.saved
        self.calc.restore_broadcast(broadcast)
        self.cursor = {}
        for p in self.parts:
            offset, data = parts[p]
            self.calc.restore((POS, p), data)
            self.cursor[p] = offset

    def snapshot(self) -> None:
        self.saved = (
            self.market_cursor,
            self.calc.snapshot_broadcast(),
            {p: (self.cursor[p], self.calc.snapshot((POS, p))) for p in self.parts},
        )

    def step(self, s: Script, rng: np.random.Generator) -> list[ev.AccountMargin]:
        """Apply a random batch (market first, as the worker does) and recompute."""
        m = self.market_cursor
        k = int(rng.integers(0, 4))
        if k and m < len(s.market):
            self.calc.apply((MKT, 0), list(enumerate(s.market))[m : m + k])
            self.market_cursor = min(m + k, len(s.market))
        for p in self.parts:
            lo = self.cursor[p]
            hi = min(lo + int(rng.integers(0, 6)), len(s.positions[p]))
            if hi > lo:
                self.calc.apply((POS, p), [(o, s.positions[p][o]) for o in range(lo, hi)])
                self.cursor[p] = hi
        out = [o.event for o in self.calc.recompute()]
        return [e for e in out if isinstance(e, ev.AccountMargin)]

    def done(self, s: Script) -> bool:
        return self.market_cursor >= len(s.market) and all(
            self.cursor[p] >= len(s.positions[p]) for p in self.parts
        )


def run(
    calculators: list[Calculator], *, seed: int, crashes: int = 0
) -> Iterator[ev.AccountMargin]:
    """Step the calculators in turn until each has read everything; snapshot now and then,
    and crash-restart at random steps (replaying from the last snapshot)."""
    s, rng = script(), np.random.default_rng(seed)
    crash_left = crashes
    while not all(c.done(s) for c in calculators):
        for c in calculators:
            yield from c.step(s, rng)
            r = rng.random()
            if r < 0.1:
                c.snapshot()
            elif r < 0.15 and crash_left:
                crash_left -= 1
                c.start()


def versions(results: Iterable[ev.AccountMargin]) -> dict[VersionKey, set[float]]:
    out: dict[VersionKey, set[float]] = defaultdict(set)
    for e in results:
        out[(e.account, e.position_version, e.market_offset)].add(e.margin)
    return out


def errors(published: dict[VersionKey, set[float]]) -> tuple[float, list[str]]:
    s = script()
    expected = margins_at_versions(SETUP, list(enumerate(s.market)), s.holdings, published)
    worst, bad = 0.0, []
    for key, values in published.items():
        for got in values:
            err = abs(got - expected[key]) / max(abs(expected[key]), 1.0)
            worst = max(worst, err)
            if err > REL_TOL:
                bad.append(f"{key}: {got!r} vs {expected[key]!r}")
    return worst, bad


def test_one_calculator_uninterrupted_equals_recompute_at_every_version() -> None:
    published = versions(run([Calculator((0, 1, 2, 3))], seed=1))
    _, bad = errors(published)
    assert not bad, bad[:5]
    assert len(published) > 300  # the script publishes versions for every account


@pytest.mark.parametrize("seed", [2, 3])
def test_crashes_restores_and_split_ownership_change_no_published_value(seed: int) -> None:
    calcs = [Calculator((0, 2)), Calculator((1, 3))]
    results = list(run(calcs, seed=seed, crashes=6))
    published = versions(results)
    assert len(results) > len(published)  # some versions were published again by replays
    _, bad = errors(published)
    assert not bad, bad[:5]
    spread = max((max(v) - min(v)) / max(max(v), 1.0) for v in published.values())
    assert spread <= REL_TOL


def test_a_differently_built_engine_is_caught() -> None:
    # What the crash-test incident was: two processes whose engines differ (there, code
    # edited between their starts). A grid one node finer moves float32 rows by an ulp or
    # more; the version check must see it.
    def other() -> MarginEngine:
        e = _pristine()
        return MarginEngine(
            e.book, e.scenarios, e.model, revaluation=RevaluationSettings(eep_moneyness_step=0.14)
        )

    published = versions(run([Calculator((0, 1, 2, 3), engine_factory=other)], seed=1))
    worst, bad = errors(published)
    assert bad
    assert worst > 1e-9


def test_check_margins_flags_a_version_published_with_two_values(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log")
    log.create_topics(TOPO.all())
    producer = log.producer()
    publish_generated_day(producer, TOPO, BOOK.book(), trades_count=1_000, market_moves=20)
    producer.flush()
    db_url = f"sqlite:///{tmp_path / 'm.db'}"
    pipe = build_pipeline(
        log=log, topology=TOPO, state_dir=tmp_path / "s", db_url=db_url, setup=SETUP,
        batches=BatchSettings(max_batch=100),
    )  # fmt: skip
    pipe.run(idle_exit=0.3)
    pipe.close()
    assert check_margins(log, TOPO, SETUP, pipe.db).ok
    # an earlier version (the database keeps only the latest) again, 2e-7 off
    reader = log.consumer()
    reader.assign({(TOPO.name(MARGINS), p): 0 for p in range(TOPO.partitions)})
    first = reader.consume(1, 5.0)[0]
    reader.close()
    e = Codec(TOPO.spec(MARGINS).events).try_decode(first.value)
    assert isinstance(e, ev.AccountMargin)
    twin = msgspec.structs.replace(e, margin=e.margin * (1 + 2e-7))
    producer.produce(TOPO.name(MARGINS), encode(twin), partition=first.partition)
    producer.flush()
    report = check_margins(log, TOPO, SETUP, pipe.db)
    assert any("recomputed at that version" in m for m in report.mismatches), report.mismatches
    pipe.db.close()
