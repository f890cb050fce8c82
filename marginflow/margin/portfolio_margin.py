"""Customer portfolio margin of the TIMS family (FINRA 4210(g), Cboe/OCC rules).

Each *class* (all positions on one underlying: the shares, their options, their futures)
is revalued at equidistant points across a price range of its underlying, and its
requirement is the larger of the worst loss over the points and a per-contract minimum::

    class requirement = max(worst loss, Σ minimum per contract)
    margin            = Σ class requirements          (no offsets between classes)

Ranges (:class:`PortfolioMarginParameters`): ±15% for equities, ETFs, equity options and
narrow-based indices; ±10% for broad-based indices that are not high-cap; +6%/-8% for
high-cap broad-based indices such as SPX. Brokers may use wider house ranges
(:meth:`PortfolioMarginParameters.widened`).

**The valuation points.** The rules speak of "10 equidistant valuation points" across a
range "both up and down". Read with the Cboe/OCC TIMS practice, that is ten points on
*each* side: ``±k/10`` of the range for k = 1..10, twenty points in all (so 1.5% steps
for ±15%, 0.6% up and 0.8% down steps for +6%/-8%). We also value the unchanged point
(``include_zero``): with no time decay and unchanged vol its P&L is exactly zero, so
it only floors the worst loss at zero and never changes a requirement; it makes the grid
``2 × points_per_side + 1`` columns, ordered from the full down move to the full up move.

**The minimum.** ``$0.375 × multiplier`` per option or futures contract ($37.50 for 100),
for long options not above the contract's market value; shares carry no minimum.

**Offsets between classes.** None by default: classes are margined separately and
summed, the conservative reading for equity classes. Optionally classes can be put in
*product groups* with an offset rate: at each valuation point the group's classes' losses
count in full and their gains at the rate, ``Σ losses + rate × Σ gains`` (valuation point
k means the same fraction k/10 of each class's own range); the group requirement is the
larger of that worst loss and the group's summed minimums, and replaces the classes'
separate requirements (it is never larger).

Sign convention: P&L is **profit positive**, per one long contract (or share), in
currency: ``pnl = (V_point - V_now) × multiplier``; losses are reported positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from marginflow.core.batch import OptionBatch
from marginflow.core.book import UnderlyingKind
from marginflow.core.errors import ValidationError
from marginflow.margin.grid import (
    Contributors,
    FloatArray,
    IntArray,
    as_positions,
    as_table,
    group_positions,
    largest_per_account,
    offset_sum,
    per_instrument,
    price_options,
    read_bool,
    read_int,
    read_list,
    read_number,
    top_positions,
)

MODEL_NAME = "portfolio_margin"


@dataclass(frozen=True, slots=True)
class ValuationRange:
    """Largest up and down move of the underlying, as positive fractions (0.15 = 15%)."""

    up: float
    down: float

    def __post_init__(self) -> None:
        for name in ("up", "down"):
            x = getattr(self, name)
            if not (math.isfinite(x) and 0.0 < x < 1.0):
                raise ValidationError(f"range.{name}", f"must be in (0, 1), got {x!r}")


@dataclass(frozen=True, slots=True)
class ProductGroup:
    """Classes whose gains may offset each other's losses at ``offset_rate`` in [0, 1]."""

    name: str
    offset_rate: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.offset_rate) and 0.0 <= self.offset_rate <= 1.0):
            raise ValidationError(
                f"product_groups[{self.name}].offset_rate",
                f"must be in [0, 1], got {self.offset_rate!r}",
            )


@dataclass(frozen=True, slots=True)
class PortfolioMarginParameters:
    """Ranges, grid and minimum of the portfolio-margin model (defaults: the rule's)."""

    equity: ValuationRange = ValuationRange(0.15, 0.15)
    broad_index: ValuationRange = ValuationRange(0.10, 0.10)
    high_cap_broad_index: ValuationRange = ValuationRange(0.06, 0.08)
    points_per_side: int = 10
    include_zero: bool = True
    minimum_per_contract: float = 0.375
    product_groups: tuple[ProductGroup, ...] = ()

    def __post_init__(self) -> None:
        if self.points_per_side < 1:
            raise ValidationError("points_per_side", f"must be >= 1, got {self.points_per_side!r}")
        m = self.minimum_per_contract
        if not (math.isfinite(m) and m >= 0):
            raise ValidationError("minimum_per_contract", f"must be >= 0, got {m!r}")

    @property
    def n_points(self) -> int:
        return 2 * self.points_per_side + (1 if self.include_zero else 0)

    def grid_fractions(self) -> FloatArray:
        """Valuation points as signed fractions of the range, full down move first:
        ``-1, -0.9, ..., -0.1, [0,] 0.1, ..., 1`` for ten points a side."""
        k = np.arange(1, self.points_per_side + 1) / self.points_per_side
        middle = [0.0] if self.include_zero else []
        return np.concatenate([-k[::-1], middle, k]).astype(np.float64)

    def range_for(self, kind: UnderlyingKind | str, *, high_cap: bool = False) -> ValuationRange:
        """The range of an underlying: equities and ETFs take ``equity``; indices take
        ``high_cap_broad_index`` or ``broad_index``. (A narrow-based index takes the equity
        range: pass it ``kind="equity"``.)"""
        k = UnderlyingKind(kind)
        if k is UnderlyingKind.INDEX:
            return self.high_cap_broad_index if high_cap else self.broad_index
        return self.equity

    def widened(self, factor: float) -> PortfolioMarginParameters:
        """House parameters: every range multiplied by ``factor`` (>= 1)."""
        if not (math.isfinite(factor) and factor >= 1.0):
            raise ValidationError("factor", f"must be >= 1, got {factor!r}")

        def w(r: ValuationRange) -> ValuationRange:
            return ValuationRange(r.up * factor, r.down * factor)

        return replace(
            self,
            equity=w(self.equity),
            broad_index=w(self.broad_index),
            high_cap_broad_index=w(self.high_cap_broad_index),
        )

    def to_mapping(self) -> dict[str, Any]:
        def r(x: ValuationRange) -> dict[str, float]:
            return {"up": x.up, "down": x.down}

        return {
            "model": MODEL_NAME,
            "equity": r(self.equity),
            "broad_index": r(self.broad_index),
            "high_cap_broad_index": r(self.high_cap_broad_index),
            "points_per_side": self.points_per_side,
            "include_zero": self.include_zero,
            "minimum_per_contract": self.minimum_per_contract,
            "product_groups": [
                {"name": g.name, "offset_rate": g.offset_rate} for g in self.product_groups
            ],
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PortfolioMarginParameters:
        """Parameters from plain data (parsed TOML/JSON); missing keys take the defaults.
        A bad value is a :class:`ValidationError` naming its field."""
        base = cls()
        ranges = {}
        for name in ("equity", "broad_index", "high_cap_broad_index"):
            if data.get(name) is None:
                ranges[name] = getattr(base, name)
                continue
            table = as_table(data[name], name)
            ranges[name] = ValuationRange(
                read_number(table, "up", name), read_number(table, "down", name)
            )
        groups = []
        for k, item in enumerate(read_list(data, "product_groups", "", required=False)):
            group = as_table(item, f"product_groups[{k}]")
            groups.append(
                ProductGroup(
                    str(group.get("name", "")),
                    read_number(group, "offset_rate", f"product_groups[{k}]", 0.0),
                )
            )
        return cls(
            equity=ranges["equity"],
            broad_index=ranges["broad_index"],
            high_cap_broad_index=ranges["high_cap_broad_index"],
            points_per_side=read_int(data, "points_per_side", "", base.points_per_side),
            include_zero=read_bool(data, "include_zero", "", base.include_zero),
            minimum_per_contract=read_number(
                data, "minimum_per_contract", "", base.minimum_per_contract
            ),
            product_groups=tuple(groups),
        )


# ------------------------------------------------------------------- grid P&L builders


def point_moves(params: PortfolioMarginParameters, up: ArrayLike, down: ArrayLike) -> FloatArray:
    """Relative move of the underlying at each point, float64[N, G], from each
    instrument's range (``up``, ``down`` positive fractions)."""
    u = np.atleast_1d(np.asarray(up, dtype=np.float64))
    d = np.atleast_1d(np.asarray(down, dtype=np.float64))
    u, d = np.broadcast_arrays(u, d)
    if not (np.isfinite(u) & np.isfinite(d) & (u > 0) & (d > 0) & (d < 1)).all():
        raise ValidationError("range", "up and down must be finite, > 0, and down < 1")
    f = params.grid_fractions()[None, :]
    return np.where(f < 0, f * d[:, None], f * u[:, None]).astype(np.float64)


def linear_grid_pnl(
    *,
    params: PortfolioMarginParameters,
    spot: ArrayLike,
    multiplier: ArrayLike = 1.0,
    up: ArrayLike,
    down: ArrayLike,
) -> FloatArray:
    """Grid P&L of shares, ETFs and futures, float64[N, G]: ``spot × move × multiplier``."""
    s, m, u, d = (
        np.atleast_1d(a).astype(np.float64)
        for a in np.broadcast_arrays(
            np.asarray(spot), np.asarray(multiplier), np.asarray(up), np.asarray(down)
        )
    )
    if not (np.isfinite(s) & (s > 0) & np.isfinite(m) & (m > 0)).all():
        raise ValidationError("spot", "spot and multiplier must be finite and > 0")
    return np.asarray(point_moves(params, u, d) * (s * m)[:, None], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class OptionGrid:
    """Options revalued on the grid: ``pnl`` float64[N, G] (profit positive, per
    contract) and ``value`` float64[N] (current value per contract)."""

    pnl: FloatArray
    value: FloatArray


def option_grid_pnl(
    *,
    params: PortfolioMarginParameters,
    batch: OptionBatch,
    multiplier: ArrayLike,
    up: ArrayLike,
    down: ArrayLike,
    horizon_years: float = 0.0,
) -> OptionGrid:
    """Full revaluation of options at each valuation point: the underlying at
    ``spot × (1 + move)``, vol, rates and dividends unchanged, the option aged by
    ``horizon_years`` (0: TIMS values at the current time). European options by
    Black-Scholes-Merton, American ones by the pricing core's American pricer."""
    n = len(batch)
    moves = point_moves(params, np.broadcast_to(up, (n,)), np.broadcast_to(down, (n,)))
    m = np.ascontiguousarray(np.broadcast_to(np.asarray(multiplier, dtype=np.float64), (n,)))
    if not (np.isfinite(m) & (m > 0)).all():
        raise ValidationError("multiplier", "must be finite and > 0")
    if not (math.isfinite(horizon_years) and horizon_years >= 0):
        raise ValidationError("horizon_years", f"must be >= 0, got {horizon_years!r}")
    g = moves.shape[1]
    t_h = np.maximum(batch.expiry_years - horizon_years, 0.0)

    def rep(a: Any) -> Any:
        return np.concatenate([np.repeat(a, g), a])

    big = OptionBatch(
        is_call=rep(batch.is_call),
        is_american=rep(batch.is_american),
        spot=np.concatenate([(batch.spot[:, None] * (1.0 + moves)).ravel(), batch.spot]),
        strike=rep(batch.strike),
        expiry_years=np.concatenate([np.repeat(t_h, g), batch.expiry_years]),
        rate=rep(batch.rate),
        dividend_yield=rep(batch.dividend_yield),
        vol=rep(batch.vol),
    )
    prices = price_options(big)
    grid = prices[: n * g].reshape(n, g)
    now = prices[n * g :]
    return OptionGrid(pnl=(grid - now[:, None]) * m[:, None], value=now * m)


def contract_minimums(
    *,
    params: PortfolioMarginParameters,
    multiplier: ArrayLike,
    value: ArrayLike,
    is_option: ArrayLike,
    is_future: ArrayLike = False,
) -> tuple[FloatArray, FloatArray]:
    """Per-contract minimum for (long, short) positions, currency.

    Options and futures (FINRA 4210(g): each listed option, security future and related
    instrument): ``minimum_per_contract × multiplier``; for long options capped at the
    contract's market value ``value`` (currency per contract). Shares: 0.
    """
    m, v, o, f = np.broadcast_arrays(
        np.asarray(multiplier, dtype=np.float64),
        np.asarray(value, dtype=np.float64),
        np.asarray(is_option, dtype=np.bool_),
        np.asarray(is_future, dtype=np.bool_),
    )
    base = np.where(o | f, params.minimum_per_contract * m, 0.0)
    long_min = np.where(o, np.minimum(base, np.maximum(v, 0.0)), base)
    return np.atleast_1d(long_min).astype(np.float64), np.atleast_1d(base).astype(np.float64)


# ------------------------------------------------------------------ per-instrument input


@dataclass(frozen=True, slots=True, eq=False)
class PmInstruments:
    """N instruments as the portfolio-margin model sees them (per one long contract).

    ``pnl`` float[N, G] profit positive at the valuation points of the instrument's class;
    ``class_index`` int64[N] (the underlying); ``up``/``down`` float64[N] the class range
    (for the breakdown; equal within a class); ``minimum_long``/``minimum_short``
    float64[N] currency per contract (:func:`contract_minimums`).
    """

    pnl: Any
    class_index: IntArray
    up: FloatArray
    down: FloatArray
    minimum_long: FloatArray
    minimum_short: FloatArray

    @classmethod
    def of(
        cls,
        *,
        pnl: ArrayLike,
        class_index: ArrayLike,
        up: ArrayLike,
        down: ArrayLike,
        minimum_long: ArrayLike = 0.0,
        minimum_short: ArrayLike = 0.0,
    ) -> PmInstruments:
        """Build, broadcasting scalars to N = ``len(pnl)``, and validate."""
        p = np.asarray(pnl)
        if p.dtype.kind != "f":
            p = p.astype(np.float64)
        if p.ndim != 2:
            raise ValidationError("pnl", f"must be 2-D (instruments × points), got {p.ndim}-D")
        n = p.shape[0]
        out = cls(
            pnl=np.ascontiguousarray(p),
            class_index=per_instrument("class_index", class_index, np.int64, n),
            up=per_instrument("up", up, np.float64, n),
            down=per_instrument("down", down, np.float64, n),
            minimum_long=per_instrument("minimum_long", minimum_long, np.float64, n),
            minimum_short=per_instrument("minimum_short", minimum_short, np.float64, n),
        )
        if not np.isfinite(out.pnl).all():
            raise ValidationError("pnl", "must be finite")
        if (out.class_index < 0).any():
            raise ValidationError("class_index", "must be >= 0")
        for name in ("minimum_long", "minimum_short"):
            arr = getattr(out, name)
            if not (np.isfinite(arr) & (arr >= 0)).all():
                raise ValidationError(name, "must be finite and >= 0")
        if n:
            _check_ranges(out, int(out.class_index.max()) + 1)
        return out

    def __len__(self) -> int:
        return int(self.pnl.shape[0])


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True, eq=False)
class PmClassRisk:
    """Per (account, class) results, arrays of length P sorted by (account, class).

    ``point`` is the 0-based grid column of the worst loss and ``move`` its relative
    move of the underlying (e.g. -0.15); ``requirement = max(worst_loss, minimum)``.
    """

    account: IntArray
    class_index: IntArray
    pnl: FloatArray  # [P, G], profit positive
    worst_loss: FloatArray
    point: IntArray
    move: FloatArray
    minimum: FloatArray
    requirement: FloatArray


@dataclass(frozen=True, slots=True, eq=False)
class PmGroupRisk:
    """Per (account, product group) results where product groups are used:
    ``requirement`` replaces the ``standalone`` sum of its classes' requirements."""

    account: IntArray
    group: IntArray
    worst_loss: FloatArray
    minimum: FloatArray
    requirement: FloatArray
    standalone: FloatArray


@dataclass(frozen=True, slots=True, eq=False)
class PortfolioMarginResult:
    """Portfolio margin of A accounts with per-class components and contributors."""

    parameters: PortfolioMarginParameters
    margin: FloatArray
    by_class: PmClassRisk
    by_group: PmGroupRisk
    contributors: Contributors
    model: str = MODEL_NAME

    def driving_class(self) -> IntArray:
        """Per account, the (account, class) row with the largest requirement (-1: none)."""
        bc = self.by_class
        return largest_per_account(bc.account, bc.requirement, self.margin.shape[0])

    def driver(self) -> IntArray:
        """Per account, the 0-based valuation point (grid column) of the worst loss of its
        largest class (-1: none)."""
        rows = self.driving_class()
        return np.where(rows >= 0, self.by_class.point[np.maximum(rows, 0)], -1)

    def components(self) -> dict[str, FloatArray]:
        """Per-account sums (A-vectors, currency): ``worst_loss`` and ``minimum`` over
        classes, ``requirement`` before offsets, ``product_group_offset``."""
        bc = self.by_class
        a = self.margin.shape[0]

        def total(acc: IntArray, x: FloatArray) -> FloatArray:
            return np.bincount(acc, weights=x, minlength=a).astype(np.float64)

        bg = self.by_group
        return {
            "worst_loss": total(bc.account, bc.worst_loss),
            "minimum": total(bc.account, bc.minimum),
            "requirement": total(bc.account, bc.requirement),
            "product_group_offset": total(bg.account, bg.standalone - bg.requirement),
        }

    def breakdown(
        self,
        account: int,
        *,
        class_names: Sequence[str] | None = None,
        instrument_names: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """What drives ``account``'s margin, as plain data (JSON-ready); classes are
        listed largest requirement first."""
        bc = self.by_class
        lo, hi = np.searchsorted(bc.account, [account, account + 1])
        classes = []
        for p in sorted(range(lo, hi), key=lambda p: -bc.requirement[p]):
            c = int(bc.class_index[p])
            classes.append(
                {
                    "class": class_names[c] if class_names is not None else c,
                    "worst_loss": float(bc.worst_loss[p]),
                    "move": float(bc.move[p]),
                    "minimum": float(bc.minimum[p]),
                    "requirement": float(bc.requirement[p]),
                    "binding": "minimum" if bc.minimum[p] > bc.worst_loss[p] else "worst_loss",
                }
            )
        bg = self.by_group
        glo, ghi = np.searchsorted(bg.account, [account, account + 1])
        groups = [
            {
                "group": self.parameters.product_groups[int(bg.group[q])].name,
                "requirement": float(bg.requirement[q]),
                "offset": float(bg.standalone[q] - bg.requirement[q]),
            }
            for q in range(glo, ghi)
        ]
        return {
            "model": self.model,
            "margin": float(self.margin[account]),
            "driving": (
                {"class": classes[0]["class"], "move": classes[0]["move"]} if classes else None
            ),
            "classes": classes,
            "product_groups": groups,
            "largest_contributors": self.contributors.rows_of(account, instrument_names),
        }


# ------------------------------------------------------------------------------ the model


def portfolio_margin(
    *,
    positions: Any,
    instruments: PmInstruments,
    params: PortfolioMarginParameters,
    class_group: ArrayLike | None = None,
    top_n: int = 5,
) -> PortfolioMarginResult:
    """Portfolio margin of every account in ``positions``.

    Parameters
    ----------
    positions : scipy.sparse matrix (CSR preferred), or dense 2-D / 1-D array
        Accounts × instruments, signed contract (or share) counts. 1-D is one account.
    instruments : PmInstruments
        Grid P&L and attributes, columns aligned with ``positions``.
    params : PortfolioMarginParameters
    class_group : int[C] or None
        Product group of each class (index into ``params.product_groups``, -1 for none).
    top_n : int
        Contributors kept per account (largest loss at their class's worst point).
    """
    if instruments.pnl.shape[1] != params.n_points:
        raise ValidationError(
            "pnl", f"has {instruments.pnl.shape[1]} points, parameters have {params.n_points}"
        )
    pos = as_positions(positions, len(instruments))
    n_classes = int(instruments.class_index.max()) + 1 if len(instruments) else 0
    groups = group_positions(pos, instruments.class_index, max(n_classes, 1))
    pnl = groups.aggregate(instruments.pnl)  # [P, G]
    rows = np.arange(groups.n_pairs)
    point = np.argmin(pnl, axis=1).astype(np.int64)
    worst = np.maximum(-pnl[rows, point], 0.0)

    i = groups.position_instrument
    q = groups.position_quantity
    per_contract = np.where(q > 0, instruments.minimum_long[i], instruments.minimum_short[i])
    minimum = groups.sum_positions(np.abs(q) * per_contract)
    requirement = np.maximum(worst, minimum)

    first = np.zeros(groups.n_pairs, dtype=np.int64)
    first[groups.position_pair[::-1]] = i[::-1]  # any instrument of the pair: same range
    frac = params.grid_fractions()[point]
    move = np.where(frac < 0, frac * instruments.down[first], frac * instruments.up[first])

    by_group, group_of_pair = _product_groups(
        params,
        class_group,
        groups.pair_group,
        n_classes,
        groups.pair_account,
        pnl,
        minimum,
        requirement,
    )
    in_no_group = group_of_pair < 0
    margin = groups.sum_by_account(np.where(in_no_group, requirement, 0.0))
    margin += np.bincount(
        by_group.account, weights=by_group.requirement, minlength=groups.n_accounts
    )

    pos_loss = -q * instruments.pnl[i, point[groups.position_pair]]
    return PortfolioMarginResult(
        parameters=params,
        margin=margin.astype(np.float64),
        by_class=PmClassRisk(
            account=groups.pair_account,
            class_index=groups.pair_group,
            pnl=pnl,
            worst_loss=worst,
            point=point,
            move=move.astype(np.float64),
            minimum=minimum,
            requirement=requirement,
        ),
        by_group=by_group,
        contributors=top_positions(groups, np.asarray(pos_loss, dtype=np.float64), top_n),
    )


def _check_ranges(instruments: PmInstruments, n_classes: int) -> None:
    """Every instrument of a class must carry the class's range."""
    for name in ("up", "down"):
        arr = getattr(instruments, name)
        lo = np.full(n_classes, np.inf)
        hi = np.full(n_classes, -np.inf)
        np.minimum.at(lo, instruments.class_index, arr)
        np.maximum.at(hi, instruments.class_index, arr)
        bad = hi - lo > 1e-12
        if bad.any():
            c = int(np.argmax(bad))
            raise ValidationError(name, f"class {c} mixes ranges {lo[c]:g} and {hi[c]:g}")


def _product_groups(
    params: PortfolioMarginParameters,
    class_group: ArrayLike | None,
    pair_class: IntArray,
    n_classes: int,
    pair_account: IntArray,
    pnl: FloatArray,
    minimum: FloatArray,
    requirement: FloatArray,
) -> tuple[PmGroupRisk, IntArray]:
    """Group requirements of the (account, product group) sets, and each pair's set
    (-1 for classes in no group)."""
    empty_i = np.zeros(0, dtype=np.int64)
    empty_f = np.zeros(0)
    none = PmGroupRisk(empty_i, empty_i, empty_f, empty_f, empty_f, empty_f)
    if class_group is None:
        return none, np.full(pair_class.shape[0], -1, dtype=np.int64)
    cg = np.asarray(class_group, dtype=np.int64)
    n_groups = len(params.product_groups)
    if cg.ndim != 1 or cg.shape[0] < n_classes:
        raise ValidationError("class_group", f"needs one entry per class ({n_classes})")
    if ((cg < -1) | (cg >= n_groups)).any():
        raise ValidationError("class_group", f"entries must be -1 or in [0, {n_groups})")
    g = cg[pair_class]
    grouped = g >= 0
    if not grouped.any():
        return none, np.full(pair_class.shape[0], -1, dtype=np.int64)
    key = np.where(grouped, pair_account * n_groups + g, -1)
    uniq, member = np.unique(key[grouped], return_inverse=True)
    set_of_pair = np.full(pair_class.shape[0], -1, dtype=np.int64)
    set_of_pair[grouped] = member.ravel()
    group = (uniq % n_groups).astype(np.int64)
    rate = np.array([pg.offset_rate for pg in params.product_groups])[group]
    # offset_sum works on losses (positive): the P&L is negated going in and coming out.
    combined = offset_sum(-pnl, set_of_pair, uniq.shape[0], rate)
    worst = np.maximum(combined.max(axis=1), 0.0)
    n_sets = uniq.shape[0]
    m = np.bincount(set_of_pair[grouped], weights=minimum[grouped], minlength=n_sets).astype(
        np.float64
    )
    w = requirement[grouped]
    standalone = np.bincount(set_of_pair[grouped], weights=w, minlength=n_sets).astype(np.float64)
    return (
        PmGroupRisk(
            account=(uniq // n_groups).astype(np.int64),
            group=group,
            worst_loss=worst,
            minimum=m,
            requirement=np.maximum(worst, m),
            standalone=standalone,
        ),
        set_of_pair,
    )
