"""The topics of the platform, what each carries, and how keys map to partitions.

Partitioned topics (trades, positions, margins) are keyed by account, so every event of
one account lands on one partition and is read in order by one worker: per-account order
is guaranteed by partitioning, not by a global sequence. CRIF submissions and their SIMM
results are keyed by portfolio, for the same reason: a portfolio's submissions are read in
order, so the later one (greater offset) supersedes the earlier. The broadcast market topic
is read whole by every worker that needs it. It carries everything but positions that a
margin depends on, in one order: prices, vols, risk-parameter changes and reference data
(listings of series, accounts and members, the date roll). One ordered stream is what lets a
margin's version (position version, market offset) name all of its inputs; reference data on
a topic of its own would have no order relative to the prices and parameters it combines
with.

The partition of a key is ``crc32(key as UTF-8) mod partitions``, computed here for both
log implementations (the Kafka producer is always given an explicit partition), so the
embedded log and Kafka place every key identically. A topic's partition count is fixed at
creation: changing it would move keys between partitions (and the test broker cannot add
partitions anyway).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import StrEnum

from marginflow.core.errors import ConfigurationError
from marginflow.stream import events as ev


class Distribution(StrEnum):
    BY_KEY = "by_key"  # one partition per key hash; consumer groups share partitions
    BROADCAST = "broadcast"  # every consumer reads every partition


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its logical name, what it carries and how it is distributed."""

    name: str
    events: tuple[type[ev.Event], ...]
    distribution: Distribution
    partitions: int

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigurationError(f"topic {self.name}: partitions must be >= 1")


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (stable across runs and processes)."""
    data = key.encode() if isinstance(key, str) else key
    return zlib.crc32(data) % partitions


TRADES = "trades"
MARKET = "market"
CRIF = "crif"
POSITIONS = "positions"
MARGINS = "margins"
MEMBER_MARGINS = "member-margins"
SIMM_RESULTS = "simm-results"
DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True, slots=True)
class Topology:
    """The platform's topics with their partition counts and a name prefix (a namespace,
    so several pipelines can share one broker). Partitioned topics share one count, so an
    account sits on the same partition number of trades, positions and margins."""

    partitions: int = 4
    prefix: str = "mf."

    def spec(self, logical: str) -> TopicSpec:
        """The :class:`TopicSpec` of a logical topic name (``trades``, ``market``, ...)."""
        by_key, broadcast = Distribution.BY_KEY, Distribution.BROADCAST
        table: dict[str, tuple[tuple[type[ev.Event], ...], Distribution, int]] = {
            TRADES: ((ev.Trade, ev.PositionSnapshot), by_key, self.partitions),
            # Everything but positions that a margin depends on, in one ordered stream: its
            # offset versions a margin, risk-parameter changes and reference data included
            MARKET: (
                (
                    ev.PriceUpdate,
                    ev.VolUpdate,
                    ev.RiskParameterChange,
                    ev.InstrumentRef,
                    ev.AccountRef,
                    ev.MemberRef,
                    ev.DateRoll,
                ),
                broadcast,
                1,
            ),
            CRIF: ((ev.CrifSubmission,), by_key, self.partitions),
            POSITIONS: ((ev.AccountPositions,), by_key, self.partitions),
            MARGINS: ((ev.AccountMargin,), by_key, self.partitions),
            MEMBER_MARGINS: ((ev.MemberMarginPartial,), by_key, self.partitions),
            # keyed by portfolio like its input, so a submission and its result sit on the
            # same partition number and a portfolio's results stay in submission order
            SIMM_RESULTS: ((ev.SimmResult,), by_key, self.partitions),
            DEAD_LETTERS: ((ev.DeadLetter,), by_key, 1),
        }
        try:
            events, dist, parts = table[logical]
        except KeyError:
            raise ConfigurationError(
                f"unknown topic {logical!r}; known: {', '.join(sorted(table))}"
            ) from None
        return TopicSpec(self.prefix + logical, events, dist, parts)

    def all(self) -> tuple[TopicSpec, ...]:
        names = (
            TRADES,
            MARKET,
            CRIF,
            POSITIONS,
            MARGINS,
            MEMBER_MARGINS,
            SIMM_RESULTS,
            DEAD_LETTERS,
        )
        return tuple(self.spec(n) for n in names)

    def name(self, logical: str) -> str:
        return self.prefix + logical
