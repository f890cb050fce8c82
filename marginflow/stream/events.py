"""Versioned event schemas: every input and every result that travels on the log.

Each event is an immutable :class:`msgspec.Struct` serialised as a MessagePack map with two
envelope fields: ``type`` (the tag naming the event) and ``v`` (its schema version).
Domain checks run in ``__post_init__``, so an event is valid whether it was built in code
or decoded from bytes; a failure raises :class:`~marginflow.core.errors.ValidationError`
naming the field and the reason.

Conventions
-----------
* Times are integers, **nanoseconds since the Unix epoch, UTC** (``event_time``): exact,
  cheap to compare, and fine enough to measure micro-batch latency.
* Quantities are signed integers of contracts (options, futures) or shares (equities):
  positive is long / a buy, negative short / a sell. Integers keep position sums exact, so a
  replay and a batch recompute agree to the last unit.
* Prices are per unit of the underlying (see :mod:`marginflow.core.book`);
  volatilities are annualised, of log returns.
* Results carry the input offsets they were computed from (``source_partition`` and
  ``source_offset``, and ``market_offset`` for market data): the version by which results
  are upserted idempotently and by which any result is traced to its inputs.

Schema evolution
----------------
A compatible change (a new optional field with a default) keeps ``v``; old readers ignore
the field and new readers default it. A breaking change bumps the ``SCHEMA_VERSIONS`` entry
and adds an upgrade step in :mod:`marginflow.stream.codec`; a reader refuses an event whose
``v`` is newer than it knows, with a reason, rather than guessing.
"""

from __future__ import annotations

import math
from typing import ClassVar

import msgspec

from marginflow.core.errors import ValidationError
from marginflow.core.ids import AccountId, InstrumentId, MemberId, UnderlyingId
from marginflow.io import bounds

_QMAX = int(bounds.QUANTITY_MAX)

# Schema version of each event type this code writes (and the newest it reads).
SCHEMA_VERSIONS: dict[str, int] = {}


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=False):
    """Base of every event: a tag ``type`` and a schema version ``v``."""

    v: int = 1
    KEY_FIELD: ClassVar[str | None] = None

    def key(self) -> str | None:
        """The partitioning key (an account for partitioned topics, None for broadcast)."""
        name = self.KEY_FIELD
        return None if name is None else str(getattr(self, name))


def _register(cls: type[Event]) -> type[Event]:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    (version,) = (f.default for f in msgspec.structs.fields(cls) if f.name == "v")
    SCHEMA_VERSIONS[tag] = int(version)
    return cls


# --- domain checks: small, named, and each raising ValidationError(field, reason) ----------


def _clean(value: str) -> bool:
    """Non-empty, without surrounding blanks."""
    return bool(value) and not value[0].isspace() and not value[-1].isspace()


def _nonempty(field: str, value: str) -> None:
    if not _clean(value):
        raise ValidationError(field, f"must be non-empty without surrounding blanks, got {value!r}")


def _finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValidationError(field, f"must be finite, got {value!r}")


def _positive(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValidationError(field, f"must be finite and > 0, got {value!r}")


def _nonnegative(field: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValidationError(field, f"must be finite and >= 0, got {value!r}")


def _at_most(field: str, value: float, high: float) -> None:
    """|value| <= high: the plausibility bounds of :mod:`marginflow.io.bounds`, so a
    hostile 1e308 is dead-lettered here instead of overflowing a worker's arithmetic."""
    if not abs(value) <= high:
        raise ValidationError(field, f"must be within [-{high:g}, {high:g}], got {value!r}")


def _price(field: str, value: float) -> None:
    _positive(field, value)
    if not bounds.PRICE_MIN <= value <= bounds.PRICE_MAX:
        raise ValidationError(
            field, f"must be within [{bounds.PRICE_MIN:g}, {bounds.PRICE_MAX:g}], got {value!r}"
        )


def _time(field: str, value: int) -> None:
    if value <= 0:
        raise ValidationError(field, f"must be > 0 (ns since the Unix epoch), got {value!r}")


def _one_of(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValidationError(field, f"must be one of {', '.join(choices)}, got {value!r}")


def _iso_date(field: str, value: str) -> None:
    import datetime as dt

    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, f"must be an ISO date YYYY-MM-DD, got {value!r}") from None


# --- inputs ------------------------------------------------------------------------------


@_register
class Trade(Event, frozen=True, kw_only=True, tag="trade"):
    """One execution: ``quantity`` contracts or shares of ``instrument`` for ``account``
    at ``price`` (per unit of the underlying). Positive quantity buys, negative sells."""

    KEY_FIELD: ClassVar[str | None] = "account"
    trade_id: str
    account: AccountId
    instrument: InstrumentId
    quantity: int
    price: float
    event_time: int

    def __post_init__(self) -> None:
        # one cheap test for the common valid trade; the named checks find what failed
        tid, acc, ins = self.trade_id, self.account, self.instrument
        if (
            self.quantity
            and -_QMAX <= self.quantity <= _QMAX
            and 0.0 <= self.price <= bounds.PRICE_MAX
            and self.event_time > 0
            and tid
            and acc
            and ins
            and tid.strip() == tid  # strip() returns the same object when clean: cheap
            and acc.strip() == acc
            and ins.strip() == ins
        ):
            return
        _nonempty("trade_id", self.trade_id)
        _nonempty("account", self.account)
        _nonempty("instrument", self.instrument)
        if self.quantity == 0:
            raise ValidationError("quantity", "must not be 0")
        _at_most("quantity", self.quantity, _QMAX)
        _nonnegative("price", self.price)
        _at_most("price", self.price, bounds.PRICE_MAX)
        _time("event_time", self.event_time)


@_register
class PositionSnapshot(Event, frozen=True, kw_only=True, tag="position_snapshot"):
    """Start-of-day position: sets (does not add to) ``account``'s holding of ``instrument``
    as of ``business_date``. Later trades are applied on top of it."""

    KEY_FIELD: ClassVar[str | None] = "account"
    account: AccountId
    instrument: InstrumentId
    quantity: int
    business_date: str
    event_time: int

    def __post_init__(self) -> None:
        _nonempty("account", self.account)
        _nonempty("instrument", self.instrument)
        _at_most("quantity", self.quantity, _QMAX)
        _iso_date("business_date", self.business_date)
        _time("event_time", self.event_time)


@_register
class PriceUpdate(Event, frozen=True, kw_only=True, tag="price"):
    """A new price of an underlying (spot; for a future, the futures price)."""

    underlying: UnderlyingId
    price: float
    event_time: int

    def __post_init__(self) -> None:
        _nonempty("underlying", self.underlying)
        _price("price", self.price)
        _time("event_time", self.event_time)


@_register
class VolUpdate(Event, frozen=True, kw_only=True, tag="vol"):
    """A new implied volatility (annualised) for an underlying, and/or a new smile slope.

    With ``expiry`` and ``strike`` absent it is the level of the whole surface (an ATM
    level that the engine applies to every series of the underlying) and ``skew`` its slope
    (vol per unit of ln K/S); with them, one point. ``vol`` or ``skew`` None leaves it as it
    was; one of them is given.
    """

    underlying: UnderlyingId
    vol: float | None
    event_time: int
    expiry: str | None = None
    strike: float | None = None
    skew: float | None = None

    def __post_init__(self) -> None:
        _nonempty("underlying", self.underlying)
        if self.vol is None and self.skew is None:
            raise ValidationError("vol", "a vol update moves the vol, the skew or both")
        if self.vol is not None:
            _nonnegative("vol", self.vol)
            if self.vol > bounds.VOL_MAX:
                raise ValidationError(
                    "vol", f"must be <= {bounds.VOL_MAX:g} (1000% annualised), got {self.vol!r}"
                )
        if self.skew is not None:
            s_max = bounds.SKEW_MAX
            if not (math.isfinite(self.skew) and -s_max <= self.skew <= s_max):
                raise ValidationError(
                    "skew", f"must be within [-{s_max:g}, {s_max:g}], got {self.skew!r}"
                )
            if self.expiry is not None or self.strike is not None:
                raise ValidationError("skew", "is a property of the whole smile, not of a point")
        if self.expiry is not None:
            _iso_date("expiry", self.expiry)
        if self.strike is not None:
            _price("strike", self.strike)
        _time("event_time", self.event_time)


INSTRUMENT_KINDS = ("call", "put", "future", "equity")
EXERCISE_STYLES = ("american", "european")


@_register
class InstrumentRef(Event, frozen=True, kw_only=True, tag="instrument"):
    """Reference data for one instrument: an option (``call``/``put``), a future or the
    underlying itself (``equity``). ``strike`` and ``expiry`` are required for options."""

    id: InstrumentId
    underlying: UnderlyingId
    kind: str
    multiplier: float = 1.0
    strike: float | None = None
    expiry: str | None = None
    style: str = "american"
    event_time: int

    def __post_init__(self) -> None:
        _nonempty("id", self.id)
        _nonempty("underlying", self.underlying)
        _one_of("kind", self.kind, INSTRUMENT_KINDS)
        _one_of("style", self.style, EXERCISE_STYLES)
        _positive("multiplier", self.multiplier)
        _at_most("multiplier", self.multiplier, bounds.MULTIPLIER_MAX)
        if self.kind in ("call", "put"):
            if self.strike is None:
                raise ValidationError("strike", f"is required for a {self.kind}")
            if self.expiry is None:
                raise ValidationError("expiry", f"is required for a {self.kind}")
        if self.strike is not None:
            _price("strike", self.strike)
        if self.expiry is not None:
            _iso_date("expiry", self.expiry)
        _time("event_time", self.event_time)


ACCOUNT_TYPES = ("house", "client")


@_register
class AccountRef(Event, frozen=True, kw_only=True, tag="account"):
    """Reference data: ``id`` belongs to clearing member ``member``."""

    id: AccountId
    member: MemberId
    account_type: str = "house"
    event_time: int

    def __post_init__(self) -> None:
        _nonempty("id", self.id)
        _nonempty("member", self.member)
        _one_of("account_type", self.account_type, ACCOUNT_TYPES)
        _time("event_time", self.event_time)


@_register
class MemberRef(Event, frozen=True, kw_only=True, tag="member"):
    """Reference data: a clearing member."""

    id: MemberId
    name: str = ""
    event_time: int

    def __post_init__(self) -> None:
        _nonempty("id", self.id)
        _time("event_time", self.event_time)


@_register
class DateRoll(Event, frozen=True, kw_only=True, tag="date_roll"):
    """The valuation date moves to ``business_date``: every series is revalued for the
    shorter time to expiry and the series that expired before it leave the book."""

    business_date: str
    event_time: int

    def __post_init__(self) -> None:
        _iso_date("business_date", self.business_date)
        _time("event_time", self.event_time)


@_register
class RiskParameterChange(Event, frozen=True, kw_only=True, tag="risk_parameter"):
    """An approved change of one risk parameter of a margin model (maker-checker: the
    approver must differ from the requester). ``value`` is a number or a string."""

    change_id: str
    model: str
    parameter: str
    value: float | str
    requested_by: str
    approved_by: str
    effective_time: int
    event_time: int

    def __post_init__(self) -> None:
        for name in ("change_id", "model", "parameter", "requested_by", "approved_by"):
            _nonempty(name, getattr(self, name))
        # four eyes: one person spelled twice ("Alice", "alice ") is still one person
        if self.requested_by.casefold() == self.approved_by.casefold():
            raise ValidationError("approved_by", "must differ from requested_by (maker-checker)")
        if isinstance(self.value, float):
            _finite("value", self.value)
        _time("effective_time", self.effective_time)
        _time("event_time", self.event_time)


class CrifRow(msgspec.Struct, frozen=True, kw_only=True):
    """One CRIF sensitivity row (ISDA Common Risk Interchange Format field names, snake_case).

    ``amount`` is in ``amount_currency``; ``amount_usd`` is the same amount in USD. The
    optional fields (added compatibly, ``""`` when absent) are the CRIF's ``TradeID``,
    ``EndDate`` (YYYY-MM-DD; both required on Schedule rows) and the regulations a row
    falls under on each side (``CollectRegulation``/``PostRegulation``, e.g. ``"SEC,CFTC"``).
    Buckets, tenors and qualifiers are checked against a SIMM calibration by the SIMM
    worker, not here: which values are valid depends on the calibration version."""

    im_model: str = "SIMM"
    product_class: str = ""
    risk_type: str
    qualifier: str = ""
    bucket: str = ""
    label1: str = ""
    label2: str = ""
    amount: float
    amount_currency: str = "USD"
    amount_usd: float
    trade_id: str = ""
    end_date: str = ""
    collect_regulation: str = ""
    post_regulation: str = ""

    def __post_init__(self) -> None:
        _one_of("im_model", self.im_model, ("SIMM", "Schedule"))
        _nonempty("risk_type", self.risk_type)
        _finite("amount", self.amount)
        _finite("amount_usd", self.amount_usd)
        if len(self.amount_currency) != 3 or not self.amount_currency.isalpha():
            raise ValidationError(
                "amount_currency", f"must be a 3-letter ISO code, got {self.amount_currency!r}"
            )


@_register
class CrifSubmission(Event, frozen=True, kw_only=True, tag="crif"):
    """A firm's CRIF for one portfolio against one counterparty, as of a business date.

    The sensitivities are ``party``'s (CRIF sign convention). A later submission of the same
    party, portfolio and business date replaces an earlier one (the greater offset on the
    ``crif`` topic wins). ``simm_version`` optionally names the SIMM calibration the
    sensitivities were produced for (``""``: the SIMM worker's configured one)."""

    KEY_FIELD: ClassVar[str | None] = "portfolio"
    submission_id: str
    party: str
    counterparty: str
    portfolio: str
    business_date: str
    rows: tuple[CrifRow, ...]
    event_time: int
    simm_version: str = ""

    def __post_init__(self) -> None:
        for name in ("submission_id", "party", "counterparty", "portfolio"):
            _nonempty(name, getattr(self, name))
        if self.party == self.counterparty:
            raise ValidationError("counterparty", "must differ from party")
        _iso_date("business_date", self.business_date)
        if not self.rows:
            raise ValidationError("rows", "must hold at least one sensitivity")
        _time("event_time", self.event_time)


# --- results -------------------------------------------------------------------------------


@_register
class AccountPositions(Event, frozen=True, kw_only=True, tag="account_positions"):
    """The position keeper's output for one account after one micro-batch: the new absolute
    quantity of every instrument that changed (0 means flat), all at once so a reader never
    sees half a batch.

    Version: ``source_offset`` is the offset of the last input applied to this account on
    ``source_partition`` of the trades topic. Quantities are absolute, so applying this
    event twice, or an older version after a newer one (ignored by version), is harmless.
    """

    KEY_FIELD: ClassVar[str | None] = "account"
    account: AccountId
    instruments: tuple[InstrumentId, ...]
    quantities: tuple[int, ...]
    source_partition: int
    source_offset: int
    event_time: int

    def __post_init__(self) -> None:
        _nonempty("account", self.account)
        if len(self.instruments) != len(self.quantities):
            raise ValidationError(
                "quantities",
                f"has {len(self.quantities)} entries for {len(self.instruments)} instruments",
            )
        if self.source_offset < 0 or self.source_partition < 0:
            raise ValidationError("source_offset", "partition and offset must be >= 0")


@_register
class AccountMargin(Event, frozen=True, kw_only=True, tag="account_margin"):
    """The margin of one account, computed from its positions at ``position_version`` (the
    trades-topic offset on ``source_partition``) and market data at ``market_offset`` (the
    number of market events applied; -1 for none). ``margin`` is in the account's currency,
    >= 0. The triple (account, position_version, market_offset) is the upsert key.

    Its breakdown (absent in events written before it existed): ``es`` the expected
    shortfall before add-ons, ``apc`` the anti-procyclicality add-on, ``concentration`` the
    concentration add-on, ``var`` the value at risk at the same confidence, ``driver`` the
    label of the scenario with the worst loss; ``settings`` the fingerprint of the model and
    scenario set (:func:`marginflow.engine.settings.fingerprint`); ``book_load`` the id of
    the start-of-day load the calculator started from (:func:`marginflow.io.book.load_id`;
    empty for a book given in memory) and ``business_date`` the valuation date (ISO).

    What the micro-batch that computed it covered on the market topic (None in events
    written before it was recorded): it read offsets ``market_from`` .. ``market_offset``
    (an empty range, ``market_from = market_offset + 1``, when it read none), among them
    ``market_ticks`` price and vol ticks (refused ones excluded: they are dead letters),
    which it applied as ``market_moves`` moves of distinct underlyings, the latest state of
    each in offset order. The margin reflects the market at ``market_offset`` whole (every
    event up to it); the ticks between ``market_from`` and it were coalesced, never
    margined on their own. A replay may batch differently: these fields describe the run
    that published the result, not the result's version."""

    KEY_FIELD: ClassVar[str | None] = "account"
    account: AccountId
    member: MemberId
    margin: float
    model: str
    source_partition: int
    position_version: int
    market_offset: int
    event_time: int
    computed_time: int
    es: float | None = None
    apc: float | None = None
    concentration: float | None = None
    var: float | None = None
    driver: str = ""
    settings: str = ""
    book_load: str = ""
    business_date: str = ""
    market_from: int | None = None
    market_ticks: int | None = None
    market_moves: int | None = None

    def __post_init__(self) -> None:
        _nonempty("account", self.account)
        _nonnegative("margin", self.margin)


@_register
class MemberMarginPartial(Event, frozen=True, kw_only=True, tag="member_margin_partial"):
    """The aggregator's output: the sum of the latest account margins of ``member`` over the
    accounts on one partition of the results topic, as of ``source_offset`` there. A
    member's margin is the sum of its partials over partitions; the firm's, over members."""

    KEY_FIELD: ClassVar[str | None] = "member"
    member: MemberId
    margin: float
    accounts: int
    source_partition: int
    source_offset: int
    event_time: int

    def __post_init__(self) -> None:
        _nonempty("member", self.member)
        _finite("margin", self.margin)


SIMM_SIDES = ("collect", "post")


class SimmLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a SIMM result's breakdown, in the calculation currency.

    The columns name a node of the ISDA aggregation tree; the blank ones say its level:
    ``model`` alone is the model's total (``SIMM``, or ``Schedule`` for Schedule IM),
    ``+ product_class`` a product class after its multiplier (or an add-on such as
    ``AddOnNotionalFactor``), ``+ risk_class`` a risk class (``ProductClassMultiplier`` is
    the multiplier's add-on), ``+ margin_type`` one of Delta, Vega, Curvature, BaseCorr.
    Margin types add up to their risk class; risk classes combine into a product class with
    the ISDA correlations (not a plain sum); product classes and add-ons add up to SIMM."""

    side: str
    model: str
    product_class: str = ""
    risk_class: str = ""
    margin_type: str = ""
    margin: float

    def __post_init__(self) -> None:
        _one_of("side", self.side, SIMM_SIDES)
        _finite("margin", self.margin)


@_register
class SimmResult(Event, frozen=True, kw_only=True, tag="simm_result"):
    """The SIMM worker's output: the initial margin of one CRIF submission, both ways.

    ``collect_im`` is the IM ``party`` collects from ``counterparty`` (SIMM on the
    sensitivities as submitted), ``post_im`` the IM it posts (on the negated ones); each
    under the winning regulation of its side (``collect_regulation``, ``post_regulation``;
    ``""`` when no calculation applies and the IM is 0). Amounts are in ``currency``, >= 0,
    computed with SIMM ``simm_version`` at a ``mpor_days``-day margin period of risk.

    Version: ``source_offset`` on ``source_partition`` of the ``crif`` topic. The upsert key
    is (party, portfolio, business_date); all of a portfolio's submissions share a crif
    partition, so a greater offset is a later submission and replaces the result, and a
    replayed result (same offset) changes nothing."""

    KEY_FIELD: ClassVar[str | None] = "portfolio"
    submission_id: str
    party: str
    counterparty: str
    portfolio: str
    business_date: str
    simm_version: str
    mpor_days: int
    currency: str
    collect_im: float
    post_im: float
    collect_regulation: str
    post_regulation: str
    breakdown: tuple[SimmLine, ...]
    rows: int
    source_partition: int
    source_offset: int
    event_time: int
    computed_time: int

    def __post_init__(self) -> None:
        for name in ("submission_id", "party", "counterparty", "portfolio", "simm_version"):
            _nonempty(name, getattr(self, name))
        _iso_date("business_date", self.business_date)
        _one_of("mpor_days", str(self.mpor_days), ("10", "1"))
        _nonnegative("collect_im", self.collect_im)
        _nonnegative("post_im", self.post_im)
        if self.source_offset < 0 or self.source_partition < 0:
            raise ValidationError("source_offset", "partition and offset must be >= 0")


@_register
class DeadLetter(Event, frozen=True, kw_only=True, tag="dead_letter"):
    """An input that failed decoding or validation, kept with the reason and its bytes."""

    source_topic: str
    source_partition: int
    source_offset: int
    field: str
    reason: str
    raw: bytes
    event_time: int


INPUT_EVENTS: tuple[type[Event], ...] = (
    Trade,
    PositionSnapshot,
    PriceUpdate,
    VolUpdate,
    InstrumentRef,
    AccountRef,
    MemberRef,
    DateRoll,
    RiskParameterChange,
    CrifSubmission,
)
RESULT_EVENTS: tuple[type[Event], ...] = (
    AccountPositions,
    AccountMargin,
    MemberMarginPartial,
    SimmResult,
    DeadLetter,
)
