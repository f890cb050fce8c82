"""Market ticks coalesced per micro-batch: any interleaving of price and vol ticks read in
one batch leaves the engine exactly where applying them one by one does (and where a full
build on the final market does), the latest value of each field of each underlying wins
by market offset, every account touched is refreshed and published once per batch, and each
margin records what its batch covered (``market_from`` .. ``market_offset``, ticks read,
moves applied).

No log: the risk calculator is driven directly (apply / recompute, as the worker calls
them), on a small book whose engine is built once and copied.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marginflow.core.book import Book
from marginflow.core.ids import AccountId, InstrumentId, UnderlyingId
from marginflow.engine.settings import MarginSettings, build_engine
from marginflow.engine.state import MarginEngine
from marginflow.sim.synthetic_book import BookSpec
from marginflow.stream import events as ev
from marginflow.stream.risk_calculator import MarginSetup, RiskCalculator
from marginflow.stream.topics import MARKET, POSITIONS, Topology, partition_for

BOOK = BookSpec(members=2, accounts=24, underlyings=4, series=80, sod_positions=200, seed=3)
SETTINGS = MarginSettings(lookback=250)
TOPO = Topology(partitions=4)
POS, MKT = TOPO.name(POSITIONS), TOPO.name(MARKET)
T0 = 1_717_000_000_000_000_000

Tick = tuple[int, str, float]
"""(underlying index, what moves: price, vol, skew or vol+skew, a relative step)."""


@cache
def _pristine() -> MarginEngine:
    return MarginSetup(BOOK.book(), SETTINGS).engine()


def _holdings() -> dict[str, dict[str, int]]:
    book = BOOK.book()
    x = book.positions.matrix.tocoo()
    held: dict[str, dict[str, int]] = {}
    for a, j, q in zip(x.row.tolist(), x.col.tolist(), x.data.tolist(), strict=True):
        if round(q):
            held.setdefault(book.positions.accounts[a], {})[book.instruments.ids[j]] = round(q)
    return held


def calculator() -> RiskCalculator:
    """A calculator owning every partition, holding the book's start-of-day positions."""
    calc = RiskCalculator(TOPO, copy.deepcopy(_pristine()))
    calc.restore_broadcast(None)
    for p in range(TOPO.partitions):
        calc.restore((POS, p), None)
    offsets = dict.fromkeys(range(TOPO.partitions), 0)
    for account, held in sorted(_holdings().items()):
        p = partition_for(account, TOPO.partitions)
        event = ev.AccountPositions(
            account=AccountId(account),
            instruments=tuple(InstrumentId(i) for i in held),
            quantities=tuple(held.values()),
            source_partition=p,
            source_offset=offsets[p],
            event_time=T0,
        )
        calc.apply((POS, p), [(offsets[p], event)])
        offsets[p] += 1
    calc.recompute()
    return calc


def events(ticks: list[Tick], first: int = 0) -> list[tuple[int, ev.Event]]:
    """``ticks`` as market events at offsets ``first``, ``first + 1``, ... Each step is
    relative to the book's own level, so a tick's value does not depend on those before."""
    book = BOOK.book()
    out: list[tuple[int, ev.Event]] = []
    for k, (u, what, step) in enumerate(ticks):
        name, t = UnderlyingId(book.underlyings.ids[u]), T0 + first + k
        event: ev.Event
        if what == "price":
            event = ev.PriceUpdate(
                underlying=name, price=float(book.market.spot[u]) * (1 + step), event_time=t
            )
        else:
            vol = float(book.market.atm_vol[u]) * (1 + step) if "vol" in what else None
            skew = float(book.market.skew[u]) + step if "skew" in what else None
            event = ev.VolUpdate(underlying=name, vol=vol, skew=skew, event_time=t)
        out.append((first + k, event))
    return out


def final_market(book: Book, ticks: list[Tick]) -> Book:
    """``book`` with its market after ``ticks`` applied one by one (an independent reading
    of "latest per field wins")."""
    market = book.market
    for _, e in events(ticks):
        u = book.underlyings.index()[str(getattr(e, "underlying", ""))]
        if isinstance(e, ev.PriceUpdate):
            market = market.with_underlying(u, spot=e.price)
        elif isinstance(e, ev.VolUpdate):
            market = market.with_underlying(u, atm_vol=e.vol, skew=e.skew)
    return replace(book, market=market)


def assert_same_state(a: MarginEngine, b: MarginEngine) -> None:
    """Bit for bit: the engine promises it (a P&L row is a function of the market alone,
    an account's vector is summed afresh from its holdings in instrument order)."""
    np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(a.pnl, b.pnl)
    for name in ("margin", "es", "es_base", "var", "apc", "concentration", "worst"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def margins(calc: RiskCalculator, batch: list[tuple[int, ev.Event]]) -> list[ev.AccountMargin]:
    if batch:
        calc.apply((MKT, 0), batch)
    out = [o.event for o in calc.recompute()]
    return [e for e in out if isinstance(e, ev.AccountMargin)]


ticks_strategy = st.lists(
    st.tuples(
        st.integers(0, BOOK.underlyings - 1),
        st.sampled_from(["price", "vol", "skew", "vol+skew"]),
        st.floats(-0.2, 0.2, allow_nan=False).map(lambda x: round(x, 4)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticks=ticks_strategy)
def test_a_coalesced_batch_equals_its_ticks_one_by_one(ticks: list[Tick]) -> None:
    together, apart = calculator(), calculator()
    published = {e.account: e for e in margins(together, events(ticks))}
    last: dict[str, ev.AccountMargin] = {}
    for offset_event in events(ticks):
        last.update({e.account: e for e in margins(apart, [offset_event])})
    assert_same_state(together._engine, apart._engine)
    # every account the batch re-margined carries the value the last tick that touched it
    # left it with, versioned by the batch's last offset
    assert published.keys() == last.keys()
    for account, e in published.items():
        assert e.margin == last[account].margin
        assert e.market_offset == len(ticks) - 1
    # and a full build on the final market agrees, to the bit
    full = build_engine(final_market(BOOK.book(), ticks), SETTINGS)
    np.testing.assert_array_equal(together._engine.matrix, full.matrix)
    np.testing.assert_array_equal(together._engine.margin, full.margin)


def test_a_spot_tick_and_a_vol_tick_of_one_underlying_in_one_batch_both_apply() -> None:
    calc = calculator()
    book = BOOK.book()
    batch = events([(0, "price", 0.05), (1, "price", 0.01), (0, "vol", 0.3), (0, "skew", -0.1)])
    batch += events([(1, "price", -0.02)], first=len(batch))  # a later price of 1 wins
    out = margins(calc, batch)
    m = calc._engine.book.market
    assert m.spot[0] == pytest.approx(book.market.spot[0] * 1.05, rel=1e-15)
    assert m.atm_vol[0] == pytest.approx(book.market.atm_vol[0] * 1.3, rel=1e-15)
    assert m.skew[0] == pytest.approx(book.market.skew[0] - 0.1, rel=1e-15)
    assert m.spot[1] == pytest.approx(book.market.spot[1] * 0.98, rel=1e-15)
    assert out
    assert {(e.market_from, e.market_offset) for e in out} == {(0, 4)}
    assert {(e.market_ticks, e.market_moves) for e in out} == {(5, 2)}
    # the state a restarted calculator rebuilds from its snapshot says the same
    snap = calc.snapshot_broadcast()
    again = RiskCalculator(TOPO, copy.deepcopy(_pristine()))
    again.restore_broadcast(snap)
    np.testing.assert_array_equal(again._engine.matrix, calc._engine.matrix)


def test_each_margin_records_its_batch_and_a_quiet_batch_an_empty_range() -> None:
    calc = calculator()
    first = margins(calc, events([(0, "price", 0.01), (0, "price", 0.02), (2, "vol", -0.1)]))
    assert first
    assert {(e.market_from, e.market_offset, e.market_ticks, e.market_moves) for e in first} == {
        (0, 2, 3, 2)
    }
    # a refused tick is read (the range covers it) but neither counted nor applied
    bad = ev.VolUpdate(underlying=UnderlyingId("NOPE"), vol=0.2, event_time=T0 + 3)
    second = margins(calc, [(3, bad), *events([(1, "price", 0.01)], first=4)])
    assert {(e.market_from, e.market_offset, e.market_ticks, e.market_moves)
            for e in second} == {(3, 4, 1, 1)}  # fmt: skip
    # a batch of positions only read no market: the range after the last offset is empty
    account, held = sorted(_holdings().items())[0]
    p = partition_for(account, TOPO.partitions)
    instrument = next(iter(held))
    change = ev.AccountPositions(
        account=AccountId(account),
        instruments=(InstrumentId(instrument),),
        quantities=(held[instrument] + 1,),
        source_partition=p,
        source_offset=10_000,
        event_time=T0 + 10,
    )
    calc.apply((POS, p), [(10_000, change)])
    (only,) = margins(calc, [])
    assert (only.market_from, only.market_offset, only.market_ticks, only.market_moves) == (
        5,
        4,
        0,
        0,
    )


def test_every_account_a_batch_touches_is_refreshed_and_published_once() -> None:
    calc = calculator()
    engine = calc._engine
    refreshed: list[np.ndarray] = []
    refresh = engine._refresh

    def spy(rows: np.ndarray, *, resum: np.ndarray | None = None) -> None:
        refreshed.append(rows.copy())
        refresh(rows, resum=resum)

    engine._refresh = spy  # type: ignore[method-assign]
    # an account that trades and holds a moved underlying: both in one batch
    book = BOOK.book()
    account, held = sorted(_holdings().items())[0]
    instrument = next(iter(held))
    u = int(book.instruments.underlying[book.instruments.index()[instrument]])
    p = partition_for(account, TOPO.partitions)
    change = ev.AccountPositions(
        account=AccountId(account),
        instruments=(InstrumentId(instrument),),
        quantities=(held[instrument] + 3,),
        source_partition=p,
        source_offset=10_000,
        event_time=T0 + 10,
    )
    calc.apply((POS, p), [(10_000, change)])
    ticks = [(u, "price", 0.01), (u, "vol", 0.1), ((u + 1) % 4, "price", -0.03), (u, "price", 0.02)]
    out = margins(calc, events(ticks))
    assert len(refreshed) == 1  # one refresh for the batch
    rows = refreshed[0]
    assert rows.size == np.unique(rows).size  # each account once
    assert engine.book.positions.accounts.index(account) in rows.tolist()
    names = [e.account for e in out]
    assert len(names) == len(set(names)) == rows.size  # published once each
    (mine,) = [e for e in out if e.account == account]
    assert mine.position_version == 10_000
    assert mine.event_time == T0 + 10
