"""Full revaluation of every instrument under every scenario: the instruments × scenarios
P&L matrix (float32, per position unit: one contract or one share).

``pnl[i, s] = (V_i(scenario s) - V_i(today)) · multiplier_i``, profit positive.

Scenario market (underlying u, scenario s)::

    S' = S · (1 + spot_shock[u, s])
    vol'(K) = (1 + vol_shock[u, s]) · max(vol_floor, atm_vol + skew · ln(K / S'))

i.e. sticky moneyness: the smile is a fixed function of ln(K/S) whose level scales with the
vol shock; rates, dividend yields and times to expiry are held (an instantaneous shock).

Pricing. Stocks are linear. European options are priced exactly for every scenario
(Black-Scholes-Merton, the closed form of :func:`marginflow.pricing.black_scholes.bsm_scalar`,
with the pricing core's vectorisable normal CDF, 3e-13 relative, so the scenario loop runs
in SIMD registers). American options, ``method="grid"`` (the default): ``V = V_European +
EEP``, the European part exact per scenario, the early-exercise premium EEP from a grid
priced by the pricing core's American pricer, one grid per (underlying, expiry, call/put)
bucket:

* axes: log-moneyness ``m = ln(S'/K)`` and the log of the option's own scenario vol
  ``ln σ``, ``σ = vm · max(vol_floor, atm - skew · m)`` (the kernel computes it exactly, so
  the smile and its floor stay outside the grid). Every option is priced at its own vol,
  flat, so a grid node is the flat-vol premium F(m, σ) of the bucket's (call/put, expiry,
  rate, dividend), and one grid serves every strike of the bucket; prices are homogeneous of
  degree one in (S, K), so the grid is per unit strike;
* **one boundary solve per vol row**: every node of a row shares its exercise boundary (the
  boundary depends on the vol, not on the spot), so the pricing core solves it once
  (:func:`marginflow.pricing.american.premium_rows`, ALO as :func:`american_price` solves
  it) and each node costs only the premium integral (~20× cheaper than a full American
  price: :func:`marginflow.pricing.american.premium_block`, run where the nodes lie in the
  grid by :func:`_price_nodes`; long-dated and closed-form rows through
  :func:`marginflow.pricing.american.early_exercise_premium`, to the same bits; the
  integral's normal CDFs in float32 either way, within 3e-7 (r + x q) T per unit strike,
  x the put-space moneyness); a row is
  shared by every bucket with the same (call/put, expiry, rate, dividend);
* nodes on a **fixed lattice**: ``m = c · sinh(i · h)`` with ``c`` three times the total vol
  at the ATM vol rounded to the nearest power of two, √T (at least 0.005), and ``h`` =
  ``eep_moneyness_step`` (steps of about h · c near the strike, growing with |m| in the far
  tails), and ``ln σ = j · eep_log_vol_step``; the scenarios only decide which nodes are
  read. A scenario's premium is then a function of its own shocks alone: adding scenarios to
  a set (the APC floor's 10-year windows, say) adds nodes but moves none, so the P&L of the
  scenarios already there does not change by a bit;
* nodes **priced lazily**: only those the cubics of the bucket's (scenario, strike) points
  read (:func:`_needed_nodes`: per bin of the scenarios' ln vm, the box of (m, ln σ) its
  points fill, cut per vol cell by inverting the smile), padded against rounding; the others
  stay NaN and the kernel refuses, with an error, any read of one (a bug guard, never a
  silent number);
* the **exercise boundary** of every vol row, ``m*``: a scenario beyond it (m* cubic across
  rows) is exercised and priced at its intrinsic value, exactly. The American price is only
  C1 at the boundary (the premium's curvature jumps), which capped any interpolation across
  it at the step squared (the old bilinear grid's worst errors sat there). Nodes beyond a
  row's boundary are not priced; they carry the continuation region's premium extended
  smoothly across it (the cubic through the boundary's value and slope, known by smooth
  pasting, and the first two nodes inside; :func:`_extend_rows`), so continuation points
  near the boundary interpolate one smooth function;
* interpolation: the cubic through four nodes in each axis (Lagrange, exact for cubics: the
  error falls as the step to the fourth power); today's price uses the same grid, so a zero
  shock is a zero P&L; the price is floored at the intrinsic value;
* calls without dividends (early exercise never optimal) carry no premium and no grid;
* **grids survive price and vol moves** (:class:`GridCache`): a grid depends on its bucket's
  call/put, expiry, rate, dividend yield and lattice scale and on the steps, not on the spot
  (nodes are in log-moneyness), the smile (the vol axis is the option's own vol) nor the
  scenarios. Grids are kept per bucket keyed by exactly those inputs, by value: a move
  reuses a bucket's grid as it is, or prices the nodes (and vol rows) it lacks, a few more
  than asked around them so the next small move finds them built. A vol move within the
  ATM vol's octave keeps the lattice; one to another octave, and rate, dividend and expiry
  changes (a roll), use another grid. The old grid stays in the cache (a market returning to
  the same inputs finds it) until the least recently used are dropped beyond a node budget.
  The incremental engine owns one cache for its full and incremental revaluations; a call
  without one builds its grids for itself.

Measured against QuantLib's ``QdFpAmericanEngine`` (high-precision scheme) at every
scenario's market (``benchmarks/revaluation_accuracy.py``, ``tests/engine/
test_american_accuracy.py``): on the quick margin benchmark's book under its Student-t Monte
Carlo set, every scenario P&L within 1e-3 per unit of underlying at spot 100 (figures in
``benchmarks/README.md``), the pricing core's own bound. The bilinear grid this replaced
(h = 0.06 in asinh moneyness, 0.07 in ln vm) was off by up to 2.5e-2 there. The vol floor
of the smile no longer puts a kink inside the grid (the floor is applied to σ before the
lookup), which was the previous design's known limit.

``method="exact"`` prices every American option under every scenario with the pricing core
(one ALO price per option and scenario): the reference, fine for small books, what-if and
few scenarios; the margin setting ``revaluation`` (``marginflow margin --revaluation``, the
stream's margin settings) chooses it.

Determinism: a row depends only on its instrument, its underlying's market data and shocks,
and each scenario's P&L on that scenario's own shocks (not on the other scenarios of the
set), so revaluing one underlying's rows gives bit-for-bit what a full revaluation gives. The
incremental engine relies on this. The cache keeps it: every node's value is a function of
its bucket's inputs and its lattice point alone (the pricer prices each option on its own
inputs, whatever batch it is in), so a grid reused or extended over any sequence of moves
holds the bits a build in one go gives, and the kernel reads the exact rectangle a build
without cache would have made (``tests/engine/test_grid_cache.py``, Hypothesis). One
exception is handled, not assumed away: a bucket whose rectangle has a vol row without a
single boundary prices all its nodes (no boundary anywhere), so a cached grid is reused or
extended only where its rectangle, the extended one and the requested one agree on that.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, prange, types
from numba.extending import intrinsic
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray, OptionBatch
from marginflow.core.book import InstrumentKind, Instruments, Market
from marginflow.core.errors import ValidationError
from marginflow.core.limits import MONEYNESS_MAX
from marginflow.pricing.american import (
    PREMIUM_BLOCK,
    american_price,
    early_exercise_premium,
    premium_block,
    premium_rows,
)
from marginflow.pricing.black_scholes import european_price
from marginflow.pricing.greeks import greeks
from marginflow.pricing.single import log32, ncdf32

Float32Array = NDArray[np.float32]
IndexArray = NDArray[np.intp]


def price_american(batch: OptionBatch) -> FloatArray:
    """American prices from the pricing core (ALO), per unit of underlying: the one place
    the revaluation calls an American pricer."""
    return american_price(batch)


RevaluationMethod = Literal["grid", "exact"]
METHODS: tuple[RevaluationMethod, ...] = ("grid", "exact")


def revaluation_method(name: str) -> RevaluationMethod:
    """``name`` as a revaluation method, or a ValidationError naming the choices."""
    for method in METHODS:
        if name == method:
            return method
    raise ValidationError("method", f"must be 'grid' or 'exact', got {name!r:.80}")


@dataclass(frozen=True, slots=True)
class RevaluationSettings:
    method: RevaluationMethod = "grid"
    eep_moneyness_step: float = 0.025
    """Premium grid step h in asinh(ln(S/K) / 3σ√T): about 3h · σ√T near the strike."""
    eep_log_vol_step: float = 0.1
    """Premium grid step in the log of the option's own scenario vol (ln σ)."""
    vol_floor: float = 0.01

    def __post_init__(self) -> None:
        revaluation_method(self.method)
        for name, least in (("eep_moneyness_step", 0.005), ("eep_log_vol_step", 0.01)):
            # The least steps keep the kernel's float32 lattice coordinates within a
            # quarter of _COORD_PAD of their float64 values (the error grows as 1/step).
            step = getattr(self, name)
            if not (math.isfinite(step) and least <= step <= 1.0):
                raise ValidationError(name, f"must be in [{least}, 1], got {step!r}")
        if not self.vol_floor > 0:
            raise ValidationError("vol_floor", f"must be > 0, got {self.vol_floor!r}")


@dataclass(frozen=True, slots=True)
class EepGrids:
    """Early-exercise premium per unit strike on B bucket grids, on fixed lattices.

    Bucket ``b`` has ``m_count[b]`` moneyness nodes ``m = scale[b] · sinh((m_first[b] + i) ·
    m_step)`` and ``v_count[b]`` vol rows ``ln σ = (v_first[b] + j) · lv_step``; its values
    are ``values[offset[b] + i · v_count[b] + j]`` (ragged, flattened; NaN where never
    priced). Row ``j``'s exercise boundary is at log-moneyness ``boundary[row_offset[b] +
    j]``; ``side[b]`` is +1 for a put (exercised at or below it), -1 for a call (at or
    above), 0 for a bucket without a single boundary.
    """

    scale: FloatArray
    m_step: float
    m_first: NDArray[np.int64]
    m_count: NDArray[np.int64]
    offset: NDArray[np.int64]
    lv_step: float
    v_first: NDArray[np.int64]
    v_count: NDArray[np.int64]
    values: FloatArray
    side: FloatArray
    row_offset: NDArray[np.int64]
    boundary: FloatArray

    @classmethod
    def empty(cls, n_underlyings: int = 0) -> EepGrids:
        z, zi = np.ones(0), np.zeros(0, dtype=np.int64)
        vi = np.zeros(max(n_underlyings, 1), dtype=np.int64)
        return cls(z, 1.0, zi, zi, zi, 1.0, vi, vi + 4, np.zeros(0), z, zi, np.zeros(0))


def revalue(
    *,
    instruments: Instruments,
    market: Market,
    spot_shock: Float32Array,
    vol_shock: Float32Array,
    settings: RevaluationSettings = RevaluationSettings(),
    rows: IndexArray | None = None,
    out: Float32Array | None = None,
    timings: dict[str, float] | None = None,
    cache: GridCache | None = None,
) -> Float32Array:
    """P&L per unit position of instruments ``rows`` (default all) under every scenario.

    ``spot_shock``/``vol_shock`` are U × S with rows in the market's underlying order.
    Returns float32 ``len(rows) × S`` (written into ``out`` when given). ``timings``, if
    given, receives the seconds spent on the premium grids and on the revaluation kernel
    (with the exact method, the exact American prices count as the kernel's).
    ``cache`` keeps the premium grids for the next call (the incremental engine owns one);
    without it they are built for this call alone. The result is the same to the bit
    either way.
    """
    t0 = time.perf_counter()
    n_u, n_s = spot_shock.shape
    if vol_shock.shape != (n_u, n_s) or market.spot.shape != (n_u,):
        raise ValidationError("scenarios", "shock arrays must be U × S in the market's order")
    rows = np.arange(len(instruments), dtype=np.intp) if rows is None else np.asarray(rows, np.intp)
    if out is None:
        out = np.empty((rows.size, n_s), dtype=np.float32)
    order = np.argsort(instruments.underlying[rows], kind="stable")
    sorted_rows = rows[order]
    u_of = instruments.underlying[sorted_rows]
    group_starts = np.flatnonzero(np.r_[True, u_of[1:] != u_of[:-1]]) if rows.size else np.zeros(0)
    group_starts = np.append(group_starts, rows.size).astype(np.intp)

    use_grid = settings.method == "grid"
    cache = GridCache(max_nodes=0, margin_nodes=0) if cache is None else cache  # this call's
    bucket, grids = (
        _eep_buckets(instruments, market, spot_shock, vol_shock, sorted_rows, settings, cache)
        if use_grid
        else (np.full(len(instruments), -1, np.int32), EepGrids.empty())
    )
    # exact American prices before the kernel writes ``out``: whatever refuses, refuses
    # before a row is written (an engine revalues into its own matrix)
    t_grids = time.perf_counter()
    exact = (
        None
        if use_grid
        else _exact_american(instruments, market, spot_shock, vol_shock, rows, settings)
    )
    holes = np.zeros(max(group_starts.size - 1, 1), dtype=np.int8)
    _revalue_kernel(
        sorted_rows,
        order.astype(np.intp),
        group_starts,
        instruments.underlying,
        instruments.kind,
        instruments.strike,
        instruments.expiry_years,
        instruments.multiplier,
        bucket,
        market.spot,
        market.atm_vol,
        market.skew,
        market.dividend_yield,
        market.rate,
        spot_shock,
        vol_shock,
        settings.vol_floor,
        grids.scale,
        grids.m_step,
        grids.m_first,
        grids.m_count,
        grids.offset,
        grids.lv_step,
        grids.v_first,
        grids.v_count,
        grids.values,
        grids.side,
        grids.row_offset,
        grids.boundary,
        out,
        holes,
    )
    if holes.any():  # a bug, never a silent wrong number
        raise RuntimeError("revaluation read a premium-grid node that was never priced")
    if exact is not None:
        out[exact[0]] = exact[1]
    if timings is not None:
        timings["eep_grid"] = timings.get("eep_grid", 0.0) + t_grids - t0
        timings["kernel"] = timings.get("kernel", 0.0) + time.perf_counter() - t_grids
    return out


def option_vols(
    instruments: Instruments, market: Market, rows: IndexArray, vol_floor: float
) -> FloatArray:
    """Today's implied vol of each instrument in ``rows`` from its underlying's smile."""
    u = instruments.underlying[rows]
    k = np.where(instruments.strike[rows] > 0, instruments.strike[rows], market.spot[u])
    return np.maximum(vol_floor, market.atm_vol[u] + market.skew[u] * np.log(k / market.spot[u]))


def option_batch(
    instruments: Instruments, market: Market, rows: IndexArray, vol_floor: float
) -> OptionBatch:
    """Today's pricing inputs of the options in ``rows`` as a batch."""
    u = instruments.underlying[rows]
    return OptionBatch.of(
        is_call=instruments.kind[rows] == InstrumentKind.CALL,
        is_american=instruments.is_american[rows],
        spot=market.spot[u],
        strike=instruments.strike[rows],
        expiry_years=instruments.expiry_years[rows],
        rate=market.rate[u],
        dividend_yield=market.dividend_yield[u],
        vol=option_vols(instruments, market, rows, vol_floor),
    )


def deltas(
    instruments: Instruments,
    market: Market,
    vol_floor: float = 0.01,
    rows: IndexArray | None = None,
) -> FloatArray:
    """dV/dS per unit position (multiplier included) of ``rows`` (default all): the
    Black-Scholes delta for options (early exercise ignored: used only to size positions
    against traded volume), 1 per share for stocks."""
    rows = np.arange(len(instruments), dtype=np.intp) if rows is None else np.asarray(rows, np.intp)
    out = instruments.multiplier[rows].copy()
    opt = np.flatnonzero(instruments.is_option[rows])
    if opt.size:
        batch = option_batch(instruments, market, rows[opt], vol_floor)
        batch = batch.replace(is_american=np.zeros(len(batch), dtype=np.bool_))
        out[opt] *= greeks(batch).delta
    return out


def _eep_buckets(
    instruments: Instruments,
    market: Market,
    spot_shock: Float32Array,
    vol_shock: Float32Array,
    rows: IndexArray,
    settings: RevaluationSettings,
    cache: GridCache,
) -> tuple[NDArray[np.int32], EepGrids]:
    """Assign American options of ``rows`` to (underlying, expiry, call/put) buckets and
    make sure each bucket's premium grid holds every node its points need (from ``cache``,
    the missing nodes priced with the pricing core).

    A bucket's needs cover every strike the whole instrument table has in it, so its grid
    (and every row priced on it) does not depend on which rows are being revalued."""
    bucket = np.full(len(instruments), -1, np.int32)
    u_all = instruments.underlying
    # A call without dividends (and a non-negative rate) is never exercised early: its
    # American price is the European one, so it needs no premium grid.
    never = (
        (instruments.kind == InstrumentKind.CALL)
        & (market.dividend_yield[u_all] <= 0)
        & (market.rate[u_all] >= 0)
    )
    gridded = instruments.is_american & instruments.is_option
    gridded &= (instruments.expiry_years > 0) & ~never
    mine = rows[gridded[rows]]
    if mine.size == 0:
        return bucket, EepGrids.empty()
    cand = np.flatnonzero(gridded & np.isin(u_all, np.unique(u_all[mine])))
    ids = np.column_stack([u_all[cand], instruments.expiry_years[cand], instruments.kind[cand]])
    uniq, inverse = np.unique(ids, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    ln_k = np.log(instruments.strike[cand])
    k_lo = np.full(uniq.shape[0], np.inf)
    k_hi = np.full(uniq.shape[0], -np.inf)
    np.minimum.at(k_lo, inverse, ln_k)
    np.maximum.at(k_hi, inverse, ln_k)
    mine_bucket = inverse[np.searchsorted(cand, mine)]
    used, compact = np.unique(mine_bucket, return_inverse=True)
    bucket[mine] = compact.ravel().astype(np.int32)
    uniq, k_lo, k_hi = uniq[used], k_lo[used], k_hi[used]
    b_u = uniq[:, 0].astype(np.intp)
    b_t, b_call = uniq[:, 1], uniq[:, 2] == InstrumentKind.CALL
    h, lv = settings.eep_moneyness_step, settings.eep_log_vol_step
    scale = _lattice_scale(market.atm_vol[b_u], b_t)
    # Where each bucket's points fall on its lattice: per vol row, the moneyness nodes the
    # cubics of those points read.
    unders, u_pos = np.unique(b_u, return_inverse=True)
    bins = cache.scenario_bins(spot_shock, vol_shock, unders.astype(np.int64), lv)
    args = (
        u_pos.astype(np.int64), np.log(market.spot[b_u]), k_lo, k_hi, market.atm_vol[b_u],
        market.skew[b_u], scale, h, lv, settings.vol_floor, *bins,
    )  # fmt: skip
    tight = _needed_nodes(*args, 0)
    keys = [
        (c, t, r, q, s, h, lv)
        for c, t, r, q, s in zip(
            b_call.tolist(), b_t.tolist(), market.rate[b_u].tolist(),
            market.dividend_yield[b_u].tolist(), scale.tolist(), strict=True,
        )
    ]  # fmt: skip
    # Buckets with one key (a listed expiry of underlyings with one rate, dividend yield
    # and vol octave) read one grid: priced, cached and laid out once, to the union of
    # their needs. Apart they would each extend the cached grid their own way and only the
    # last would be kept, so the others would price their nodes again on every call.
    index: dict[GridKey, int] = {}
    g_of = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    first = np.unique(g_of, return_index=True)[1]
    merged = _ensure_grids(
        cache, list(index), b_call[first], b_t[first], market.rate[b_u][first],
        market.dividend_yield[b_u][first], scale[first], _merge_needs(tight, g_of, len(index)),
        lambda: _merge_needs(_needed_nodes(*args, cache.margin_nodes), g_of, len(index))
        if cache.margin_nodes else None, h, lv,
    )  # fmt: skip
    grids = EepGrids(
        merged.scale[g_of], h, merged.m_first[g_of], merged.m_count[g_of],
        merged.offset[g_of], lv, merged.v_first[g_of], merged.v_count[g_of], merged.values,
        merged.side[g_of], merged.row_offset[g_of], merged.boundary,
    )  # fmt: skip
    return bucket, grids


def _merge_needs(needs: Needs, group: NDArray[np.int64], n_groups: int) -> Needs:
    """The needs of buckets ``0..B-1`` merged by ``group``: each group's vol rows span its
    buckets' and each row's moneyness interval covers theirs (rows no bucket needs are
    empty, lo > hi)."""
    j_first, j_count, lo, hi = needs
    big = np.int64(1 << 40)
    some = j_count > 0
    g_first = np.full(n_groups, big)
    g_last = np.full(n_groups, -big)
    np.minimum.at(g_first, group[some], j_first[some])
    np.maximum.at(g_last, group[some], (j_first + j_count - 1)[some])
    g_count = np.maximum(g_last - g_first + 1, 0)
    g_first = np.where(g_count > 0, g_first, 0)
    g_rows = np.concatenate([[0], np.cumsum(g_count)]).astype(np.int64)
    row_b = np.repeat(np.arange(j_count.size), j_count)
    row_start = np.repeat(np.cumsum(j_count) - j_count, j_count)
    row_j = j_first[row_b] + np.arange(row_b.size) - row_start
    dest = g_rows[group[row_b]] + row_j - g_first[group[row_b]]
    g_lo = np.full(int(g_rows[-1]), big)
    g_hi = np.full(int(g_rows[-1]), -big)
    ne = lo <= hi
    np.minimum.at(g_lo, dest[ne], lo[ne])
    np.maximum.at(g_hi, dest[ne], hi[ne])
    return g_first, g_count, g_lo, g_hi


def _lattice_scale(atm: FloatArray, t: FloatArray) -> FloatArray:
    """The moneyness lattice's scale c of each bucket: three total vols σ√T, the ATM vol
    rounded to the nearest power of two (so a vol tick within the octave keeps the lattice
    and the grid), at least _MIN_SCALE."""
    level = np.exp2(np.floor(np.log2(np.maximum(atm, 1e-6)) + 0.5))
    return np.maximum(_SCALE_TOTAL_VOLS * level * np.sqrt(t), _MIN_SCALE)


GridKey = tuple[bool, float, float, float, float, float, float]
"""(call, expiry years, rate, dividend yield, lattice scale, moneyness step, log-vol step):
exactly what a bucket's premium grid depends on."""


@dataclass(frozen=True, slots=True)
class BucketGrid:
    """One bucket's premium grid on the lattice rectangle starting at moneyness node ``i0``
    and vol row ``j0``: ``values[i, j]`` (per unit strike) at ``m = scale · sinh((i0 + i) ·
    h)``, ``ln σ = (j0 + j) · lv``; NaN where a node was never needed (nodes are priced
    lazily). Per vol row: the exercise boundary (``raw_boundary``, NaN where the row has
    none), and what :func:`_extend_rows` needs to continue the premium across it
    (``f_star``, ``slope``, ``pts_d``, ``pts_f``). ``side`` is +1 (put) / -1 (call), 0 when
    a row of the rectangle has no single boundary (then no node is extended)."""

    i0: int
    j0: int
    values: FloatArray
    raw_boundary: FloatArray
    side: float
    f_star: FloatArray
    slope: FloatArray
    pts_d: FloatArray
    pts_f: FloatArray

    @property
    def nodes(self) -> int:
        return int(self.values.size)


class GridCache:
    """Premium grids kept between revaluations, per bucket, keyed by exactly the inputs
    they depend on (:data:`GridKey`, by value): a price or vol move reuses a bucket's grid
    as it is or prices the nodes it lacks; a change of rate, dividend or expiry (a roll) is
    a different key and a new grid. Least recently used grids are dropped beyond
    ``max_nodes`` nodes (8 bytes each, plus a few per vol row), so grids of expired or
    delisted series, or of a market long gone, age out. A grid holds no reference to a
    market or book: a stale one can only be found by the exact inputs it was built for,
    and it is right for them.

    Where a row's nodes are priced, ``margin_nodes`` more are priced on each side of what
    was asked, so that the next small spot move finds them built (a 1% move shifts ln(S/K)
    by 0.01, about a node near the strike of a bucket with σ√T = 0.15).

    ``max_nodes=0`` keeps nothing: for grids used once (a call without a cache, a
    back-test's day, whose grids no other day can use), which are then laid out in the
    reused scratch buffer and never copied out."""

    def __init__(self, max_nodes: int = 80_000_000, margin_nodes: int = 3) -> None:
        if max_nodes < 0 or margin_nodes < 0:
            raise ValidationError(
                "max_nodes", f"must be >= 0, got {max_nodes!r} / {margin_nodes!r}"
            )
        self.max_nodes = max_nodes
        self.margin_nodes = margin_nodes
        self._grids: OrderedDict[GridKey, BucketGrid] = OrderedDict()
        self._nodes = 0
        self._scratch = np.empty(0)
        self._bins: tuple[Any, ...] | None = None
        self.hits = 0
        self.extended = 0
        self.built = 0
        self.priced = 0

    def __len__(self) -> int:
        return len(self._grids)

    @property
    def nodes(self) -> int:
        return self._nodes

    def get(self, key: GridKey) -> BucketGrid | None:
        grid = self._grids.get(key)
        if grid is not None:
            self._grids.move_to_end(key)
        return grid

    def put(self, key: GridKey, grid: BucketGrid) -> None:
        if not self.max_nodes:
            return
        old = self._grids.pop(key, None)
        if old is not None:
            self._nodes -= old.nodes
        self._grids[key] = grid
        self._nodes += grid.nodes
        while self._nodes > self.max_nodes and len(self._grids) > 1:
            _, dropped = self._grids.popitem(last=False)
            self._nodes -= dropped.nodes

    def scratch(self, n: int, *, fill: bool = True) -> FloatArray:
        """``n`` NaNs in a buffer reused from call to call (grown, never shrunk): a call's
        layout, which nothing keeps beyond the call (:func:`_ensure_grids` copies what it
        caches), so it need not be fresh memory, whose first touch costs ~2.5 ms/MiB on
        these machines."""
        if self._scratch.size < n:
            self._scratch = np.empty(max(n, int(self._scratch.size * 1.25)))
        out = self._scratch[:n]
        if fill:
            out.fill(np.nan)
        return out

    def scenario_bins(
        self,
        spot_shock: Float32Array,
        vol_shock: Float32Array,
        unders: NDArray[np.int64],
        lv: float,
    ) -> tuple[NDArray[np.int64], FloatArray, FloatArray, FloatArray, FloatArray]:
        """:func:`_scenario_bins` of ``unders``, cut from the bins of every underlying,
        binned once per scenario set: they depend on the shocks alone, which a move leaves
        as they are (``log1p`` of every shock twice: ~90 ms a call for 2,000 underlyings ×
        644 scenarios). The memo holds the shock arrays themselves, so it is found only for
        those very arrays (never for others at the same address)."""
        memo = self._bins
        if memo is None or memo[0] is not spot_shock or memo[1] is not vol_shock or memo[2] != lv:
            every = np.arange(spot_shock.shape[0], dtype=np.int64)
            memo = self._bins = (
                spot_shock,
                vol_shock,
                lv,
                _scenario_bins(spot_shock, vol_shock, every, lv),
            )
        start, *parts = memo[3]
        counts = start[unders + 1] - start[unders]
        out_start = np.zeros(unders.size + 1, dtype=np.int64)
        np.cumsum(counts, out=out_start[1:])
        take = np.repeat(start[unders] - out_start[:-1], counts) + np.arange(out_start[-1])
        w_lo, w_hi, y_lo, y_hi = (a[take] for a in parts)
        return out_start, w_lo, w_hi, y_lo, y_hi

    def drop(self, key: GridKey) -> None:
        old = self._grids.pop(key, None)
        if old is not None:
            self._nodes -= old.nodes

    def clear(self) -> None:
        self._grids.clear()
        self._nodes = 0


_LN_MONEYNESS = math.log(MONEYNESS_MAX) - 1e-9
"""Largest |ln(S/K)| a premium node is priced at (inside the pricer's range)."""


@njit(cache=True, parallel=True)
def _scenario_bins(
    spot_shock: np.ndarray, vol_shock: np.ndarray, unders: np.ndarray, lv: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per underlying of ``unders``, its scenarios (and today's point, no shock) in bins of
    ln vm (width ``lv``, vm = 1 + vol shock): each bin's range of ln vm and of ln(1 + spot
    shock), NaN for an empty bin. Returns (bin_start per underlying + 1, w_lo, w_hi, y_lo,
    y_hi). Underlyings in parallel: each writes its own bins only (0.32 s serial for 2,000
    underlyings × 10,000 scenarios)."""
    n_s = spot_shock.shape[1]
    n_u = unders.shape[0]
    first = np.zeros(n_u, dtype=np.int64)
    width = np.zeros(n_u, dtype=np.int64)
    for a in prange(n_u):
        lo, hi = 0, 0
        for s in range(n_s):
            k = math.floor(math.log1p(np.float64(vol_shock[unders[a], s])) / lv)
            lo, hi = min(lo, k), max(hi, k)
        first[a] = lo
        width[a] = hi - lo + 1
    start = np.zeros(n_u + 1, dtype=np.int64)
    for a in range(n_u):
        start[a + 1] = start[a] + width[a]
    w_lo = np.full(start[-1], np.nan)
    w_hi = np.full(start[-1], np.nan)
    y_lo = np.full(start[-1], np.nan)
    y_hi = np.full(start[-1], np.nan)
    for a in prange(n_u):
        u = unders[a]
        for s in range(n_s + 1):
            w = math.log1p(np.float64(vol_shock[u, s])) if s < n_s else 0.0
            y = math.log1p(np.float64(spot_shock[u, s])) if s < n_s else 0.0
            c = start[a] + math.floor(w / lv) - first[a]
            if not w_lo[c] <= w:
                w_lo[c] = w
            if not w_hi[c] >= w:
                w_hi[c] = w
            if not y_lo[c] <= y:
                y_lo[c] = y
            if not y_hi[c] >= y:
                y_hi[c] = y
    return start, w_lo, w_hi, y_lo, y_hi


@njit(cache=True, inline="always")
def _smile(m: float, atm: float, skew: float, vol_floor: float) -> float:
    return max(vol_floor, atm - skew * m)


@njit(cache=True, inline="always")
def _smile_between(
    lo: float, hi: float, atm: float, skew: float, vol_floor: float, a: float, z: float
) -> tuple[float, float]:
    """The log-moneyness interval within [a, z] where lo <= smile(m) <= hi (the smile is
    monotone, so it is an interval); empty (first > second) where there is none."""
    if hi < vol_floor:
        return 1.0, -1.0
    floor_in = vol_floor >= lo  # the floored part of the smile is inside [lo, hi]
    if skew == 0.0:
        ok = atm <= hi and (floor_in or atm >= lo)
        return (a, z) if ok else (1.0, -1.0)
    # g(m) = atm - skew·m; smile <= hi  <=>  g <= hi; smile >= lo  <=>  floor_in or g >= lo
    if skew < 0.0:
        m_hi = (atm - hi) / skew
        m_lo = -math.inf if floor_in else (atm - lo) / skew
        return max(a, m_lo), min(z, m_hi)
    m_lo = (atm - hi) / skew
    m_hi = math.inf if floor_in else (atm - lo) / skew
    return max(a, m_lo), min(z, m_hi)


_COORD_PAD = 1e-3
"""Lattice cells (of either axis) by which :func:`_needed_nodes` widens every point's
cell: the kernel takes a point's coordinates in float32 (``pricing.single.log32``). At the
default steps a coordinate lies within 512 cells of 0 (|ln S/K| <= 34 at the smallest
scale, 0.005, is 380 cells), where float32 numbers are 3.1e-5 of a cell apart; measured
against float64 over 4 M points, the worst error was 3.1e-5 of a cell in moneyness and
5.3e-6 in vol. The error grows as 1/step: at the least steps :class:`RevaluationSettings`
accepts (0.005 in moneyness, 0.01 in ln σ) it is at most ~2.5e-4 of a cell (half the
float32 spacing at 1,900 cells, plus log32's 3.5e-7 over the step). A pad of 1e-3 marks
an extra node only where a point lies that close to a cell's edge."""


@njit(cache=True)
def _needed_nodes(
    u_pos: np.ndarray,
    ln_s0: np.ndarray,
    k_lo: np.ndarray,
    k_hi: np.ndarray,
    atm: np.ndarray,
    skew: np.ndarray,
    scale: np.ndarray,
    h: float,
    lv: float,
    vol_floor: float,
    bin_start: np.ndarray,
    w_lo: np.ndarray,
    w_hi: np.ndarray,
    y_lo: np.ndarray,
    y_hi: np.ndarray,
    margin: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per bucket, the vol rows (``j_first``, ``j_count``) and per row the moneyness nodes
    (``need_lo .. need_hi``, flattened bucket-major; empty where lo > hi) that the cubics of
    its points read: every (scenario, strike) point of the bucket lies, with its scenario's
    ln vm bin, in a box of (m, ln σ) = (ln S'/K, ln vm + ln smile(m)); each σ cell of the
    box gets the moneyness interval whose smile puts it there, widened to the cubic's four
    nodes in each axis (and ``margin`` more moneyness nodes, and a vol row more, for the
    next small move to find). Bounds are padded by 1e-9 against
    rounding, so a point is never outside what is marked for it."""
    n_b = u_pos.shape[0]
    pad = 1e-9
    margin_rows = 0
    j_first = np.zeros(n_b, dtype=np.int64)
    j_count = np.zeros(n_b, dtype=np.int64)
    for b in range(n_b):
        a_pos = u_pos[b]
        lo_j, hi_j = 1 << 40, -(1 << 40)
        for c in range(bin_start[a_pos], bin_start[a_pos + 1]):
            if w_lo[c] != w_lo[c]:
                continue
            a = ln_s0[b] + y_lo[c] - k_hi[b] - pad
            z = ln_s0[b] + y_hi[c] - k_lo[b] + pad
            s_a = _smile(a, atm[b], skew[b], vol_floor)
            s_z = _smile(z, atm[b], skew[b], vol_floor)
            ls_lo = w_lo[c] + math.log(min(s_a, s_z)) - pad
            ls_hi = w_hi[c] + math.log(max(s_a, s_z)) + pad
            lo_j = min(lo_j, math.floor(ls_lo / lv - _COORD_PAD) - 1 - margin_rows)
            hi_j = max(hi_j, math.floor(ls_hi / lv + _COORD_PAD) + 2 + margin_rows)
        j_first[b] = lo_j
        j_count[b] = hi_j - lo_j + 1
    row_start = np.zeros(n_b + 1, dtype=np.int64)
    for b in range(n_b):
        row_start[b + 1] = row_start[b] + j_count[b]
    need_lo = np.full(row_start[-1], 1 << 40, dtype=np.int64)
    need_hi = np.full(row_start[-1], -(1 << 40), dtype=np.int64)
    for b in range(n_b):
        a_pos = u_pos[b]
        c_b = scale[b]
        for c in range(bin_start[a_pos], bin_start[a_pos + 1]):
            if w_lo[c] != w_lo[c]:
                continue
            a = ln_s0[b] + y_lo[c] - k_hi[b] - pad
            z = ln_s0[b] + y_hi[c] - k_lo[b] + pad
            s_a = _smile(a, atm[b], skew[b], vol_floor)
            s_z = _smile(z, atm[b], skew[b], vol_floor)
            ls_lo = w_lo[c] + math.log(min(s_a, s_z)) - pad
            ls_hi = w_hi[c] + math.log(max(s_a, s_z)) + pad
            for j in range(
                math.floor(ls_lo / lv - _COORD_PAD), math.floor(ls_hi / lv + _COORD_PAD) + 1
            ):
                # points in σ cell j (to within _COORD_PAD of a cell, as the kernel's float32
                # coordinates may put them): smile(m) between e^{j lv - w_hi} and
                # e^{(j+1) lv - w_lo}
                s_lo = math.exp((j - _COORD_PAD) * lv - w_hi[c]) * (1.0 - pad)
                s_hi = math.exp((j + 1 + _COORD_PAD) * lv - w_lo[c]) * (1.0 + pad)
                m_a, m_z = _smile_between(s_lo, s_hi, atm[b], skew[b], vol_floor, a, z)
                if m_a > m_z:
                    continue
                i_a = math.floor(math.asinh(m_a / c_b) / h - _COORD_PAD) - 1 - margin
                i_z = math.floor(math.asinh(m_z / c_b) / h + _COORD_PAD) + 2 + margin
                for jj in range(j - 1 - margin_rows, j + 3 + margin_rows):
                    r = row_start[b] + jj - j_first[b]
                    need_lo[r] = min(need_lo[r], i_a)
                    need_hi[r] = max(need_hi[r], i_z)
    if margin_rows:
        # A small move can carry a scenario's points into the next vol cell, whose rows
        # then need that row's reach: each row also covers its neighbours' (two each side).
        lo_s, hi_s = need_lo.copy(), need_hi.copy()
        for b in range(n_b):
            for r in range(row_start[b], row_start[b + 1]):
                for rr in range(max(r - 2, row_start[b]), min(r + 3, row_start[b + 1])):
                    lo_s[r] = min(lo_s[r], need_lo[rr])
                    hi_s[r] = max(hi_s[r], need_hi[rr])
        need_lo, need_hi = lo_s, hi_s
    return j_first, j_count, need_lo, need_hi


Needs = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]
"""(j_first, j_count per bucket; need_lo, need_hi per vol row, bucket-major)."""


@dataclass(slots=True)
class _Layout:
    """Every bucket's rectangle laid out in one flat buffer, the cached grids' nodes and
    row data copied in, and the needed intervals mapped onto the rectangles' rows."""

    hull: NDArray[np.int64]  # B × (i first, i last, j first, j last)
    n_i: NDArray[np.int64]
    n_j: NDArray[np.int64]
    offset: NDArray[np.int64]  # B + 1
    row_offset: NDArray[np.int64]  # B + 1
    values: FloatArray
    bd: FloatArray
    f0: FloatArray
    s0: FloatArray
    pts_d: FloatArray
    pts_f: FloatArray
    known: NDArray[np.bool_]
    need_a: NDArray[np.int64]
    need_z: NDArray[np.int64]

    @classmethod
    def of(
        cls, have: list[BucketGrid | None], needs: Needs, scratch: GridCache | None = None
    ) -> _Layout:
        j_first, j_count, need_lo, need_hi = needs
        n_b = len(have)
        big = np.int64(1 << 40)
        rs = np.concatenate([[0], np.cumsum(j_count)]).astype(np.int64)
        nonempty = need_lo <= need_hi
        row_b = np.repeat(np.arange(n_b), j_count)
        i_lo = np.full(n_b, big)
        i_hi = np.full(n_b, -big)
        np.minimum.at(i_lo, row_b[nonempty], need_lo[nonempty])
        np.maximum.at(i_hi, row_b[nonempty], need_hi[nonempty])
        hull = np.column_stack([i_lo, i_hi, j_first, j_first + j_count - 1])
        if n_b and scratch is not None and all(g is not None for g in have):
            inside = _Layout._inside(have, hull, need_lo, need_hi, needs, scratch)
            if inside is not None:
                return inside
        # The cached grids' rectangles join their buckets' hulls, and their nodes and rows
        # are copied in, as whole arrays: a batch of the stream holds thousands of buckets,
        # and a copy per bucket in Python cost ~7 µs each (56 ms of a 1,300-move batch).
        cb = np.flatnonzero([g is not None for g in have]).astype(np.int64)
        grids = [g for g in have if g is not None]
        g_shape = np.array([g.values.shape for g in grids], dtype=np.int64).reshape(-1, 2)
        g_i0 = np.array([g.i0 for g in grids], dtype=np.int64)
        g_j0 = np.array([g.j0 for g in grids], dtype=np.int64)
        hull[cb, 0] = np.minimum(hull[cb, 0], g_i0)
        hull[cb, 1] = np.maximum(hull[cb, 1], g_i0 + g_shape[:, 0] - 1)
        hull[cb, 2] = np.minimum(hull[cb, 2], g_j0)
        hull[cb, 3] = np.maximum(hull[cb, 3], g_j0 + g_shape[:, 1] - 1)
        n_i = hull[:, 1] - hull[:, 0] + 1
        n_j = hull[:, 3] - hull[:, 2] + 1
        offset = np.concatenate([[0], np.cumsum(n_i * n_j)]).astype(np.int64)
        row_offset = np.concatenate([[0], np.cumsum(n_j)]).astype(np.int64)
        n_rows = int(row_offset[-1])
        n_nodes = int(offset[-1])
        lay = cls(
            hull, n_i, n_j, offset, row_offset,
            np.full(n_nodes, np.nan) if scratch is None else scratch.scratch(n_nodes),
            np.full(n_rows, np.nan), np.zeros(n_rows), np.zeros(n_rows),
            np.zeros((n_rows, 2)), np.zeros((n_rows, 2)), np.zeros(n_rows, dtype=np.bool_),
            np.full(n_rows, big), np.full(n_rows, -big),
        )  # fmt: skip
        if grids:
            g_j = g_j0 - hull[cb, 2]  # where each cached rectangle sits in its hull
            _copy_blocks(
                lay.values, np.concatenate([g.values.ravel() for g in grids]),
                np.cumsum(g_shape[:, 0] * g_shape[:, 1]) - g_shape[:, 0] * g_shape[:, 1],
                offset[cb], n_j[cb], g_i0 - hull[cb, 0], g_j, g_shape[:, 0], g_shape[:, 1],
            )  # fmt: skip
            g_rows = g_shape[:, 1]
            first = np.cumsum(g_rows) - g_rows
            rows = np.repeat(row_offset[cb] + g_j - first, g_rows) + np.arange(int(g_rows.sum()))
            lay.bd[rows] = np.concatenate([g.raw_boundary for g in grids])
            lay.f0[rows] = np.concatenate([g.f_star for g in grids])
            lay.s0[rows] = np.concatenate([g.slope for g in grids])
            lay.pts_d[rows] = np.concatenate([g.pts_d for g in grids])
            lay.pts_f[rows] = np.concatenate([g.pts_f for g in grids])
            lay.known[rows] = True
        at = row_offset[row_b] + (j_first[row_b] + np.arange(rs[-1]) - rs[row_b]) - hull[row_b, 2]
        lay.need_a[at], lay.need_z[at] = need_lo, need_hi
        return lay

    @classmethod
    def _inside(
        cls, have: list[BucketGrid | None], hull: NDArray[np.int64], need_lo: NDArray[np.int64],
        need_hi: NDArray[np.int64], needs: Needs, scratch: GridCache,
    ) -> _Layout | None:  # fmt: skip
        """The layout when every bucket has a cached grid whose rectangle holds all its
        needs (a move within what the cache covers: the stream's common case), or None. The
        rectangles are then the cached ones, so the buffers are the grids' arrays laid end
        to end: one concatenation each, instead of a bucket-by-bucket copy into a hull."""
        grids = [g for g in have if g is not None]
        shape = np.array([g.values.shape for g in grids], dtype=np.int64).reshape(-1, 2)
        i0 = np.array([g.i0 for g in grids], dtype=np.int64)
        j0 = np.array([g.j0 for g in grids], dtype=np.int64)
        rect = np.column_stack([i0, i0 + shape[:, 0] - 1, j0, j0 + shape[:, 1] - 1])
        if not (
            (rect[:, 0] <= hull[:, 0]).all() and (rect[:, 1] >= hull[:, 1]).all()
            and (rect[:, 2] <= hull[:, 2]).all() and (rect[:, 3] >= hull[:, 3]).all()
        ):  # fmt: skip
            return None
        j_first, j_count = needs[0], needs[1]
        n_i = rect[:, 1] - rect[:, 0] + 1
        n_j = rect[:, 3] - rect[:, 2] + 1
        offset = np.concatenate([[0], np.cumsum(n_i * n_j)]).astype(np.int64)
        row_offset = np.concatenate([[0], np.cumsum(n_j)]).astype(np.int64)
        n_rows, big = int(row_offset[-1]), np.int64(1 << 40)
        values = scratch.scratch(int(offset[-1]), fill=False)
        np.concatenate([g.values.ravel() for g in grids], out=values)
        lay = cls(
            rect, n_i, n_j, offset, row_offset, values,
            np.concatenate([g.raw_boundary for g in grids]),
            np.concatenate([g.f_star for g in grids]), np.concatenate([g.slope for g in grids]),
            np.concatenate([g.pts_d for g in grids]), np.concatenate([g.pts_f for g in grids]),
            np.ones(n_rows, dtype=np.bool_), np.full(n_rows, big), np.full(n_rows, -big),
        )  # fmt: skip
        rs = np.concatenate([[0], np.cumsum(j_count)]).astype(np.int64)
        row_b = np.repeat(np.arange(len(grids)), j_count)
        at = row_offset[row_b] + (j_first[row_b] + np.arange(rs[-1]) - rs[row_b]) - rect[row_b, 2]
        lay.need_a[at], lay.need_z[at] = need_lo, need_hi
        return lay

    def grids(
        self, scale: FloatArray, h: float, lv: float, side: FloatArray,
        boundary: FloatArray | None = None,
    ) -> EepGrids:  # fmt: skip
        """The layout as the kernel reads it (``boundary``: the rows' exercise boundaries,
        0 where the bucket has no single one; default ``bd`` so)."""
        if boundary is None:
            r_b = np.repeat(np.arange(self.n_j.size), self.n_j)
            boundary = np.where(side[r_b] == 0.0, 0.0, self.bd)
        return EepGrids(
            scale, h, self.hull[:, 0].copy(), self.n_i, self.offset[:-1], lv,
            self.hull[:, 2].copy(), self.n_j, self.values, side, self.row_offset[:-1], boundary,
        )  # fmt: skip

    def wanting(self) -> NDArray[np.bool_]:
        """Rows to solve: not in a cached grid, or with a needed node not priced yet."""
        want: NDArray[np.bool_] = ~self.known | _rows_wanting(
            self.values, self.offset, self.row_offset, self.hull[:, 0], self.n_j,
            self.need_a, self.need_z,
        )  # fmt: skip
        return want


@njit(cache=True)
def _copy_blocks(
    dst: np.ndarray,
    src: np.ndarray,
    src_start: np.ndarray,
    dst_offset: np.ndarray,
    dst_cols: np.ndarray,
    at_i: np.ndarray,
    at_j: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> None:
    """Block ``k`` (``rows[k]`` × ``cols[k]``, row-major in ``src`` from ``src_start[k]``)
    into the row-major rectangle of ``dst_cols[k]`` columns at ``dst_offset[k]``, at row
    ``at_i[k]`` and column ``at_j[k]``."""
    for k in range(src_start.size):
        s, nc = src_start[k], cols[k]
        for a in range(rows[k]):
            d = dst_offset[k] + (at_i[k] + a) * dst_cols[k] + at_j[k]
            dst[d : d + nc] = src[s + a * nc : s + (a + 1) * nc]


def _choose(covered: NDArray[np.bool_], tight: Needs, wide: Needs) -> Needs:
    """Per bucket, the tight needs where ``covered``, else the wide ones."""
    j_first = np.where(covered, tight[0], wide[0])
    j_count = np.where(covered, tight[1], wide[1])
    t_start = np.concatenate([[0], np.cumsum(tight[1])[:-1]])
    w_start = np.concatenate([[0], np.cumsum(wide[1])[:-1]]) + tight[2].size
    src = np.where(covered, t_start, w_start)
    b_of = np.repeat(np.arange(covered.size), j_count)
    pos = (
        src[b_of] + np.arange(int(j_count.sum())) - np.repeat(np.cumsum(j_count) - j_count, j_count)
    )
    lo = np.concatenate([tight[2], wide[2]])[pos]
    hi = np.concatenate([tight[3], wide[3]])[pos]
    return j_first, j_count, lo, hi


def _ensure_grids(
    cache: GridCache,
    keys: list[GridKey],
    call: NDArray[np.bool_],
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    scale: FloatArray,
    tight: Needs,
    wanted_wide: Callable[[], Needs | None],
    h: float,
    lv: float,
) -> EepGrids:
    """Every bucket's grid holding the nodes it needs (``tight``: per vol row, the nodes
    its points read), from the cache where it has them; a bucket lacking any is priced to
    its wide needs (``wanted_wide()``, asked only then: the tight ones with a margin, so
    the next small move finds them; None: the tight ones),
    every missing node in one batch (each vol row's boundary solved once,
    :func:`premium_rows`), and the cache updated. Returns the grids as the kernel reads
    them (each bucket's whole rectangle).

    A node's value depends on its bucket's key, its lattice point and the bucket's side
    alone, so a grid priced over any sequence of calls holds, node for node, the bits a
    build in one go gives. The side is the one exception (a rectangle with a vol row
    without a single boundary extends nothing): a cached grid whose side the new rows
    would change is priced afresh (in practice: never, with positive rates)."""
    n_b = len(keys)
    have: list[BucketGrid | None] = [cache.get(k) for k in keys]
    cached = np.array([g is not None for g in have], dtype=np.bool_)
    covered = np.zeros(n_b, dtype=np.bool_)
    # With grids cached this is an incremental call: the layout goes into the cache's
    # scratch buffer (memory already backed, not fresh pages each call) and what the cache
    # keeps is copied out of it, so it holds no view of a call's buffers. A cache that
    # keeps nothing lays every call out there.
    scratch = cache if cached.any() or not cache.max_nodes else None
    if cached.any():
        first = _Layout.of(have, tight, scratch)
        want = np.zeros(n_b, dtype=np.bool_)
        np.logical_or.at(want, np.repeat(np.arange(n_b), first.n_j), first.wanting())
        covered = cached & ~want
        if covered.all():  # every node needed is cached: nothing to price or extend
            cache.hits += n_b
            return first.grids(scale, h, lv, np.array([g.side for g in have if g is not None]))
    wide = wanted_wide() or tight  # only now: an incremental call is mostly covered
    lay = _Layout.of(have, _choose(covered, tight, wide) if covered.any() else wide, scratch)
    hull, n_i, n_j, offset, row_offset = lay.hull, lay.n_i, lay.n_j, lay.offset, lay.row_offset
    values, bd, f0, s0, pts_d, pts_f, known = (
        lay.values,
        lay.bd,
        lay.f0,
        lay.s0,
        lay.pts_d,
        lay.pts_f,
        lay.known,
    )
    need_a, need_z = lay.need_a, lay.need_z
    n_rows = int(row_offset[-1])
    side = np.where(call, -1.0, 1.0)
    cached_side = np.array([np.nan if g is None else g.side for g in have])
    r_b = np.repeat(np.arange(n_b), n_j)
    r_j = hull[r_b, 2] + np.arange(n_rows) - row_offset[r_b]
    solve = lay.wanting()
    ridx = np.flatnonzero(solve)
    # A row's boundary and premium depend on (call, expiry, rate, dividend, vol row) and
    # not on the lattice scale or the underlying: buckets sharing them (a listed expiry of
    # underlyings with one dividend yield) solve the row once. Rows are keyed by their
    # bucket's distinct (call, expiry, rate, dividend) and the vol row as one integer (a
    # unique over rows × 5 floats cost ~0.5 s a back-test day); a row's bits depend neither
    # on the batch it is solved in nor on its place there.
    b_keys = np.column_stack([call, t, r, q]).astype(np.float64)
    g_keys, g_of = np.unique(b_keys, axis=0, return_inverse=True)
    j_lo = int(r_j[ridx].min()) if ridx.size else 0
    span = int(r_j[ridx].max()) - j_lo + 1 if ridx.size else 1
    codes, row_of = np.unique(
        g_of.ravel()[r_b[ridx]] * span + (r_j[ridx] - j_lo), return_inverse=True
    )
    row_of = row_of.ravel()
    g_row = g_keys[codes // span]
    pr = premium_rows(
        is_call=g_row[:, 0] != 0.0, expiry_years=g_row[:, 1], rate=g_row[:, 2],
        dividend_yield=g_row[:, 3], vol=np.exp((codes % span + j_lo) * lv),
    )  # fmt: skip
    fresh = ~known[ridx]
    bd[ridx[fresh]] = pr.boundary[row_of[fresh]]
    bad = np.zeros(n_b, dtype=np.bool_)
    np.logical_or.at(bad, r_b, ~np.isfinite(bd))
    side[bad] = 0.0
    clash = np.isfinite(cached_side) & (cached_side != side)
    if clash.any():  # rare: those buckets' grids are priced afresh
        for b in np.flatnonzero(clash).tolist():
            cache.drop(keys[b])
        return _ensure_grids(cache, keys, call, t, r, q, scale, tight, lambda: wide, h, lv)
    # Nodes to price: needed, not yet priced, and on the continuation side of the row's
    # boundary (beyond it the premium is extended, not priced). Rows of the default scheme
    # (nearly all) are priced where they lie, straight into the layout (_price_nodes); the
    # others (long-dated, point by point) are listed and priced below with the extension
    # points. The bits are the same either way: a node's premium depends on its row and
    # its moneyness alone.
    local = np.full(n_rows, -1, dtype=np.int64)
    local[ridx] = row_of
    plain = np.full(n_rows, -1, dtype=np.int64)
    in_plain = pr.kind[row_of] == 1
    plain[ridx[in_plain]] = pr.slot[row_of[in_plain]]
    pl = pr.plain_rows
    priced = _price_nodes(
        values, offset, row_offset, hull[:, 0], n_j, need_a, need_z, side, bd, scale, h, r_b,
        plain, _LN_MONEYNESS, pr.is_call[pl], pr.expiry_years[pl], pr.solve_t[pl],
        pr.rate[pl], pr.dividend_yield[pl], pr.vol[pl], *pr.consts,
    )  # fmt: skip
    flat, node_row, node_m = _nodes_to_price(
        values, offset, row_offset, hull[:, 0], n_j, need_a, need_z, side, bd, scale, h,
        plain < 0,
    )  # fmt: skip
    # The extension's two continuation points of every new row (_extend_rows), priced
    # whether or not the lattice reaches them, so that a row does not depend on how far the
    # scenarios stretched it.
    new_rows = np.flatnonzero(~known & (side[r_b] != 0.0))
    r_side, c_r, bd_n = side[r_b[new_rows]], scale[r_b[new_rows]], bd[new_rows]
    y_star = np.arcsinh(bd_n / c_r) / h
    start = np.where(r_side > 0, np.floor(y_star), np.ceil(y_star))
    cand = start[:, None] + r_side[:, None] * np.arange(4)[None, :]
    cand_m = c_r[:, None] * np.sinh(cand * h)
    dist = r_side[:, None] * (cand_m - bd_n[:, None])
    ok = dist >= 0.5 * h * c_r[:, None] * np.cosh(cand * h)
    two = np.argmax(ok, axis=1)[:, None] + np.arange(2)[None, :]  # ok stays true outwards
    pts_m = np.take_along_axis(cand_m, two, axis=1).ravel()
    # A long expiry (a market dated decades before its series) stretches the lattice past
    # the spot/strike range the pricer resolves; such a node takes the premium at the edge
    # of that range, where a put or call is already worthless or exercised.
    premium = early_exercise_premium(
        pr,
        np.concatenate([local[node_row], local[np.repeat(new_rows, 2)]]),
        np.clip(np.concatenate([node_m, pts_m]), -_LN_MONEYNESS, _LN_MONEYNESS),
        single=True,
    )
    cache.priced += priced + premium.size
    values[flat] = premium[: flat.size]
    pts_d[new_rows] = np.take_along_axis(dist, two, axis=1)
    pts_f[new_rows] = premium[flat.size :].reshape(-1, 2)
    rb = r_b[new_rows]
    f0[new_rows], s0[new_rows] = _boundary_premium(
        call[rb], t[rb], r[rb], q[rb], np.exp(r_j[new_rows] * lv), bd_n
    )
    # A cached row whose rectangle did not grow was extended when it was cached; only new
    # rows and rows of grown rectangles have nodes beyond the boundary still to fill.
    grew = np.array(
        [g is None or (g.i0, g.j0, *g.values.shape) != (hull[b, 0], hull[b, 2], n_i[b], n_j[b])
         for b, g in enumerate(have)], dtype=np.bool_,
    )  # fmt: skip
    extend = ~known | grew[r_b]
    boundary = np.where(side[r_b] == 0.0, 0.0, bd)
    _extend_rows(values, r_b, row_offset, offset, hull[:, 0].copy(), n_i, n_j, scale, h, side,
                 boundary, f0, s0, pts_d, pts_f, extend)  # fmt: skip

    def own(a: FloatArray) -> FloatArray:
        return a.copy() if scratch is not None else a

    for b in range(n_b):
        g = have[b]
        if g is not None and not solve[row_offset[b] : row_offset[b + 1]].any():
            cache.hits += 1
            continue
        cache.extended += g is not None
        cache.built += g is None
        if not cache.max_nodes:
            continue
        rows = slice(int(row_offset[b]), int(row_offset[b + 1]))
        cache.put(
            keys[b],
            BucketGrid(
                i0=int(hull[b, 0]), j0=int(hull[b, 2]),
                values=own(values[offset[b] : offset[b + 1]]).reshape(int(n_i[b]), int(n_j[b])),
                raw_boundary=own(bd[rows]), side=float(side[b]), f_star=own(f0[rows]),
                slope=own(s0[rows]), pts_d=own(pts_d[rows]), pts_f=own(pts_f[rows]),
            ),
        )  # fmt: skip
    return lay.grids(scale, h, lv, side, boundary)


@njit(cache=True)
def _rows_wanting(
    values: np.ndarray,
    offset: np.ndarray,
    row_offset: np.ndarray,
    i_first: np.ndarray,
    n_j: np.ndarray,
    need_a: np.ndarray,
    need_z: np.ndarray,
) -> np.ndarray:
    """Rows with a needed node not priced yet (NaN)."""
    out = np.zeros(need_a.shape[0], dtype=np.bool_)
    for b in range(n_j.shape[0]):
        nv = n_j[b]
        for j in range(nv):
            r = row_offset[b] + j
            for i in range(need_a[r], need_z[r] + 1):
                v = values[offset[b] + (i - i_first[b]) * nv + j]
                if v != v:
                    out[r] = True
                    break
    return out


@njit(cache=True)
def _nodes_to_price(
    values: np.ndarray,
    offset: np.ndarray,
    row_offset: np.ndarray,
    i_first: np.ndarray,
    n_j: np.ndarray,
    need_a: np.ndarray,
    need_z: np.ndarray,
    side: np.ndarray,
    boundary: np.ndarray,
    scale: np.ndarray,
    h: float,
    mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat index, row, log-moneyness) of every needed node of the rows of ``mask`` not
    priced yet on the continuation side of its row's boundary (every needed node where the
    bucket has no single boundary)."""
    count = 0
    for b in range(n_j.shape[0]):
        for j in range(n_j[b]):
            r = row_offset[b] + j
            if mask[r]:
                count += max(need_z[r] - need_a[r] + 1, 0)
    flat = np.empty(count, dtype=np.int64)
    rows = np.empty(count, dtype=np.int64)
    ln_m = np.empty(count)
    k = 0
    for b in range(n_j.shape[0]):
        nv = n_j[b]
        sd = side[b]
        for j in range(nv):
            r = row_offset[b] + j
            if not mask[r]:
                continue
            for i in range(need_a[r], need_z[r] + 1):
                f = offset[b] + (i - i_first[b]) * nv + j
                m = _node_to_price(values[f], scale[b], i, h, sd, boundary[r])
                if m != m:
                    continue
                flat[k] = f
                rows[k] = r
                ln_m[k] = m
                k += 1
    return flat[:k], rows[:k], ln_m[:k]


@njit(cache=True, inline="always")
def _node_to_price(value: float, c: float, i: int, h: float, sd: float, m_star: float) -> float:
    """The log-moneyness ``c · sinh(i · h)`` of node ``i`` of a row if it is still to be
    priced (``value`` NaN, and on the continuation side ``sd`` of the boundary ``m_star``, or
    the bucket has no single boundary: ``sd`` 0), else NaN. The one rule of both node walks."""
    if value == value:
        return np.nan
    m: float = c * math.sinh(i * h)
    return np.nan if sd != 0.0 and sd * (m - m_star) <= 0.0 else m


@njit(cache=True, parallel=True, error_model="numpy")
def _price_nodes(
    values: np.ndarray,
    offset: np.ndarray,
    row_offset: np.ndarray,
    i_first: np.ndarray,
    n_j: np.ndarray,
    need_a: np.ndarray,
    need_z: np.ndarray,
    side: np.ndarray,
    boundary: np.ndarray,
    scale: np.ndarray,
    h: float,
    r_bucket: np.ndarray,
    slot: np.ndarray,
    cap: float,
    is_call: np.ndarray,
    t: np.ndarray,
    solve_t: np.ndarray,
    rate: np.ndarray,
    div: np.ndarray,
    vol: np.ndarray,
    c_lnx: np.ndarray,
    c_0: np.ndarray,
    c_v: np.ndarray,
    c_r: np.ndarray,
    c_q: np.ndarray,
) -> int:
    """Price, in place, the nodes :func:`_nodes_to_price` would list for every row with a
    default-scheme premium row (``slot[r]`` >= 0: its index among them; moneyness clipped
    to ``±cap``), a block of :func:`premium_block` at a time; returns how many.

    Listing the nodes first, grouping them by row and scattering the premiums back cost
    as much as pricing them (six arrays of a back-test day's 5.6 M nodes); the nodes of a
    row are already a run, so they are priced where they lie. Rows are independent."""
    n_rows = r_bucket.shape[0]
    n_tasks = max(min(n_rows, 64), 1)
    counts = np.zeros(n_tasks, dtype=np.int64)
    for task in prange(n_tasks):
        buf = np.empty((5, PREMIUM_BLOCK))
        buf32 = np.empty((2, PREMIUM_BLOCK), dtype=np.float32)
        dest = np.empty(PREMIUM_BLOCK, dtype=np.int64)
        done = 0
        for r in range(task * n_rows // n_tasks, (task + 1) * n_rows // n_tasks):
            j = slot[r]
            if j < 0:
                continue
            b = r_bucket[r]
            nv = n_j[b]
            jj = r - row_offset[b]
            sd, c, m_star = side[b], scale[b], boundary[r]
            k = 0
            last = need_z[r]
            for i in range(need_a[r], last + 1):
                f = offset[b] + (i - i_first[b]) * nv + jj
                m = _node_to_price(values[f], c, i, h, sd, m_star)
                if m == m:
                    buf[0, k] = min(max(m, -cap), cap)
                    dest[k] = f
                    k += 1
                if k == PREMIUM_BLOCK or (i == last and k):  # a full block, or the row's end
                    premium_block(
                        k, j, is_call, t, solve_t, rate, div, vol, c_lnx, c_0, c_v, c_r, c_q,
                        False, buf, True, buf32,
                    )  # fmt: skip
                    for s in range(k):
                        values[dest[s]] = buf[3, s]
                    done += k
                    k = 0
        counts[task] = done
    return int(counts.sum())


@njit(cache=True)
def _extend_rows(
    values: np.ndarray,
    r_bucket: np.ndarray,
    row_offset: np.ndarray,
    offset: np.ndarray,
    m_first: np.ndarray,
    m_count: np.ndarray,
    nv: np.ndarray,
    scale: np.ndarray,
    h: float,
    side: np.ndarray,
    boundary: np.ndarray,
    f_star: np.ndarray,
    slope: np.ndarray,
    pts_d: np.ndarray,
    pts_f: np.ndarray,
    rows: np.ndarray,
) -> None:
    """Fill, in place, the premium of each row of the mask ``rows`` at the nodes beyond its
    exercise boundary with the continuation region's premium extended smoothly across it.

    On the exercise side the premium is ``intrinsic - European``, which meets the
    continuation side's with equal value and slope but not curvature (the American price
    is only C1 there), so a cubic across the boundary would err by the step squared. The
    kernel prices those points as exercised (the intrinsic value, exactly); the nodes there
    only serve the cubics of continuation points nearby, which then see one smooth
    function. The extension is the cubic in the distance d = side · (m - m*) through the
    boundary's value ``f_star`` and slope (``slope`` = dF/dm; smooth pasting: the American
    price leaves the boundary with the intrinsic value's slope) and the premium ``pts_f`` at
    the first two lattice nodes at least half a step inside the continuation region, at
    distances ``pts_d``."""
    for r in range(r_bucket.shape[0]):
        b = r_bucket[r]
        sd = side[b]
        if sd == 0.0 or not rows[r]:
            continue
        j = r - row_offset[b]
        n_v = nv[b]
        m_star = boundary[r]
        c = scale[b]
        f0 = f_star[r]
        s0 = sd * slope[r]
        d1, d2 = pts_d[r, 0], pts_d[r, 1]
        v1, v2 = pts_f[r, 0], pts_f[r, 1]
        # p(d) = f0 + s0 d + c2 d² + c3 d³ through (d1, v1) and (d2, v2)
        e1 = (v1 - f0 - s0 * d1) / (d1 * d1)
        e2 = (v2 - f0 - s0 * d2) / (d2 * d2)
        c3 = (e2 - e1) / (d2 - d1)
        c2 = e1 - c3 * d1
        for i in range(m_count[b]):
            y = (m_first[b] + i) * h
            d = sd * (c * math.sinh(y) - m_star)
            if d <= 0.0:
                values[offset[b] + i * n_v + j] = f0 + d * (s0 + d * (c2 + d * c3))


def _boundary_premium(
    call: NDArray[np.bool_],
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    vol: FloatArray,
    m_star: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """The premium F = intrinsic - European at the boundary m* of a vol row and its slope
    dF/dm (the American price's slope there is the intrinsic value's, by smooth pasting);
    the European part's slope by a central difference of the closed form."""
    eps = 1e-5
    values = []
    for dm in (-eps, 0.0, eps):
        m = m_star + dm
        batch = OptionBatch.of(
            is_call=call, is_american=False, spot=np.exp(m), strike=1.0, expiry_years=t,
            rate=r, dividend_yield=q, vol=vol,
        )  # fmt: skip
        intrinsic = np.where(call, np.exp(m) - 1.0, 1.0 - np.exp(m))
        values.append(intrinsic - european_price(batch))
    return values[1], (values[2] - values[0]) / (2.0 * eps)


_MIN_SCALE = 0.005
_SCALE_TOTAL_VOLS = 3.0


def _exact_american(
    instruments: Instruments,
    market: Market,
    spot_shock: Float32Array,
    vol_shock: Float32Array,
    rows: IndexArray,
    settings: RevaluationSettings,
) -> tuple[IndexArray, Float32Array]:
    """The American options among ``rows``: their places in ``rows`` and their P&L per unit
    position from the pricing core's price per scenario (len × S). Computed before
    anything is written, so that a refusal (a scenario spot beyond the pricer's
    moneyness range) leaves the caller's output untouched."""
    positions = np.flatnonzero(instruments.is_american[rows] & instruments.is_option[rows])
    out = np.empty((positions.size, spot_shock.shape[1]), dtype=np.float32)
    for n, k in enumerate(positions):
        i = rows[k]
        u = instruments.underlying[i]
        base = option_batch(instruments, market, np.array([i]), settings.vol_floor)
        s_new = market.spot[u] * (1.0 + spot_shock[u].astype(np.float64))
        inner = market.atm_vol[u] + market.skew[u] * np.log(instruments.strike[i] / s_new)
        vol = (1.0 + vol_shock[u].astype(np.float64)) * np.maximum(settings.vol_floor, inner)
        scen = OptionBatch.of(
            is_call=bool(base.is_call[0]),
            is_american=True,
            spot=s_new,
            strike=instruments.strike[i],
            expiry_years=instruments.expiry_years[i],
            rate=market.rate[u],
            dividend_yield=market.dividend_yield[u],
            vol=vol,
        )
        p0 = price_american(base)[0]
        out[n] = ((price_american(scen) - p0) * instruments.multiplier[i]).astype(np.float32)
    return positions, out


@njit(cache=True, inline="always")
def _cell(y: float, first: int, count: int) -> tuple[int, float]:
    """Cubic cell of lattice coordinate ``y`` (node ``i`` at ``first + i``): the index of the
    cell's left node, in [1, count - 3] so the cubic's four nodes exist, and the fraction.

    The fraction is taken from ``y`` itself (``y - floor(y)``, exact), not from ``y - first``,
    so it does not depend on where the lattice starts: the same point interpolates the same
    way however far the scenarios stretched the grid. Clamped at the ends (the lattices are
    built one node wider than every scenario's reach, so a clamp is never hit)."""
    whole = math.floor(y)
    i = int(whole) - first
    f = y - whole
    if i < 1:
        return 1, 0.0
    if i > count - 3:
        return count - 3, 1.0
    return i, f


@njit(cache=True, inline="always")
def _cubic_weights(f: float) -> tuple[float, float, float, float]:
    """Weights of nodes -1, 0, 1, 2 at fraction ``f`` of cell [0, 1]: the cubic through the
    four nodes (Lagrange; exact for cubics, so the error falls as the step to the fourth
    power where the premium is smooth); (0, 1, 0, 0) at f = 0 and (0, 0, 1, 0) at f = 1,
    exactly, so a node is met exactly.

    Multiplied by 1/6, not divided by 6: four divisions a point (two calls) were most of
    the premium lookup's time, the scalar divider taking 4 cycles each (18.5 cycles a point
    in all, 1 thread, Intel Xeon, 2026-12-08)."""
    fp, fm, fm2 = f + 1.0, f - 1.0, f - 2.0
    g = f * fm  # f (f - 1)
    h = fp * fm2  # (f + 1)(f - 2)
    return (-g * fm2 * _SIXTH, h * fm * 0.5, -h * f * 0.5, fp * g * _SIXTH)


_SIXTH = 1.0 / 6.0


@njit(cache=True, inline="always")
def _eep(b: int, m: float, j: int, fy: float, nv: int, scale: np.ndarray, h: float,
         m_first: np.ndarray, m_count: np.ndarray, offset: np.ndarray,
         values: np.ndarray, side: np.ndarray,
         row_offset: np.ndarray, boundary: np.ndarray) -> tuple[float, bool]:  # fmt: skip
    """Bucket b's premium at log-moneyness ``m`` in vol cell ``j`` (fraction ``fy``, ``nv``
    rows): (premium per unit strike, exercised). The boundary is cubic across rows; beyond
    it the option is exercised (its price is the intrinsic value, exactly); inside, the
    premium is bicubic in (asinh moneyness, ln σ) on nodes that continue the continuation
    region's premium smoothly across the boundary (:func:`_extend_rows`)."""
    w0, w1, w2, w3 = _cubic_weights(fy)
    r = row_offset[b] + j - 1
    if side[b] != 0.0:
        m_star = (w0 * boundary[r] + w1 * boundary[r + 1]) + (
            w2 * boundary[r + 2] + w3 * boundary[r + 3]
        )
        if side[b] * (m - m_star) <= 0.0:
            return 0.0, True
    i, fx = _cell(math.asinh(m / scale[b]) / h, m_first[b], m_count[b])
    a0, a1, a2, a3 = _cubic_weights(fx)
    g = offset[b] + (i - 1) * nv + j - 1
    # in the order of _premium_lookup, which the scenarios take
    c0, c1, c2, c3 = g, g + nv, g + 2 * nv, g + 3 * nv
    acc0 = (a0 * values[c0] + a1 * values[c1]) + (a2 * values[c2] + a3 * values[c3])
    acc1 = (a0 * values[c0 + 1] + a1 * values[c1 + 1]) + (a2 * values[c2 + 1] + a3 * values[c3 + 1])
    acc2 = (a0 * values[c0 + 2] + a1 * values[c1 + 2]) + (a2 * values[c2 + 2] + a3 * values[c3 + 2])
    acc3 = (a0 * values[c0 + 3] + a1 * values[c1 + 3]) + (a2 * values[c2 + 3] + a3 * values[c3 + 3])
    return (acc0 * w0 + acc1 * w1) + (acc2 * w2 + acc3 * w3), False


_SCENARIO_BLOCK = 256


# The premium lookup's reads, as LLVM IR of 4-double vectors: the bicubic's sixteen nodes
# are four runs of four adjacent doubles, and one run holds a boundary's four rows. LLVM
# cannot vectorise the lookup across points (every point reads its own place), and it read
# the runs one double at a time.
_V4 = ir.VectorType(ir.DoubleType(), 4)
_I64 = ir.IntType(64)


def _lanes(builder: Any, values: list[Any]) -> Any:
    """A <4 x double> of four scalars."""
    vec = ir.Constant(_V4, ir.Undefined)
    for k, v in enumerate(values):
        vec = builder.insert_element(vec, v, ir.Constant(ir.IntType(32), k))
    return vec


def _data(context: Any, builder: Any, array_type: Any, array: Any) -> Any:
    return context.make_array(array_type)(context, builder, array).data


def _run4(builder: Any, data: Any, index: Any) -> Any:
    """The four doubles from flat ``index`` on, as one (unaligned) vector load."""
    return builder.load(builder.bitcast(builder.gep(data, [index]), _V4.as_pointer()), align=8)


def _every4th(builder: Any, data: Any, index: Any, step: int) -> list[Any]:
    """The doubles at flat ``index + k · step``, k = 0..3."""
    out = []
    for _ in range(4):
        out.append(builder.load(builder.gep(data, [index]), align=8))
        index = builder.add(index, ir.Constant(_I64, step))
    return out


def _dot_lanes(builder: Any, vec: Any, w: Any) -> Any:
    """(v0 w0 + v1 w1) + (v2 w2 + v3 w3) of two <4 x double>, each operation rounded as
    written."""
    prod = builder.fmul(vec, w)
    e = [builder.extract_element(prod, ir.Constant(ir.IntType(32), k)) for k in range(4)]
    return builder.fadd(builder.fadd(e[0], e[1]), builder.fadd(e[2], e[3]))


def _flat_doubles(values: Any) -> bool:
    """Whether a Numba type is a contiguous 1-D float64 array (flat indices address it)."""
    return (
        isinstance(values, types.Array)
        and values.ndim == 1
        and values.layout == "C"
        and values.dtype == types.float64
    )


def _premium_lookup_impl(typingctx, values, node, stride, boundary, row, weights, t):  # type: ignore[no-untyped-def]
    """(Σ_i Σ_k a_i w_k values[node + i·stride + k], Σ_k w_k boundary[row + k]), i, k =
    0..3, with w_k = ``weights[k·B + t]`` and a_i = ``weights[(4 + i)·B + t]`` (B =
    :data:`_SCENARIO_BLOCK`): the premium's bicubic and the exercise boundary's cubic at
    point ``t`` of a block. The nodes are summed over i lane by lane, ((a0 r0 + a1 r1) +
    (a2 r2 + a3 r3)), then weighted over k as :func:`_dot_lanes`; every operation is rounded
    as written."""
    if not all(_flat_doubles(a) for a in (values, boundary, weights)):
        return None
    u8, f8 = types.uint64, types.float64
    sig = types.UniTuple(f8, 2)(values, u8, u8, boundary, u8, weights, u8)  # type: ignore[no-untyped-call]

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        values, boundary, weights = (
            _data(context, builder, signature.args[k], args[k]) for k in (0, 3, 5)
        )
        node, stride, row, t = args[1], args[2], args[4], args[6]
        block = _SCENARIO_BLOCK
        w = _lanes(builder, _every4th(builder, weights, t, block))
        a = _every4th(builder, weights, builder.add(t, ir.Constant(_I64, 4 * block)), block)
        terms = []
        for i in range(4):
            terms.append(builder.fmul(_lanes(builder, [a[i]] * 4), _run4(builder, values, node)))
            node = builder.add(node, stride)
        acc = builder.fadd(builder.fadd(terms[0], terms[1]), builder.fadd(terms[2], terms[3]))
        premium = _dot_lanes(builder, acc, w)
        m_star = _dot_lanes(builder, _run4(builder, boundary, row), w)
        return context.make_tuple(builder, signature.return_type, (premium, m_star))

    return sig, codegen


_premium_lookup: Any = intrinsic(_premium_lookup_impl)


@njit(cache=True, inline="always")
def _eep_block(n: int, b: int, ln_m: np.ndarray, cell_v: np.ndarray, frac_v: np.ndarray,
               cell_m: np.ndarray, frac_m: np.ndarray, v0: int, nv: int,
               m_first: np.ndarray, m_count: np.ndarray, offset: np.ndarray,
               values: np.ndarray, side: np.ndarray, row_offset: np.ndarray,
               boundary: np.ndarray, weights: np.ndarray, nodes: np.ndarray,
               m_star: np.ndarray, eep: np.ndarray, exercised: np.ndarray) -> None:  # fmt: skip
    """:func:`_eep` for points ``0..n-1`` of a block, from lattice coordinates already split
    into cell and fraction (``cell_v``, ``frac_v`` on the vol axis, ``cell_m``, ``frac_m`` on
    the moneyness axis; cells as floats), clamped at the lattice's ends as :func:`_cell`
    clamps; ``ln_m`` the points' log-moneyness. Writes the premium per unit strike into
    ``eep`` and whether the point is exercised into ``exercised``; ``weights`` (8 ×
    :data:`_SCENARIO_BLOCK`), ``nodes`` (uint64, 2 × :data:`_SCENARIO_BLOCK`) and
    ``m_star`` (the boundary's log-moneyness at each point) are scratch.

    Without a branch: every point reads its boundary and its 16 nodes, exercised or not (the
    clamps keep the reads inside the bucket), and the exercise test selects. The sums are
    taken in :func:`_eep`'s order (its cell coordinates are its own; inlined into the
    kernel, which allows contraction, either may fuse a multiply and an add).

    In three loops. The cells' weights and first nodes are computed for the whole block in
    SIMD registers; the reads, which LLVM cannot vectorise across points, are then a few
    vector loads a point (:func:`_premium_lookup`); the exercise test is vectorised again.
    In one scalar loop (before 2026-12-08) the weights' arithmetic, not the reads, had
    cost most of the time: without its reads that loop vectorised and ran 4.6 times
    faster. Split so, the kernel took 0.274 s against 0.351 s (quick margin book, 5,000
    option rows × 10,000 scenarios, 2 threads, Intel Xeon), the P&L the same to the bit."""
    sd = side[b]
    first, ro, off = m_first[b], row_offset[b], offset[b]
    j_hi = float(nv - 3)
    i_hi = float(m_count[b] - 3)
    unv = np.uint64(nv)
    bk = _SCENARIO_BLOCK
    for t in range(n):
        jr = cell_v[t] - v0
        fy = 0.0 if jr < 1.0 else (1.0 if jr > j_hi else frac_v[t])
        j = np.uint64(min(max(jr, 1.0), j_hi))
        ir = cell_m[t] - first
        fx = 0.0 if ir < 1.0 else (1.0 if ir > i_hi else frac_m[t])
        i = np.uint64(min(max(ir, 1.0), i_hi))
        w0, w1, w2, w3 = _cubic_weights(fy)
        a0, a1, a2, a3 = _cubic_weights(fx)
        weights[t], weights[bk + t], weights[2 * bk + t], weights[3 * bk + t] = w0, w1, w2, w3
        weights[4 * bk + t], weights[5 * bk + t] = a0, a1
        weights[6 * bk + t], weights[7 * bk + t] = a2, a3
        nodes[t] = np.uint64(ro) + j - np.uint64(1)
        nodes[bk + t] = np.uint64(off) + (i - np.uint64(1)) * unv + j - np.uint64(1)
    for t in range(n):
        eep[t], m_star[t] = _premium_lookup(
            values, nodes[bk + t], unv, boundary, nodes[t], weights, np.uint64(t)
        )
    for t in range(n):
        ex = (sd != 0.0) & (sd * (ln_m[t] - m_star[t]) <= 0.0)
        eep[t] = 0.0 if ex else eep[t]
        exercised[t] = ex


# error_model="numpy": no ZeroDivisionError checks, so LLVM can vectorise the scenario
# loops (with the vectorisable normal CDF: ~3× faster than math.erfc per price).
@njit(cache=True, parallel=True, error_model="numpy", fastmath={"contract"})
def _revalue_kernel(
    rows: np.ndarray,
    out_pos: np.ndarray,
    group_starts: np.ndarray,
    und: np.ndarray,
    kind: np.ndarray,
    strike: np.ndarray,
    expiry: np.ndarray,
    mult: np.ndarray,
    bucket: np.ndarray,
    spot: np.ndarray,
    atm_vol: np.ndarray,
    skew: np.ndarray,
    div: np.ndarray,
    rate: np.ndarray,
    spot_shock: np.ndarray,
    vol_shock: np.ndarray,
    vol_floor: float,
    scale: np.ndarray,
    m_step: float,
    m_first: np.ndarray,
    m_count: np.ndarray,
    offset: np.ndarray,
    lv_step: float,
    v_first: np.ndarray,
    v_count: np.ndarray,
    grid: np.ndarray,
    side: np.ndarray,
    row_offset: np.ndarray,
    boundary: np.ndarray,
    out: np.ndarray,
    holes: np.ndarray,
) -> None:
    n_s = spot_shock.shape[1]
    inv_lv, inv_h = np.float32(1.0 / lv_step), np.float32(1.0 / m_step)
    for g in prange(group_starts.shape[0] - 1):
        lo, hi = group_starts[g], group_starts[g + 1]
        u = und[rows[lo]]
        s0 = spot[u]
        ln_s0 = math.log(s0)
        s_new = np.empty(n_s)
        ln_new = np.empty(n_s)
        vm = np.empty(n_s)
        price = np.empty(n_s)
        n1 = np.empty(n_s, dtype=np.float32)
        n2 = np.empty(n_s, dtype=np.float32)
        cell_v = np.empty(_SCENARIO_BLOCK, dtype=np.float32)
        frac_v = np.empty(_SCENARIO_BLOCK, dtype=np.float32)
        cell_m = np.empty(_SCENARIO_BLOCK, dtype=np.float32)
        frac_m = np.empty(_SCENARIO_BLOCK, dtype=np.float32)
        ln_m = np.empty(_SCENARIO_BLOCK)
        eep = np.empty(_SCENARIO_BLOCK)
        exercised = np.empty(_SCENARIO_BLOCK, dtype=np.bool_)
        weights = np.empty(8 * _SCENARIO_BLOCK)
        x32 = np.empty(_SCENARIO_BLOCK, dtype=np.float32)
        m_star = np.empty(_SCENARIO_BLOCK)
        vol32 = np.empty(_SCENARIO_BLOCK, dtype=np.float32)
        nodes = np.empty(2 * _SCENARIO_BLOCK, dtype=np.uint64)
        for s in range(n_s):
            shock = np.float64(spot_shock[u, s])
            s_new[s] = s0 * (1.0 + shock)
            ln_new[s] = ln_s0 + math.log1p(shock)
            vm[s] = 1.0 + np.float64(vol_shock[u, s])
        r, q = rate[u], div[u]
        atm, slope = atm_vol[u], skew[u]
        for k in range(lo, hi):
            i = rows[k]
            row = out[out_pos[k]]
            m = mult[i]
            if kind[i] == 0:
                for s in range(n_s):
                    row[s] = (s_new[s] - s0) * m
                continue
            sign = 1.0 if kind[i] == 1 else -1.0  # call: +1, put: -1
            kk = strike[i]
            t = expiry[i]
            if t <= 0.0:  # expiring now: intrinsic value
                p0 = max(sign * (s0 - kk), 0.0)
                for s in range(n_s):
                    row[s] = (max(sign * (s_new[s] - kk), 0.0) - p0) * m
                continue
            ln_k = math.log(kk)
            sqrt_t = math.sqrt(t)
            carry_t = (r - q) * t
            df_q = math.exp(-q * t)
            k_df = kk * math.exp(-r * t)
            b = bucket[i]
            # BSM: sign · (S e^{-qT} N(sign d1) - K e^{-rT} N(sign d2)); vol from the smile.
            # N(d) in float32 (pricing.single: a P&L within 1.2e-4 per unit at spot 100,
            # 8 times inside its tolerance), d in float64; today's price as the scenarios'.
            x0 = ln_s0 - ln_k
            sd0 = max(vol_floor, atm - slope * x0) * sqrt_t
            d10 = (x0 + carry_t) / sd0 + 0.5 * sd0
            n10 = ncdf32(np.float32(sign * d10))
            n20 = ncdf32(np.float32(sign * (d10 - sd0)))
            p0 = sign * (s0 * df_q * n10 - k_df * n20)
            # Set on every path: a variable set in one branch of a prange body and read in
            # another was read as garbage by Numba's parallel lowering (NaN premiums).
            v0, nv = v_first[max(b, 0)], v_count[max(b, 0)]
            if b >= 0:
                j0, fy0 = _cell(math.log(sd0 / sqrt_t) / lv_step, v0, nv)
                e0, ex0 = _eep(
                    b, x0, j0, fy0, nv, scale, m_step, m_first, m_count, offset,
                    grid, side, row_offset, boundary,
                )  # fmt: skip
                i0 = max(sign * (s0 - kk), 0.0)
                p0 = i0 if ex0 else max(p0 + kk * e0, i0)
            for s in range(n_s):
                x = ln_new[s] - ln_k
                sd = vm[s] * max(vol_floor, atm - slope * x) * sqrt_t
                d1 = (x + carry_t) / sd + 0.5 * sd
                n1[s] = np.float32(sign * d1)
                n2[s] = np.float32(sign * (d1 - sd))
            for s in range(n_s):  # float32 alone: twice the lanes a register
                n1[s] = ncdf32(n1[s])
                n2[s] = ncdf32(n2[s])
            for s in range(n_s):
                price[s] = sign * (s_new[s] * df_q * n1[s] - k_df * n2[s])
            if b >= 0:
                # The premium grid's axes are the option's own scenario vol (ln σ) and asinh
                # moneyness: their lattice coordinates in one SIMD pass per block of
                # scenarios, the bicubics in _eep_block (branch-free).
                # In float32 (pricing.single.log32: twice the lanes a register), from the
                # float64 log-moneyness, which the exercise test keeps; multiplied by
                # reciprocals, not divided (a division does not pipeline). A coordinate is
                # then within 3.1e-5 of a cell of its float64 value, inside the pad
                # _needed_nodes marks around every cell (_COORD_PAD).
                inv_c = np.float32(1.0 / scale[b])
                for lo_s in range(0, n_s, _SCENARIO_BLOCK):
                    n = min(n_s, lo_s + _SCENARIO_BLOCK) - lo_s
                    for t_ in range(n):
                        xs = ln_new[lo_s + t_] - ln_k
                        ln_m[t_] = xs
                        x32[t_] = np.float32(xs)
                        vol32[t_] = np.float32(vm[lo_s + t_] * max(vol_floor, atm - slope * xs))
                    for t_ in range(n):
                        yv = log32(vol32[t_]) * inv_lv
                        z = abs(x32[t_]) * inv_c
                        ym = log32(z + np.sqrt(z * z + np.float32(1.0))) * inv_h
                        ym = ym if x32[t_] >= np.float32(0.0) else -ym
                        yv_lo = np.floor(yv)
                        ym_lo = np.floor(ym)
                        cell_v[t_] = yv_lo
                        frac_v[t_] = yv - yv_lo
                        cell_m[t_] = ym_lo
                        frac_m[t_] = ym - ym_lo
                    _eep_block(
                        n, b, ln_m, cell_v, frac_v, cell_m, frac_m, v0, nv, m_first, m_count,
                        offset, grid, side, row_offset, boundary, weights, nodes, m_star, eep,
                        exercised,
                    )  # fmt: skip
                    hole = False
                    for t_ in range(n):
                        s = lo_s + t_
                        e, ex = eep[t_], exercised[t_]
                        hole |= e != e  # a node the cubic read was never priced
                        intrinsic = max(sign * (s_new[s] - kk), 0.0)
                        price[s] = intrinsic if ex else max(price[s] + kk * e, intrinsic)
                    if hole:
                        holes[g] = 1
            for s in range(n_s):
                # A scenario that moves nothing has a P&L of exactly zero. The scalar p0 and
                # the vectorised scenario loop may round differently (FMA contraction) by
                # ~1e-16 of the price, so equal inputs are tested, not equal outputs.
                unmoved = ln_new[s] == ln_s0 and vm[s] == 1.0
                row[s] = 0.0 if unmoved else (price[s] - p0) * m
