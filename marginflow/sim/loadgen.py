"""A load generator: a reproducible stream of trades (and market moves from a book's own
spots) for tests,
benchmarks and ``marginflow cluster up``, plus a few CRIF submissions and approved
risk-parameter changes for the bilateral side and the audit trail.

Trades pick an account uniformly and an instrument from the account's own small universe
(accounts hold a handful of series, as real ones do), with quantities of 1-50 contracts
either way. Event times advance by a fixed step from ``start_ns``. Same seed, same stream.
CRIF submissions come from :mod:`marginflow.sim.synthetic_crif` (every risk class and margin
type), one per portfolio, each firm submitting against the next.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from marginflow.core.book import Book
from marginflow.core.ids import AccountId, InstrumentId, UnderlyingId
from marginflow.stream import events as ev
from marginflow.stream.codec import encode
from marginflow.stream.log.base import Producer
from marginflow.stream.publish import crif_row
from marginflow.stream.topics import MARKET, TRADES, Topology, partition_for

START_NS = 1_717_000_000_000_000_000


def session_start_ns(valuation_date: dt.date) -> int:
    """The opening (09:30 New York, 14:30 UTC) of the first trading day after a book's
    valuation date, in UTC ns: when a generated day of that book trades. Weekends, New
    Year's Day and Christmas are skipped (the other exchange holidays are not modelled)."""
    day = valuation_date + dt.timedelta(days=1)
    while day.weekday() >= 5 or (day.month, day.day) in ((1, 1), (12, 25)):
        day += dt.timedelta(days=1)
    opening = dt.datetime.combine(day, dt.time(14, 30), tzinfo=dt.UTC)
    return int(opening.timestamp()) * 1_000_000_000


@dataclass(frozen=True, slots=True)
class TradeFlow:
    """Parameters of a generated trade stream."""

    accounts: int = 1_000
    instruments: int = 2_000
    per_account: int = 8
    seed: int = 7
    start_ns: int = START_NS
    step_ns: int = 1_000_000
    account_ids: tuple[str, ...] = ()
    instrument_ids: tuple[str, ...] = ()

    @classmethod
    def over(cls, accounts: Sequence[str], instruments: Sequence[str], **kw: int) -> TradeFlow:
        """A flow over given account and instrument ids (a book's, say)."""
        return cls(
            accounts=len(accounts),
            instruments=len(instruments),
            account_ids=tuple(accounts),
            instrument_ids=tuple(instruments),
            **kw,
        )

    def account(self, i: int) -> AccountId:
        return AccountId(self.account_ids[i] if self.account_ids else f"ACC{i:06d}")

    def instrument(self, j: int) -> InstrumentId:
        return InstrumentId(self.instrument_ids[j] if self.instrument_ids else f"INS{j:06d}")


def trades(flow: TradeFlow, n: int, *, first: int = 0) -> Iterator[ev.Trade]:
    """Trades ``first`` .. ``first + n - 1`` of the stream (deterministic in ``flow.seed``
    and the trade number, so a stream can be generated in pieces)."""
    universe = np.random.default_rng(flow.seed).integers(
        0, flow.instruments, size=(flow.accounts, flow.per_account)
    )
    chunk = 65_536
    for base in range(first - first % chunk, first + n, chunk):
        rng = np.random.default_rng([flow.seed, base // chunk])
        acc = rng.integers(0, flow.accounts, size=chunk)
        pick = rng.integers(0, flow.per_account, size=chunk)
        size = rng.integers(1, 51, size=chunk) * np.where(rng.random(chunk) < 0.5, -1, 1)
        price = np.round(rng.uniform(0.05, 50.0, size=chunk), 2)
        lo, hi = max(first, base) - base, min(first + n, base + chunk) - base
        for k in range(lo, hi):
            a = int(acc[k])
            number = base + k
            yield ev.Trade(
                trade_id=f"T{number:010d}",
                account=flow.account(a),
                instrument=flow.instrument(int(universe[a, pick[k]])),
                quantity=int(size[k]),
                price=float(price[k]),
                event_time=flow.start_ns + number * flow.step_ns,
            )


def price_moves(
    spots: Mapping[str, float],
    n: int,
    *,
    seed: int = 11,
    start_ns: int = START_NS,
    step_ns: int = 1_000_000,
    sweep: bool = False,
) -> Iterator[ev.PriceUpdate]:
    """``n`` price updates: a random walk of 10 bp steps (log-normal) from each underlying's
    level in ``spots`` (a book's spots: ``book_spots``), on underlyings picked at random, or
    with ``sweep`` in turn (so every U consecutive moves move each of the U underlyings
    once, as a market-data feed refreshes its whole universe)."""
    underlyings = list(spots)
    rng = np.random.default_rng(seed)
    level = {u: float(s) for u, s in spots.items()}
    picks = rng.integers(0, len(underlyings), size=n)
    if sweep:
        picks = np.arange(n) % len(underlyings)
    shocks = np.exp(rng.normal(0.0, 0.001, size=n))
    for k in range(n):
        u = underlyings[int(picks[k])]
        level[u] *= float(shocks[k])
        yield ev.PriceUpdate(
            underlying=UnderlyingId(u), price=level[u], event_time=start_ns + k * step_ns
        )


def market_moves(
    book: Book, n: int, *, seed: int = 11, sweep: bool = False, vol_share: float = 0.0
) -> Iterator[tuple[ev.PriceUpdate | ev.VolUpdate, ...]]:
    """``n`` moves of ``book``'s underlyings, each the ticks it sends: the price tick of
    :func:`price_moves` and, with probability ``vol_share``, a vol tick of the same
    underlying after it (its ATM vol: a log-normal random walk of 2% steps from the book's
    own vol). Event times are :func:`price_moves`'s; a publisher restamps them."""
    vols = dict(zip(book.underlyings.ids, book.market.atm_vol.tolist(), strict=True))
    rng = np.random.default_rng([seed, 1])
    for move in price_moves(book_spots(book), n, seed=seed, sweep=sweep):
        if not (vol_share and rng.random() < vol_share):
            yield (move,)
            continue
        u = move.underlying
        vols[u] *= float(np.exp(rng.normal(0.0, 0.02)))
        yield move, ev.VolUpdate(underlying=u, vol=vols[u], event_time=move.event_time)


def book_spots(book: Book) -> dict[str, float]:
    """Each underlying's spot in ``book``'s market: where generated moves start."""
    return dict(zip(book.underlyings.ids, book.market.spot.tolist(), strict=True))


def replay_day(
    producer: Producer,
    topology: Topology,
    *,
    book: Book,
    trades_count: int,
    rate: float | None,
    market_every: int = 100,
    seed: int = 7,
    chunk: int = 1_000,
    sweep: bool = False,
    vol_share: float = 0.0,
) -> int:
    """Publish ``trades_count`` trades at ``rate`` per second (None: as fast as possible),
    with a market move every ``market_every`` trades (0: none; ``sweep`` and ``vol_share``
    as :func:`market_moves` takes them). Event times are wall-clock now, so lag in event
    time reads as real seconds. Returns the number of trades published."""
    import time

    import msgspec

    flow = TradeFlow.over(book.positions.accounts, book.instruments.ids, seed=seed)
    n_moves = trades_count // max(market_every, 1) + 1
    moves = market_moves(book, n_moves, seed=seed, sweep=sweep, vol_share=vol_share)
    topic, parts = topology.name(TRADES), topology.spec(TRADES).partitions
    market = topology.name(MARKET)
    start = time.monotonic()
    sent = 0
    while sent < trades_count:
        n = min(chunk, trades_count - sent)
        now = time.time_ns()
        for k, t in enumerate(trades(flow, n, first=sent)):
            key = t.account
            stamped = ev.Trade(
                trade_id=t.trade_id,
                account=t.account,
                instrument=t.instrument,
                quantity=t.quantity,
                price=t.price,
                event_time=now,
            )
            producer.produce(
                topic, encode(stamped), partition=partition_for(key, parts), key=key.encode()
            )
            if market_every and (sent + k) % market_every == 0:
                for tick in next(moves):
                    stamped_tick = msgspec.structs.replace(tick, event_time=now)
                    producer.produce(market, encode(stamped_tick), partition=0)
        producer.flush()
        sent += n
        if rate:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    return sent


def crif_submissions(
    portfolios: int = 3,
    *,
    rows: int = 300,
    parties: Sequence[str] = ("BANK-A", "BANK-B", "BANK-C"),
    business_date: str = "2024-05-31",
    seed: int = 11,
    start_ns: int = START_NS,
) -> list[ev.CrifSubmission]:
    """One submission per generated portfolio (about ``rows`` rows in all): portfolio ``k``
    is ``parties[k]``'s against ``parties[k + 1]`` (cyclically), named ``<party>-P<k>``."""
    from marginflow.sim.synthetic_crif import CrifSpec, generate

    generated = generate(CrifSpec(rows=rows, portfolios=portfolios, trades=30, seed=seed))
    by_portfolio: dict[str, list[ev.CrifRow]] = {}
    for row in generated:
        by_portfolio.setdefault(str(row["PortfolioID"]), []).append(crif_row(row))
    out = []
    for k, (name, crif) in enumerate(sorted(by_portfolio.items())):
        party = parties[k % len(parties)]
        out.append(
            ev.CrifSubmission(
                submission_id=f"CRIF-{business_date}-{name}",
                party=party,
                counterparty=parties[(k + 1) % len(parties)],
                portfolio=f"{party}-{name}",
                business_date=business_date,
                rows=tuple(crif),
                event_time=start_ns + k * 1_000_000,
            )
        )
    return out


def parameter_change(
    change_id: str,
    parameter: str,
    value: float | str,
    *,
    at_ns: int,
    effective_ns: int | None = None,
    approved_by: str = "risk.head",
) -> ev.RiskParameterChange:
    """An approved (maker-checker) change of one setting of the expected-shortfall model,
    published at ``at_ns`` and effective at ``effective_ns`` (default: at once)."""
    return ev.RiskParameterChange(
        change_id=change_id,
        model="es",
        parameter=parameter,
        value=value,
        requested_by="risk.analyst",
        approved_by=approved_by,
        effective_time=at_ns if effective_ns is None else effective_ns,
        event_time=at_ns,
    )


def risk_parameter_changes(*, start_ns: int = START_NS) -> list[ev.RiskParameterChange]:
    """Two approved (maker-checker) changes of the expected-shortfall model's settings."""
    return [
        parameter_change("RP-0001", "confidence", 0.99, at_ns=start_ns),
        parameter_change(
            "RP-0002",
            "apc",
            "buffer",
            at_ns=start_ns + 1_000_000,
            effective_ns=start_ns + 1_000_000_000,
            approved_by="cro",
        ),
    ]
