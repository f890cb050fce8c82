"""Parameters of the SPAN-style model: scenarios, combined commodities, spreads.

Everything exchange-specific lives here as immutable values validated on construction,
readable from plain data (a parsed TOML or JSON file) with :meth:`SpanParameters.from_mapping`
and written back with :meth:`SpanParameters.to_mapping`. The model itself is in
:mod:`marginflow.margin.span`, which documents what each parameter does.

Example (TOML)::

    nov_offset = "account"

    [[commodities]]
    name = "C"                      # corn
    price_scan_range = 0.35         # $/bushel (CME quotes $1,750 per 5,000-bushel contract)
    vol_scan_range = 0.04           # four vol points
    delta_unit = 5000               # one futures contract per delta unit
    scenarios = { extreme_multiple = 3.0, extreme_cover = 0.33 }

    [[commodities]]
    name = "S"                      # soybeans: $2,500 per contract
    price_scan_range = 0.50
    delta_unit = 5000
    scenarios = { extreme_multiple = 3.0, extreme_cover = 0.33 }

    [[inter_spreads]]
    name = "corn-soybeans"
    credit_rate = 0.55
    legs = [{ commodity = "C", ratio = 2, side = "A" }, { commodity = "S", ratio = 1, side = "B" }]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from marginflow.core.errors import ValidationError
from marginflow.margin.grid import (
    FloatArray,
    IntArray,
    as_table,
    read_bool,
    read_choice,
    read_int,
    read_list,
    read_number,
    read_numbers,
)

MODEL_NAME = "span"
NovOffset = Literal["account", "commodity"]
SomBasis = Literal["all", "max_calls_puts"]
InterMethod = Literal["delta", "scanning"]
Side = Literal["A", "B"]
# The allowed values, default first.
NOV_OFFSETS: tuple[NovOffset, ...] = ("account", "commodity")
SOM_BASES: tuple[SomBasis, ...] = ("all", "max_calls_puts")
INTER_METHODS: tuple[InterMethod, ...] = ("delta", "scanning")
SIDES: tuple[Side, ...] = ("A", "B")


@dataclass(frozen=True, slots=True)
class SpanScenarios:
    """The risk scenarios of a combined commodity (SPAN uses 16).

    ``price_fraction[s]`` moves the underlying by that fraction of the PSR (+ up);
    ``vol_multiple[s]`` moves the volatility by that multiple of the VSR (+ up);
    ``cover[s]`` in (0, 1] weights the scenario's loss (partial cover for extremes).
    """

    price_fraction: tuple[float, ...]
    vol_multiple: tuple[float, ...]
    cover: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.price_fraction)
        if n == 0:
            raise ValidationError("scenarios", "needs at least one scenario")
        for name in ("vol_multiple", "cover"):
            if len(getattr(self, name)) != n:
                raise ValidationError(f"scenarios.{name}", f"needs {n} values (one per scenario)")
        for name in ("price_fraction", "vol_multiple", "cover"):
            for s, x in enumerate(getattr(self, name)):
                if not math.isfinite(x):
                    raise ValidationError(f"scenarios.{name}", f"scenario {s + 1} is {x!r}")
        for s, c in enumerate(self.cover):
            if not 0.0 < c <= 1.0:
                raise ValidationError(
                    "scenarios.cover", f"scenario {s + 1} is {c!r}, not in (0, 1]"
                )

    @classmethod
    def standard(cls, *, extreme_multiple: float, extreme_cover: float) -> SpanScenarios:
        """SPAN's 16 scenarios: price 0, ±1/3, ±2/3, ±3/3 of the PSR, each with vol up
        then down (scenarios 1-14, full cover), then the two extreme moves
        ``±extreme_multiple × PSR`` at unchanged vol, covered at ``extreme_cover``."""
        price: list[float] = []
        for k in (0, 1, -1, 2, -2, 3, -3):
            price += [k / 3, k / 3]
        if not (math.isfinite(extreme_multiple) and extreme_multiple > 0):
            raise ValidationError("extreme_multiple", f"must be > 0, got {extreme_multiple!r}")
        return cls(
            price_fraction=(*price, extreme_multiple, -extreme_multiple),
            vol_multiple=(1.0, -1.0) * 7 + (0.0, 0.0),
            cover=(1.0,) * 14 + (extreme_cover, extreme_cover),
        )

    def __len__(self) -> int:
        return len(self.price_fraction)

    def paired(self) -> IntArray:
        """For each scenario, the one with the same price move and cover and the opposite
        vol move (itself if there is none): SPAN's pairing for the price-risk split."""
        n = len(self)
        out = np.arange(n, dtype=np.int64)
        for s in range(n):
            for t in range(n):
                if (
                    t != s
                    and self.price_fraction[t] == self.price_fraction[s]
                    and self.cover[t] == self.cover[s]
                    and self.vol_multiple[t] == -self.vol_multiple[s]
                    and self.vol_multiple[s] != 0.0
                ):
                    out[s] = t
                    break
        return out

    def time_scenarios(self) -> IntArray:
        """Scenarios with an unchanged price: their mean loss is SPAN's time risk."""
        return np.flatnonzero(np.asarray(self.price_fraction) == 0.0).astype(np.int64)

    def describe(self, s: int) -> str:
        """Human-readable scenario ``s`` (0-based), e.g. ``"price -3/3 PSR, vol +1 VSR"``."""
        p = _fraction_text(self.price_fraction[s])
        v = _fraction_text(self.vol_multiple[s])
        text = f"price {p} PSR, vol {v} VSR"
        if self.cover[s] != 1.0:
            text += f", cover {self.cover[s]:g}"
        return text

    def to_mapping(self) -> dict[str, Any]:
        return {
            "price_fraction": list(self.price_fraction),
            "vol_multiple": list(self.vol_multiple),
            "cover": list(self.cover),
        }


def _fraction_text(x: float) -> str:
    if x == 0:
        return "0"
    f = Fraction(x).limit_denominator(12)
    if abs(float(f) - x) > 1e-12:
        return f"{x:+g}"
    if f.denominator == 3:
        return f"{f.numerator:+d}/3"
    return f"{float(f):+g}"


@dataclass(frozen=True, slots=True)
class IntraSpread:
    """One tier pair of a commodity's intra-commodity spread priority list: one delta
    unit long in ``tier_a`` against one short in ``tier_b`` (or the reverse), charged
    ``charge`` (currency) per spread."""

    tier_a: int
    tier_b: int
    charge: float


@dataclass(frozen=True, slots=True)
class SpanCommodity:
    """Parameters of one combined commodity (all contracts on one underlying).

    Attributes
    ----------
    name : str
        Its code, e.g. ``"ES"``.
    price_scan_range : float
        PSR, in price points of the underlying (CME quotes it per contract: divide by the
        multiplier).
    vol_scan_range : float
        VSR: annualised vol points (0.04 = four points) or, when ``vol_scan_relative``, a
        fraction of the current vol.
    scenarios : SpanScenarios
    n_tiers : int
        Number of intra-commodity tiers; instruments carry a tier in ``[0, n_tiers)``.
    intra_spreads : tuple[IntraSpread, ...]
        Tier pairs in priority order.
    intra_default_charge : float
        Charge per spread for opposite deltas left across tiers after ``intra_spreads``.
    spot_charges : tuple[tuple[int, float], ...]
        ``(tier, charge per delta)`` for spot (delivery) month tiers.
    short_option_minimum, short_option_minimum_fraction : float
        Per short option contract: fixed currency amount plus fraction of notional.
    som_basis : "all" | "max_calls_puts"
    delta_unit : float
        Underlying units per delta unit (a futures contract's multiplier, say).
    """

    name: str
    price_scan_range: float
    vol_scan_range: float
    scenarios: SpanScenarios
    vol_scan_relative: bool = False
    n_tiers: int = 1
    intra_spreads: tuple[IntraSpread, ...] = ()
    intra_default_charge: float = 0.0
    spot_charges: tuple[tuple[int, float], ...] = ()
    short_option_minimum: float = 0.0
    short_option_minimum_fraction: float = 0.0
    som_basis: SomBasis = "all"
    delta_unit: float = 1.0

    def __post_init__(self) -> None:
        where = f"commodities[{self.name}]"
        if not self.name:
            raise ValidationError("commodities.name", "must not be empty")
        _nonneg(f"{where}.price_scan_range", self.price_scan_range)
        _nonneg(f"{where}.vol_scan_range", self.vol_scan_range)
        _nonneg(f"{where}.intra_default_charge", self.intra_default_charge)
        _nonneg(f"{where}.short_option_minimum", self.short_option_minimum)
        _nonneg(f"{where}.short_option_minimum_fraction", self.short_option_minimum_fraction)
        if not (math.isfinite(self.delta_unit) and self.delta_unit > 0):
            raise ValidationError(f"{where}.delta_unit", f"must be > 0, got {self.delta_unit!r}")
        if self.n_tiers < 1:
            raise ValidationError(f"{where}.n_tiers", f"must be >= 1, got {self.n_tiers!r}")
        if self.som_basis not in SOM_BASES:
            raise ValidationError(
                f"{where}.som_basis", f"must be 'all' or 'max_calls_puts', got {self.som_basis!r}"
            )
        for k, spread in enumerate(self.intra_spreads):
            for tier in (spread.tier_a, spread.tier_b):
                self._check_tier(f"{where}.intra_spreads[{k}]", tier)
            if spread.tier_a == spread.tier_b:
                raise ValidationError(f"{where}.intra_spreads[{k}]", "needs two different tiers")
            _nonneg(f"{where}.intra_spreads[{k}].charge", spread.charge)
        for k, (tier, charge) in enumerate(self.spot_charges):
            self._check_tier(f"{where}.spot_charges[{k}]", tier)
            _nonneg(f"{where}.spot_charges[{k}].charge", charge)

    def _check_tier(self, where: str, tier: int) -> None:
        if not 0 <= tier < self.n_tiers:
            raise ValidationError(f"{where}.tier", f"{tier!r} is not in [0, {self.n_tiers})")

    def to_mapping(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "price_scan_range": self.price_scan_range,
            "vol_scan_range": self.vol_scan_range,
            "vol_scan_relative": self.vol_scan_relative,
            "scenarios": self.scenarios.to_mapping(),
            "n_tiers": self.n_tiers,
            "intra_spreads": [
                {"tier_a": s.tier_a, "tier_b": s.tier_b, "charge": s.charge}
                for s in self.intra_spreads
            ],
            "intra_default_charge": self.intra_default_charge,
            "spot_charges": [{"tier": t, "charge": c} for t, c in self.spot_charges],
            "short_option_minimum": self.short_option_minimum,
            "short_option_minimum_fraction": self.short_option_minimum_fraction,
            "som_basis": self.som_basis,
            "delta_unit": self.delta_unit,
        }


@dataclass(frozen=True, slots=True)
class InterLeg:
    """One leg of an inter-commodity spread: ``ratio`` delta units of ``commodity`` per
    spread, on side A or B (A long against B short, or the reverse)."""

    commodity: str
    ratio: float = 1.0
    side: Side = "A"


@dataclass(frozen=True, slots=True)
class InterSpread:
    """An inter-commodity spread: legs, credit rate in [0, 1], method ("delta" or
    "scanning", see the module docstring)."""

    legs: tuple[InterLeg, ...]
    credit_rate: float
    method: InterMethod = "delta"
    name: str = ""

    def __post_init__(self) -> None:
        where = f"inter_spreads[{self.name or '?'}]"
        if len(self.legs) < 2:
            raise ValidationError(f"{where}.legs", "needs at least two legs")
        names = [leg.commodity for leg in self.legs]
        if len(set(names)) != len(names):
            raise ValidationError(f"{where}.legs", f"repeat a commodity: {names}")
        if not (math.isfinite(self.credit_rate) and 0.0 <= self.credit_rate <= 1.0):
            raise ValidationError(
                f"{where}.credit_rate", f"must be in [0, 1], got {self.credit_rate!r}"
            )
        if self.method not in INTER_METHODS:
            raise ValidationError(
                f"{where}.method", f"must be 'delta' or 'scanning', got {self.method!r}"
            )
        for leg in self.legs:
            if not (math.isfinite(leg.ratio) and leg.ratio > 0):
                raise ValidationError(
                    f"{where}.legs[{leg.commodity}].ratio", f"must be > 0, got {leg.ratio!r}"
                )
            if leg.side not in SIDES:
                raise ValidationError(
                    f"{where}.legs[{leg.commodity}].side", f"must be 'A' or 'B', got {leg.side!r}"
                )
        if self.method == "delta" and {leg.side for leg in self.legs} != {"A", "B"}:
            raise ValidationError(
                f"{where}.legs", "a delta spread needs legs on both sides A and B"
            )

    def to_mapping(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "credit_rate": self.credit_rate,
            "method": self.method,
            "legs": [
                {"commodity": leg.commodity, "ratio": leg.ratio, "side": leg.side}
                for leg in self.legs
            ],
        }


@dataclass(frozen=True, slots=True)
class SpanParameters:
    """Everything exchange-specific: the combined commodities (index = position in
    ``commodities``), the inter-commodity spreads in priority order, and where net option
    value may offset risk (``nov_offset``)."""

    commodities: tuple[SpanCommodity, ...]
    inter_spreads: tuple[InterSpread, ...] = ()
    nov_offset: NovOffset = "account"
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _cache: dict[str, SpanTables] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.commodities:
            raise ValidationError("commodities", "needs at least one combined commodity")
        for i, c in enumerate(self.commodities):
            if c.name in self._index:
                raise ValidationError("commodities", f"name {c.name!r} appears twice")
            self._index[c.name] = i
        n_scen = len(self.commodities[0].scenarios)
        for c in self.commodities:
            if len(c.scenarios) != n_scen:
                raise ValidationError(
                    f"commodities[{c.name}].scenarios",
                    f"has {len(c.scenarios)} scenarios; all commodities need {n_scen}",
                )
        if self.nov_offset not in NOV_OFFSETS:
            raise ValidationError(
                "nov_offset", f"must be 'account' or 'commodity', got {self.nov_offset!r}"
            )
        in_scanning: set[str] = set()
        in_any: dict[str, int] = {}
        for spread in self.inter_spreads:
            for leg in spread.legs:
                if leg.commodity not in self._index:
                    raise ValidationError(
                        f"inter_spreads[{spread.name or '?'}].legs",
                        f"unknown commodity {leg.commodity!r}",
                    )
                in_any[leg.commodity] = in_any.get(leg.commodity, 0) + 1
                if spread.method == "scanning":
                    in_scanning.add(leg.commodity)
        for name in in_scanning:
            if in_any[name] > 1:
                raise ValidationError(
                    "inter_spreads",
                    f"commodity {name!r} is a leg of a scanning spread and of another spread",
                )

    @property
    def n_scenarios(self) -> int:
        return len(self.commodities[0].scenarios)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.commodities)

    def tables(self) -> SpanTables:
        """The parameters as arrays indexed by commodity, built once and cached: the
        model reads these, so a call for one account costs no Python loop over
        commodities."""
        if "tables" not in self._cache:
            self._cache["tables"] = SpanTables.of(self)
        return self._cache["tables"]

    def index(self, name: str) -> int:
        """Index of the commodity called ``name``."""
        try:
            return self._index[name]
        except KeyError:
            raise ValidationError("commodity", f"unknown combined commodity {name!r}") from None

    def to_mapping(self) -> dict[str, Any]:
        """Plain dicts and lists (JSON/TOML-ready); :meth:`from_mapping` reads it back."""
        return {
            "model": MODEL_NAME,
            "nov_offset": self.nov_offset,
            "commodities": [c.to_mapping() for c in self.commodities],
            "inter_spreads": [s.to_mapping() for s in self.inter_spreads],
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SpanParameters:
        """Parameters from plain data (a parsed TOML or JSON file).

        Each commodity's ``scenarios`` is either explicit (``price_fraction``,
        ``vol_multiple``, ``cover`` lists) or ``{extreme_multiple, extreme_cover}`` for
        SPAN's standard 16. Missing optional keys take the dataclass defaults.
        """
        commodities = tuple(
            _commodity_from(c, i)
            for i, c in enumerate(read_list(data, "commodities", "", required=True))
        )
        spreads = tuple(
            _spread_from(s, i)
            for i, s in enumerate(read_list(data, "inter_spreads", "", required=False))
        )
        return cls(
            commodities=commodities,
            inter_spreads=spreads,
            nov_offset=read_choice(data, "nov_offset", "", NOV_OFFSETS),
        )


@dataclass(frozen=True, slots=True, eq=False)
class SpanTables:
    """:class:`SpanParameters` as arrays: per commodity (C), per scenario (S), per tier
    (T) and per intra-spread priority slot (J); see :meth:`SpanParameters.tables`."""

    n_tiers: IntArray  # [C]
    psr: FloatArray  # [C]
    vsr: FloatArray  # [C]
    vol_relative: NDArray[np.bool_]  # [C]
    delta_unit: FloatArray  # [C]
    price_fraction: FloatArray  # [C, S]
    vol_multiple: FloatArray  # [C, S]
    cover: FloatArray  # [C, S]
    paired: IntArray  # [C, S]
    time_weight: FloatArray  # [C, S], mean over the unchanged-price scenarios
    intra_a: IntArray  # [C, J]
    intra_b: IntArray  # [C, J]
    intra_charge: FloatArray  # [C, J]
    intra_used: NDArray[np.bool_]  # [C, J]: slot j defined for commodity c
    intra_default: FloatArray  # [C]
    spot_charge: FloatArray  # [C, T] per delta
    som_fixed: FloatArray  # [C]
    som_fraction: FloatArray  # [C]
    som_max_calls_puts: NDArray[np.bool_]  # [C]

    @classmethod
    def of(cls, params: SpanParameters) -> SpanTables:
        """Build the arrays (slots and tiers a commodity does not use are zero / unused)."""
        cs = params.commodities
        n_cc = len(cs)
        t_max = max(c.n_tiers for c in cs)
        j_max = max(len(c.intra_spreads) for c in cs)
        # Scenario sets are usually shared by many commodities: derive each once.
        derived: dict[SpanScenarios, tuple[IntArray, FloatArray]] = {}
        for c in cs:
            if c.scenarios not in derived:
                w = np.zeros(len(c.scenarios))
                idx = c.scenarios.time_scenarios()
                if idx.size:
                    w[idx] = 1.0 / idx.size
                derived[c.scenarios] = (c.scenarios.paired(), w)
        intra_a = np.zeros((n_cc, j_max), dtype=np.int64)
        intra_b = np.zeros((n_cc, j_max), dtype=np.int64)
        intra_charge = np.zeros((n_cc, j_max))
        intra_used = np.zeros((n_cc, j_max), dtype=np.bool_)
        spot = np.zeros((n_cc, t_max))
        for k, c in enumerate(cs):
            for j, sp in enumerate(c.intra_spreads):
                intra_a[k, j], intra_b[k, j], intra_charge[k, j] = sp.tier_a, sp.tier_b, sp.charge
                intra_used[k, j] = True
            for tier, rate in c.spot_charges:
                spot[k, tier] += rate
        return cls(
            n_tiers=np.array([c.n_tiers for c in cs], dtype=np.int64),
            psr=np.array([c.price_scan_range for c in cs]),
            vsr=np.array([c.vol_scan_range for c in cs]),
            vol_relative=np.array([c.vol_scan_relative for c in cs], dtype=np.bool_),
            delta_unit=np.array([c.delta_unit for c in cs]),
            price_fraction=np.array([c.scenarios.price_fraction for c in cs]),
            vol_multiple=np.array([c.scenarios.vol_multiple for c in cs]),
            cover=np.array([c.scenarios.cover for c in cs]),
            paired=np.stack([derived[c.scenarios][0] for c in cs]),
            time_weight=np.stack([derived[c.scenarios][1] for c in cs]),
            intra_a=intra_a,
            intra_b=intra_b,
            intra_charge=intra_charge,
            intra_used=intra_used,
            intra_default=np.array([c.intra_default_charge for c in cs]),
            spot_charge=spot,
            som_fixed=np.array([c.short_option_minimum for c in cs]),
            som_fraction=np.array([c.short_option_minimum_fraction for c in cs]),
            som_max_calls_puts=np.array([c.som_basis == "max_calls_puts" for c in cs]),
        )


def _nonneg(where: str, x: float) -> None:
    if not (math.isfinite(x) and x >= 0):
        raise ValidationError(where, f"must be a finite number >= 0, got {x!r}")


def _commodity_from(c: Any, i: int) -> SpanCommodity:
    c = as_table(c, f"commodities[{i}]")
    where = f"commodities[{c.get('name', i)}]"
    scen = c.get("scenarios")
    if not isinstance(scen, Mapping):
        raise ValidationError(f"{where}.scenarios", "is missing or not a table")
    if "price_fraction" in scen:
        scenarios = SpanScenarios(
            price_fraction=read_numbers(scen, "price_fraction", f"{where}.scenarios"),
            vol_multiple=read_numbers(scen, "vol_multiple", f"{where}.scenarios"),
            cover=read_numbers(scen, "cover", f"{where}.scenarios"),
        )
    else:
        scenarios = SpanScenarios.standard(
            extreme_multiple=read_number(scen, "extreme_multiple", f"{where}.scenarios"),
            extreme_cover=read_number(scen, "extreme_cover", f"{where}.scenarios"),
        )
    intra = []
    for k, item in enumerate(read_list(c, "intra_spreads", where, required=False)):
        at = f"{where}.intra_spreads[{k}]"
        spread = as_table(item, at)
        intra.append(
            IntraSpread(
                tier_a=read_int(spread, "tier_a", at),
                tier_b=read_int(spread, "tier_b", at),
                charge=read_number(spread, "charge", at),
            )
        )
    spot = []
    for k, item in enumerate(read_list(c, "spot_charges", where, required=False)):
        at = f"{where}.spot_charges[{k}]"
        charge = as_table(item, at)
        spot.append((read_int(charge, "tier", at), read_number(charge, "charge", at)))
    return SpanCommodity(
        name=str(c.get("name", "")),
        price_scan_range=read_number(c, "price_scan_range", where),
        vol_scan_range=read_number(c, "vol_scan_range", where, 0.0),
        scenarios=scenarios,
        vol_scan_relative=read_bool(c, "vol_scan_relative", where, False),
        n_tiers=read_int(c, "n_tiers", where, 1),
        intra_spreads=tuple(intra),
        intra_default_charge=read_number(c, "intra_default_charge", where, 0.0),
        spot_charges=tuple(spot),
        short_option_minimum=read_number(c, "short_option_minimum", where, 0.0),
        short_option_minimum_fraction=read_number(c, "short_option_minimum_fraction", where, 0.0),
        som_basis=read_choice(c, "som_basis", where, SOM_BASES),
        delta_unit=read_number(c, "delta_unit", where, 1.0),
    )


def _spread_from(s: Any, i: int) -> InterSpread:
    s = as_table(s, f"inter_spreads[{i}]")
    where = f"inter_spreads[{s.get('name', i)}]"
    legs = []
    for k, item in enumerate(read_list(s, "legs", where, required=True)):
        at = f"{where}.legs[{k}]"
        leg = as_table(item, at)
        legs.append(
            InterLeg(
                commodity=str(leg.get("commodity", "")),
                ratio=read_number(leg, "ratio", at, 1.0),
                side=read_choice(leg, "side", at, SIDES),
            )
        )
    return InterSpread(
        legs=tuple(legs),
        credit_rate=read_number(s, "credit_rate", where),
        method=read_choice(s, "method", where, INTER_METHODS),
        name=str(s.get("name", "")),
    )
