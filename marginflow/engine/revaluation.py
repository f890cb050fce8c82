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

* axes: log-moneyness ``m = ln(S'/K)`` and the log of the scenario's vol multiplier
  ``ln vm``, ``vm = 1 + vol_shock``. The smile depends on m alone, so vol' = vm · smile(m)
  and one grid serves every strike of the bucket; prices are homogeneous of degree one in
  (S, K), so the grid is per unit strike;
* nodes on a **fixed lattice**: ``m = c · sinh(i · h)`` with ``c`` three times the bucket's
  ATM total vol σ√T (at least 0.005) and ``h`` = ``eep_moneyness_step`` (steps of about h · c
  near the strike, growing with |m| in the far tails), and ``ln vm = j · eep_log_vol_step``;
  the scenarios only decide how far the lattice extends. A scenario's premium is then a
  function of its own shocks alone: adding scenarios to a set (the APC floor's 10-year
  windows, say) adds nodes but moves none, so the P&L of the scenarios already there does
  not change by a bit;
* the **exercise boundary** of every vol row, ``m*`` (the root of m = ln(S*/K) at the
  smile's vol at m, :func:`_boundaries`, from the pricer's own boundary
  :func:`marginflow.pricing.american.exercise_log_moneyness`): a scenario beyond it (m* cubic
  across rows) is exercised and priced at its intrinsic value, exactly. The American price is
  only C1 at the boundary (the premium's curvature jumps), which capped any interpolation
  across it at the step squared (the old bilinear grid's worst errors sat there). Nodes
  beyond a row's boundary are not priced; they carry the continuation region's premium
  extended smoothly across it (the cubic through the boundary's value and slope, known by
  smooth pasting, and the first two nodes inside; :func:`_extend_rows`), so continuation
  points near the boundary interpolate one smooth function;
* interpolation: the cubic through four nodes in each axis (Lagrange, exact for cubics: the
  error falls as the step to the fourth power); today's price uses the same grid (vm = 1 is
  a row), so a zero shock is a zero P&L; the price is floored at the intrinsic value;
* calls without dividends (early exercise never optimal) carry no premium and no grid;
* **grids survive a price move** (:class:`GridCache`): a bucket's lattice scale and node
  values depend on its call/put, expiry, rate, dividend yield, ATM vol and skew and on the
  settings (steps, vol floor), not on the spot (nodes are in log-moneyness) nor on the
  scenarios (they only decide how far the lattice runs). Grids are kept per bucket keyed by
  exactly those inputs, by value: a spot move reuses a bucket's grid as it is, or extends
  it by the lattice nodes (and vol rows, for a scenario set reaching further) it lacks,
  pricing only those; the lattice grows a few nodes beyond the ask so the next small move
  finds them. A vol move rebuilds: the vol axis is a multiplier of the smile, so a new ATM
  vol or skew gives every node a new vol (vm · (atm - skew · m)) and the moneyness lattice
  a new scale (3 · atm · √T); nothing of the old grid is a node of the new one. So do
  rate, dividend and expiry changes (a roll). The old grid stays in the cache (a market
  returning to the same inputs finds it) until the least recently used are dropped beyond
  a node budget. The incremental engine owns one cache for its full and incremental
  revaluations; a call without one builds its grids for itself.

Measured against QuantLib's ``QdFpAmericanEngine`` (high-precision scheme) at every
scenario's market (``benchmarks/revaluation_accuracy.py``, ``tests/engine/
test_american_accuracy.py``): on the quick margin benchmark's book under its Student-t Monte
Carlo set, every scenario P&L within 1e-3 per unit of underlying at spot 100 (figures in
``benchmarks/README.md``), the pricing core's own bound. The bilinear grid this replaced
(h = 0.06 in asinh moneyness, 0.07 in ln vm) was off by up to 2.5e-2 there. Known limit:
where the linear smile reaches ``vol_floor`` the premium has a kink the lattice does not
see; the error there can exceed the bound (``vol_floor`` is reached at ``m = -(atm - floor)
/ skew``, beyond -0.75 for ATM vols above 20% and skews down to -0.25).

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
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray, OptionBatch
from marginflow.core.book import InstrumentKind, Instruments, Market
from marginflow.core.errors import ValidationError
from marginflow.core.limits import MONEYNESS_MAX
from marginflow.pricing.american import _fast_ncdf as fast_ncdf  # vectorisable N(x), 3e-13
from marginflow.pricing.american import american_price, exercise_log_moneyness
from marginflow.pricing.black_scholes import european_price
from marginflow.pricing.greeks import greeks

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
    """Premium grid step in the log of the scenario's vol multiplier."""
    vol_floor: float = 0.01

    def __post_init__(self) -> None:
        revaluation_method(self.method)
        for name in ("eep_moneyness_step", "eep_log_vol_step"):
            step = getattr(self, name)
            if not (math.isfinite(step) and 0.0 < step <= 1.0):
                raise ValidationError(name, f"must be in (0, 1], got {step!r}")
        if not self.vol_floor > 0:
            raise ValidationError("vol_floor", f"must be > 0, got {self.vol_floor!r}")


@dataclass(frozen=True, slots=True)
class EepGrids:
    """Early-exercise premium per unit strike on B bucket grids, on fixed lattices.

    Bucket ``b`` has ``m_count[b]`` moneyness nodes ``m = scale[b] · sinh((m_first[b] + i) ·
    m_step)`` and, for its underlying ``u``, ``v_count[u]`` vol rows ``ln vm = (v_first[u] +
    j) · lv_step``; its values are ``values[offset[b] + i · v_count[u] + j]`` (ragged,
    flattened). Row ``j``'s exercise boundary is at log-moneyness ``boundary[row_offset[b] +
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
    given, receives the seconds spent on the premium grids and on the revaluation kernel.
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
    cache = GridCache(margin_nodes=0) if cache is None else cache  # this call's alone
    bucket, grids = (
        _eep_buckets(instruments, market, spot_shock, vol_shock, sorted_rows, settings, cache)
        if use_grid
        else (np.full(len(instruments), -1, np.int32), EepGrids.empty())
    )
    t1 = time.perf_counter()
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
    )
    if not use_grid:
        _exact_american(instruments, market, spot_shock, vol_shock, rows, settings, out)
    if timings is not None:
        timings["eep_grid"] = timings.get("eep_grid", 0.0) + t1 - t0
        timings["kernel"] = timings.get("kernel", 0.0) + time.perf_counter() - t1
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
    """Assign American options of ``rows`` to (underlying, expiry, call/put) buckets and price
    each bucket's premium grid (from ``cache``, extended or built with the pricing core).

    A bucket's range covers every strike the whole instrument table has in it, so its grid
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
    n_b = uniq.shape[0]

    ln_s = np.log(market.spot[b_u])
    shock_lo = np.minimum(spot_shock[b_u].min(axis=1), 0.0).astype(np.float64)
    shock_hi = np.maximum(spot_shock[b_u].max(axis=1), 0.0).astype(np.float64)
    m_lo = ln_s + np.log1p(shock_lo) - k_hi
    m_hi = ln_s + np.log1p(shock_hi) - k_lo
    h, lv = settings.eep_moneyness_step, settings.eep_log_vol_step
    v_first, v_count = _vol_lattice(vol_shock, lv, np.unique(b_u))
    # The lattice step comes from the bucket and today's market alone (the premium varies on
    # the scale of the total vol σ√T); the scenarios only decide how far the lattice runs.
    scale = np.maximum(_SCALE_TOTAL_VOLS * market.atm_vol[b_u] * np.sqrt(b_t), _MIN_SCALE)
    m_first = np.floor(np.arcsinh(m_lo / scale) / h).astype(np.int64) - 1
    m_last = np.floor(np.arcsinh(m_hi / scale) / h).astype(np.int64) + 2
    m_count = m_last - m_first + 1
    nv_b = v_count[b_u]
    j_first = v_first[b_u]
    inputs = _BucketInputs(
        call=b_call, t=b_t, r=market.rate[b_u], q=market.dividend_yield[b_u],
        atm=market.atm_vol[b_u], skew=market.skew[b_u], scale=scale,
    )  # fmt: skip
    have = _ensure_grids(
        cache, inputs.keys(settings), inputs, m_first, m_count, j_first, nv_b, settings
    )
    # The grids of exactly the lattice this call asks for, cut out of the cached ones (each
    # node's value is its own: cutting leaves the bits as a build of this range gives them).
    per_bucket = m_count * nv_b
    offset = np.concatenate([[0], np.cumsum(per_bucket)[:-1]]).astype(np.int64)
    row_offset = np.concatenate([[0], np.cumsum(nv_b)[:-1]]).astype(np.int64)
    values, bd, side = [], [], np.empty(n_b)
    for b, g in enumerate(have):
        i = int(m_first[b]) - g.i0
        j = int(j_first[b]) - g.j0
        values.append(g.values[i : i + int(m_count[b]), j : j + int(nv_b[b])].ravel())
        bd.append(g.boundary[j : j + int(nv_b[b])])
        side[b] = g.side
    grids = EepGrids(
        scale, h, m_first, m_count, offset, lv, v_first, v_count, np.concatenate(values),
        side, row_offset, np.concatenate(bd),
    )  # fmt: skip
    return bucket, grids


@dataclass(frozen=True, slots=True)
class _BucketInputs:
    """Everything a bucket's premium grid depends on, per bucket (arrays of length B): the
    option (call/put, expiry in years), its underlying's rate, dividend yield, ATM vol and
    skew, and the lattice scale (a function of ATM vol and expiry)."""

    call: NDArray[np.bool_]
    t: FloatArray
    r: FloatArray
    q: FloatArray
    atm: FloatArray
    skew: FloatArray
    scale: FloatArray

    def keys(self, settings: RevaluationSettings) -> list[GridKey]:
        """The cache key of every bucket: its inputs by value (never the underlying's
        identity or spot), with the settings that shape a grid."""
        extra = (settings.eep_moneyness_step, settings.eep_log_vol_step, settings.vol_floor)
        return [
            (c, t, r, q, a, s, *extra)
            for c, t, r, q, a, s in zip(
                self.call.tolist(), self.t.tolist(), self.r.tolist(), self.q.tolist(),
                self.atm.tolist(), self.skew.tolist(), strict=True,
            )
        ]  # fmt: skip

    def take(self, idx: IndexArray) -> _BucketInputs:
        return _BucketInputs(*(getattr(self, f)[idx] for f in self.__slots__))


GridKey = tuple[bool, float, float, float, float, float, float, float, float]
"""(call, expiry years, rate, dividend yield, ATM vol, skew, moneyness step, log-vol step,
vol floor): exactly what a bucket's premium grid depends on."""


@dataclass(frozen=True, slots=True)
class BucketGrid:
    """One bucket's premium grid on the lattice rectangle starting at moneyness node ``i0``
    and vol row ``j0``: ``values[i, j]`` (per unit strike) at ``m = scale · sinh((i0 + i) ·
    h)``, ``ln vm = (j0 + j) · lv``. Per vol row: the exercise boundary as solved
    (``raw_boundary``, NaN where the row has none), and what :func:`_extend_rows` needs to
    continue the premium across it on nodes added later (``f_star``, ``slope``, ``pts_d``,
    ``pts_f``). ``side`` is +1 (put) / -1 (call), 0 when a row of the rectangle has no
    single boundary (then every node is priced and ``boundary`` is 0)."""

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
    def boundary(self) -> FloatArray:
        return np.zeros_like(self.raw_boundary) if self.side == 0.0 else self.raw_boundary

    @property
    def nodes(self) -> int:
        return int(self.values.size)


class GridCache:
    """Premium grids kept between revaluations, per bucket, keyed by exactly the inputs
    they depend on (:data:`GridKey`, by value): a spot move reuses a bucket's grid as it is
    (its nodes are in log-moneyness, so only how far the lattice runs depends on the spot),
    or extends it by the lattice nodes and vol rows it lacks; any change of a key's input
    (ATM vol, skew, rate, dividend, expiry) is a different key and a new grid. Least
    recently used grids are dropped beyond ``max_nodes`` nodes (8 bytes each, plus a few
    per vol row), so grids of expired or delisted series, or of a market long gone, age
    out. A grid holds no reference to a market or book: a stale one can only be found by
    the exact inputs it was built for, and it is right for them.

    Where a moneyness lattice grows it grows ``margin_nodes`` further than asked, so that the
    next small spot move finds its nodes built (a 1% move shifts ln(S/K) by 0.01, about a
    node near the strike of a bucket with σ√T = 0.15)."""

    def __init__(self, max_nodes: int = 40_000_000, margin_nodes: int = 3) -> None:
        if max_nodes < 0 or margin_nodes < 0:
            raise ValidationError(
                "max_nodes", f"must be >= 0, got {max_nodes!r} / {margin_nodes!r}"
            )
        self.max_nodes = max_nodes
        self.margin_nodes = margin_nodes
        self._grids: OrderedDict[GridKey, BucketGrid] = OrderedDict()
        self._nodes = 0
        self.hits = 0
        self.extended = 0
        self.built = 0

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
        old = self._grids.pop(key, None)
        if old is not None:
            self._nodes -= old.nodes
        self._grids[key] = grid
        self._nodes += grid.nodes
        while self._nodes > self.max_nodes and len(self._grids) > 1:
            _, dropped = self._grids.popitem(last=False)
            self._nodes -= dropped.nodes

    def clear(self) -> None:
        self._grids.clear()
        self._nodes = 0


_LN_MONEYNESS = math.log(MONEYNESS_MAX) - 1e-9
"""Largest |ln(S/K)| a premium node is priced at (inside the pricer's range)."""


def _ensure_grids(
    cache: GridCache,
    keys: list[GridKey],
    inputs: _BucketInputs,
    m_first: NDArray[np.int64],
    m_count: NDArray[np.int64],
    j_first: NDArray[np.int64],
    j_count: NDArray[np.int64],
    settings: RevaluationSettings,
) -> list[BucketGrid]:
    """Each bucket's grid covering its requested lattice rectangle (moneyness nodes
    ``m_first .. + m_count``, vol rows ``j_first .. + j_count``), from the cache where it
    holds one, extended by the missing nodes only, or built; the cache is updated.

    A node's value depends on its bucket's inputs, its lattice point and the bucket's side
    alone (the pricer prices every option on its own inputs: the batch around it changes
    no bit), so a grid extended by any sequence of moves equals, node for node, one built
    in one go. The side is the one exception: a rectangle with a vol row without a single
    boundary prices all its nodes (side 0). A cached grid is therefore extended only where
    its side, the extended rectangle's and the requested one's agree; otherwise the
    requested rectangle is built afresh (in practice: never, with positive rates)."""
    n_b = len(keys)
    h, lv = settings.eep_moneyness_step, settings.eep_log_vol_step
    have: list[BucketGrid | None] = [cache.get(k) for k in keys]
    req = np.column_stack([m_first, m_first + m_count - 1, j_first, j_first + j_count - 1])
    old = np.zeros((n_b, 4), dtype=np.int64)
    old[:, 1] = old[:, 3] = -1  # an empty rectangle
    for b, g in enumerate(have):
        if g is not None:
            n_i, n_j = g.values.shape
            old[b] = (g.i0, g.i0 + n_i - 1, g.j0, g.j0 + n_j - 1)
    cached = old[:, 1] >= old[:, 0]
    hull = req.copy()
    hull[cached, 0::2] = np.minimum(req[cached, 0::2], old[cached, 0::2])
    hull[cached, 1::2] = np.maximum(req[cached, 1::2], old[cached, 1::2])
    covered = cached & (hull == old).all(axis=1)
    todo = np.flatnonzero(~covered)
    # Where the moneyness lattice must grow, it grows a few nodes further than asked, so the
    # next small spot move finds them built.
    grow_lo = ~covered & (~cached | (req[:, 0] < old[:, 0]))
    grow_hi = ~covered & (~cached | (req[:, 1] > old[:, 1]))
    hull[grow_lo, 0] -= cache.margin_nodes
    hull[grow_hi, 1] += cache.margin_nodes
    # Boundaries of the vol rows the cached grids lack (all rows of a new grid).
    rows_b, rows_j = _rect_rows(hull[todo], old[todo])
    raw_new = _boundaries(
        inputs.call[todo][rows_b], inputs.t[todo][rows_b], inputs.r[todo][rows_b],
        inputs.q[todo][rows_b], inputs.atm[todo][rows_b], inputs.skew[todo][rows_b],
        np.exp(rows_j * lv), settings.vol_floor,
    )  # fmt: skip
    raw_hull = np.split(raw_new, np.cumsum(np.bincount(rows_b, minlength=todo.size))[:-1])
    for k, b in enumerate(todo.tolist()):
        g = have[b]
        lo = hull[b, 2]
        if g is not None:  # the hull's rows: the cached ones and the new ones around them
            n_lo = g.j0 - lo
            raw_hull[k] = np.concatenate([raw_hull[k][:n_lo], g.raw_boundary, raw_hull[k][n_lo:]])
    # Reuse (as it is or extended) only where the sides agree; otherwise build afresh.
    for k, b in enumerate(todo.tolist()):
        g = have[b]
        if g is None:
            continue
        req_raw = raw_hull[k][req[b, 2] - hull[b, 2] : req[b, 3] - hull[b, 2] + 1]
        bad_old = not np.isfinite(g.raw_boundary).all()
        if not (
            bad_old == (not np.isfinite(raw_hull[k]).all()) == (not np.isfinite(req_raw).all())
        ):
            have[b] = None
            hull[b] = req[b]
            old[b] = (0, -1, 0, -1)
            raw_hull[k] = req_raw
    for b in np.flatnonzero(covered).tolist():
        g = have[b]
        assert g is not None
        lo = req[b, 2] - g.j0
        req_raw = g.raw_boundary[lo : lo + int(j_count[b])]
        if (g.side == 0.0) != (not np.isfinite(req_raw).all()):
            # the rare side mismatch: build the requested rectangle afresh (below)
            have[b] = None
            hull[b] = req[b]
            old[b] = (0, -1, 0, -1)
            todo = np.append(todo, b)
            raw_hull.append(req_raw)
    cache.hits += n_b - todo.size
    if todo.size:
        built = _build_grids(
            inputs.take(todo), hull[todo], old[todo], [have[b] for b in todo.tolist()],
            raw_hull, h, lv, settings.vol_floor,
        )  # fmt: skip
        for b, g in zip(todo.tolist(), built, strict=True):
            cache.extended += have[b] is not None
            cache.built += have[b] is None
            have[b] = g
            cache.put(keys[b], g)
    return [g for g in have if g is not None]


def _rect_rows(
    hull: NDArray[np.int64], old: NDArray[np.int64]
) -> tuple[IndexArray, NDArray[np.int64]]:
    """The vol rows (bucket position, row index j) of each ``hull`` rectangle outside the
    ``old`` one's rows, bucket-major, ascending."""
    n_j = hull[:, 3] - hull[:, 2] + 1
    rb = np.repeat(np.arange(hull.shape[0]), n_j)
    j = hull[rb, 2] + np.arange(int(n_j.sum())) - np.repeat(np.cumsum(n_j) - n_j, n_j)
    new = (j < old[rb, 2]) | (j > old[rb, 3])
    return rb[new].astype(np.intp), j[new]


def _build_grids(
    inputs: _BucketInputs,
    hull: NDArray[np.int64],
    old: NDArray[np.int64],
    have: list[BucketGrid | None],
    raw: list[FloatArray],
    h: float,
    lv: float,
    vol_floor: float,
) -> list[BucketGrid]:
    """Grids on rectangles ``hull`` (rows: i first, i last, j first, j last), each pricing
    only the nodes and vol rows outside its ``old`` rectangle (taken from ``have``); ``raw``
    holds every hull row's solved boundary. All the new nodes (and the boundary extensions'
    points of the new rows) are priced in one batch."""
    n_b = hull.shape[0]
    n_i = hull[:, 1] - hull[:, 0] + 1
    n_j = hull[:, 3] - hull[:, 2] + 1
    raw_all = np.concatenate(raw)
    row_offset = np.concatenate([[0], np.cumsum(n_j)[:-1]]).astype(np.int64)
    r_idx = np.repeat(np.arange(n_b), n_j)
    r_j = hull[r_idx, 2] + np.arange(r_idx.size) - row_offset[r_idx]
    r_vm = np.exp(r_j * lv)
    bad = np.zeros(n_b, dtype=np.bool_)
    np.logical_or.at(bad, r_idx, ~np.isfinite(raw_all))
    side = np.where(bad, 0.0, np.where(inputs.call, -1.0, 1.0))
    bd = np.where(bad[r_idx], 0.0, raw_all)
    scale = inputs.scale
    per_bucket = n_i * n_j
    offset = np.concatenate([[0], np.cumsum(per_bucket)[:-1]]).astype(np.int64)
    # One entry per node: bucket, moneyness node, vol row (bucket-major, then m, then vm).
    b_idx = np.repeat(np.arange(n_b), per_bucket)
    local = np.arange(int(per_bucket.sum())) - offset[b_idx]
    nv = n_j[b_idx]
    i_node = hull[b_idx, 0] + local // nv
    j_node = hull[b_idx, 2] + local % nv
    row = row_offset[b_idx] + local % nv
    fresh = (i_node < old[b_idx, 0]) | (i_node > old[b_idx, 1])
    fresh |= (j_node < old[b_idx, 2]) | (j_node > old[b_idx, 3])
    m = scale[b_idx] * np.sinh(i_node * h)
    # The extension's two continuation nodes of every new row (_extend_rows), priced
    # whether or not the lattice reaches them, so that it does not depend on how far the
    # scenarios stretched the lattice.
    new_row = (r_j < old[r_idx, 2]) | (r_j > old[r_idx, 3])
    nr = np.flatnonzero(new_row & (side[r_idx] != 0.0))
    r_side, c_r, bd_n = side[r_idx[nr]], scale[r_idx[nr]], bd[nr]
    y_star = np.arcsinh(bd_n / c_r) / h
    start = np.where(r_side > 0, np.floor(y_star), np.ceil(y_star))
    cand = start[:, None] + r_side[:, None] * np.arange(4)[None, :]
    cand_m = c_r[:, None] * np.sinh(cand * h)
    dist = r_side[:, None] * (cand_m - bd_n[:, None])
    ok = dist >= 0.5 * h * c_r[:, None] * np.cosh(cand * h)
    two = np.argmax(ok, axis=1)[:, None] + np.arange(2)[None, :]  # ok stays true outwards
    pts_m = np.take_along_axis(cand_m, two, axis=1).ravel()
    pts_row = np.repeat(nr, 2)
    # Nodes beyond their row's boundary are not priced: _extend_rows fills them. The new
    # lattice nodes and the extensions' points are priced in one batch.
    pick = np.flatnonzero(fresh & ((side[b_idx] == 0.0) | (side[b_idx] * (m - bd[row]) > 0.0)))
    p_bucket = np.concatenate([b_idx[pick], r_idx[pts_row]])
    # A long expiry (a market dated decades before its series) stretches the lattice past
    # the spot/strike range the pricer resolves; such a node takes the premium at the edge
    # of that range, where a put or call is already worthless or exercised.
    p_m = np.clip(np.concatenate([m[pick], pts_m]), -_LN_MONEYNESS, _LN_MONEYNESS)
    batch = OptionBatch.of(
        is_call=inputs.call[p_bucket],
        is_american=True,
        spot=np.exp(p_m),
        strike=1.0,
        expiry_years=inputs.t[p_bucket],
        rate=inputs.r[p_bucket],
        dividend_yield=inputs.q[p_bucket],
        vol=_smile_vols(
            inputs.atm[p_bucket], inputs.skew[p_bucket],
            np.concatenate([r_vm[row[pick]], r_vm[pts_row]]), p_m, vol_floor,
        ),
    )  # fmt: skip
    premium = np.maximum(price_american(batch) - european_price(batch), 0.0)
    eep = np.zeros(m.size)
    eep[pick] = premium[: pick.size]
    f0, s0 = np.zeros(r_idx.size), np.zeros(r_idx.size)
    pts_d, pts_f = np.zeros((r_idx.size, 2)), np.zeros((r_idx.size, 2))
    pts_d[nr] = np.take_along_axis(dist, two, axis=1)
    pts_f[nr] = premium[pick.size :].reshape(-1, 2)
    rb = r_idx[nr]
    f0[nr], s0[nr] = _boundary_premium(
        inputs.call[rb], inputs.t[rb], inputs.r[rb], inputs.q[rb], inputs.atm[rb],
        inputs.skew[rb], r_vm[nr], bd_n, vol_floor,
    )  # fmt: skip
    # The cached part: its nodes and its rows' extension data, as they were.
    for b, g in enumerate(have):
        if g is None:
            continue
        block = eep[offset[b] : offset[b] + per_bucket[b]].reshape(int(n_i[b]), int(n_j[b]))
        i, j = g.i0 - hull[b, 0], g.j0 - hull[b, 2]
        gi, gj = g.values.shape
        block[i : i + gi, j : j + gj] = g.values
        rows = slice(row_offset[b] + j, row_offset[b] + j + gj)
        f0[rows], s0[rows], pts_d[rows], pts_f[rows] = g.f_star, g.slope, g.pts_d, g.pts_f
    # Rewrites the cached nodes beyond the boundary too, with the values they hold (the
    # same function of the same row data).
    i_first = np.ascontiguousarray(hull[:, 0])
    _extend_rows(eep, r_idx, row_offset, offset, i_first, n_i, n_j, scale, h, side, bd,
                 f0, s0, pts_d, pts_f)  # fmt: skip
    out = []
    for b in range(n_b):
        rows = slice(row_offset[b], row_offset[b] + n_j[b])
        out.append(
            BucketGrid(
                i0=int(hull[b, 0]),
                j0=int(hull[b, 2]),
                values=eep[offset[b] : offset[b] + per_bucket[b]].reshape(int(n_i[b]), -1).copy(),
                raw_boundary=raw_all[rows].copy(),
                side=float(side[b]),
                f_star=f0[rows].copy(),
                slope=s0[rows].copy(),
                pts_d=pts_d[rows].copy(),
                pts_f=pts_f[rows].copy(),
            )
        )
    return out


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
) -> None:
    """Fill, in place, each row's premium at the nodes beyond its exercise boundary with
    the continuation region's premium extended smoothly across it.

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
        if sd == 0.0:
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


def _smile_vols(
    atm: FloatArray, skew: FloatArray, vm: FloatArray, m: FloatArray, vol_floor: float
) -> FloatArray:
    """vm · smile(m), the vol at log-moneyness m = ln(S/K) of a vol row."""
    return vm * np.maximum(vol_floor, atm - skew * m)


def _boundaries(
    call: NDArray[np.bool_],
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    atm: FloatArray,
    skew: FloatArray,
    vm: FloatArray,
    vol_floor: float,
) -> FloatArray:
    """Log-moneyness m* of the exercise boundary on the smile: the root of m = ln(S*/K)
    at the vol the smile gives at m (a fixed point of the pricer's boundary), by secant
    steps from the ATM vol's boundary. NaN without a single boundary. Each entry depends on
    its own inputs alone."""

    def boundary_at(rows: IndexArray, m: FloatArray) -> FloatArray:
        vol = _smile_vols(atm[rows], skew[rows], vm[rows], m, vol_floor)
        return exercise_log_moneyness(
            is_call=call[rows], expiry_years=t[rows], rate=r[rows], dividend_yield=q[rows], vol=vol
        )

    def boundary(m: FloatArray) -> FloatArray:
        return boundary_at(np.arange(t.size), m)

    m0 = boundary(np.zeros_like(t))
    m1 = boundary(np.where(np.isfinite(m0), m0, 0.0))
    f0 = m1 - m0
    # A row stops where its own residual is converged (so its value never depends on how
    # long the other rows take); the loop stops when every row has.
    done = ~np.isfinite(f0) | (np.abs(f0) <= _BOUNDARY_TOLERANCE)
    for _ in range(_BOUNDARY_SECANT_STEPS):
        if done.all():
            break
        live = np.flatnonzero(~done)
        f1 = np.full_like(m1, np.nan)
        f1[live] = boundary_at(live, m1[live]) - m1[live]
        d = f1 - f0
        ok = ~done & np.isfinite(d) & (d != 0.0)
        m2 = np.where(ok, m1 - f1 * (m1 - m0) / np.where(ok, d, 1.0), m1 + f1)
        m2 = np.where(done, m1, m2)
        m0, f0 = np.where(done, m0, m1), np.where(done, f0, f1)
        m1 = m2
        done |= ~np.isfinite(f1) | (np.abs(f1) <= _BOUNDARY_TOLERANCE)
    return m1


def _boundary_premium(
    call: NDArray[np.bool_],
    t: FloatArray,
    r: FloatArray,
    q: FloatArray,
    atm: FloatArray,
    skew: FloatArray,
    vm: FloatArray,
    m_star: FloatArray,
    vol_floor: float,
) -> tuple[FloatArray, FloatArray]:
    """The premium F = intrinsic - European at the boundary m* and its slope dF/dm along
    the smile (the American price's slope there is the intrinsic value's, by smooth
    pasting); the European part's slope by a central difference of the closed form."""
    eps = 1e-5
    values = []
    for dm in (-eps, 0.0, eps):
        m = m_star + dm
        batch = OptionBatch.of(
            is_call=call, is_american=False, spot=np.exp(m), strike=1.0, expiry_years=t,
            rate=r, dividend_yield=q, vol=_smile_vols(atm, skew, vm, m, vol_floor),
        )  # fmt: skip
        intrinsic = np.where(call, np.exp(m) - 1.0, 1.0 - np.exp(m))
        values.append(intrinsic - european_price(batch))
    return values[1], (values[2] - values[0]) / (2.0 * eps)


_MIN_SCALE = 0.005
_SCALE_TOTAL_VOLS = 3.0
_BOUNDARY_SECANT_STEPS = 8
_BOUNDARY_TOLERANCE = 1e-6


def _vol_lattice(
    vol_shock: Float32Array, step: float, underlyings: IndexArray
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per underlying: the first lattice index ``j0`` and the count of rows ``ln vm = (j0 +
    j) · step`` covering its scenarios' vm and 1 (today), with one row beyond each end for
    the cubic."""
    first = np.full(vol_shock.shape[0], -1, dtype=np.int64)
    count = np.full(vol_shock.shape[0], 4, dtype=np.int64)
    lv = np.log1p(vol_shock[underlyings].astype(np.float64))
    lo = np.floor(np.minimum(lv.min(axis=1), 0.0) / step).astype(np.int64) - 1
    hi = np.floor(np.maximum(lv.max(axis=1), 0.0) / step).astype(np.int64) + 2
    first[underlyings] = lo
    count[underlyings] = hi - lo + 1
    return first, count


def _exact_american(
    instruments: Instruments,
    market: Market,
    spot_shock: Float32Array,
    vol_shock: Float32Array,
    rows: IndexArray,
    settings: RevaluationSettings,
    out: Float32Array,
) -> None:
    """Overwrite the American rows of ``out`` with the pricing core's price per scenario."""
    positions = np.flatnonzero(instruments.is_american[rows] & instruments.is_option[rows])
    for k in positions:
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
        out[k] = ((price_american(scen) - p0) * instruments.multiplier[i]).astype(np.float32)


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
    power where the premium is smooth); (0, 1, 0, 0) at f = 0, so a node is met exactly."""
    fp, fm, fm2 = f + 1.0, f - 1.0, f - 2.0
    return (
        -f * fm * fm2 / 6.0,
        fp * fm * fm2 / 2.0,
        -fp * f * fm2 / 2.0,
        fp * f * fm / 6.0,
    )


@njit(cache=True, inline="always")
def _eep(b: int, m: float, j: int, fy: float, nv: int, scale: np.ndarray, h: float,
         m_first: np.ndarray, m_count: np.ndarray, offset: np.ndarray,
         values: np.ndarray, side: np.ndarray,
         row_offset: np.ndarray, boundary: np.ndarray) -> tuple[float, bool]:  # fmt: skip
    """Bucket b's premium at log-moneyness ``m`` in vol cell ``j`` (fraction ``fy``, ``nv``
    rows): (premium per unit strike, exercised). The boundary is cubic across rows; beyond
    it the option is exercised (its price is the intrinsic value, exactly); inside, the
    premium is bicubic in (asinh moneyness, ln vm) on nodes that continue the continuation
    region's premium smoothly across the boundary (:func:`_extend_rows`)."""
    w0, w1, w2, w3 = _cubic_weights(fy)
    r = row_offset[b] + j - 1
    if side[b] != 0.0:
        m_star = w0 * boundary[r] + w1 * boundary[r + 1] + w2 * boundary[r + 2]
        m_star += w3 * boundary[r + 3]
        if side[b] * (m - m_star) <= 0.0:
            return 0.0, True
    i, fx = _cell(math.asinh(m / scale[b]) / h, m_first[b], m_count[b])
    a0, a1, a2, a3 = _cubic_weights(fx)
    g = offset[b] + (i - 1) * nv + j - 1
    out = 0.0
    for k, wa in enumerate((a0, a1, a2, a3)):
        c = g + k * nv
        out += wa * (w0 * values[c] + w1 * values[c + 1] + w2 * values[c + 2] + w3 * values[c + 3])
    return out, False


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
) -> None:
    n_s = spot_shock.shape[1]
    for g in prange(group_starts.shape[0] - 1):
        lo, hi = group_starts[g], group_starts[g + 1]
        u = und[rows[lo]]
        s0 = spot[u]
        ln_s0 = math.log(s0)
        s_new = np.empty(n_s)
        ln_new = np.empty(n_s)
        vm = np.empty(n_s)
        v_idx = np.empty(n_s, dtype=np.int64)
        v_frac = np.empty(n_s)
        price = np.empty(n_s)
        uv = min(u, v_first.shape[0] - 1)
        v0, nv = v_first[uv], v_count[uv]
        for s in range(n_s):
            shock = np.float64(spot_shock[u, s])
            s_new[s] = s0 * (1.0 + shock)
            ln_new[s] = ln_s0 + math.log1p(shock)
            vm[s] = 1.0 + np.float64(vol_shock[u, s])
            v_idx[s], v_frac[s] = _cell(math.log1p(np.float64(vol_shock[u, s])) / lv_step, v0, nv)
        base_idx, base_frac = _cell(0.0, v0, nv)
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
            x0 = ln_s0 - ln_k
            sd0 = max(vol_floor, atm - slope * x0) * sqrt_t
            d10 = (x0 + carry_t) / sd0 + 0.5 * sd0
            p0 = sign * (s0 * df_q * fast_ncdf(sign * d10) - k_df * fast_ncdf(sign * (d10 - sd0)))
            if b >= 0:
                e0, ex0 = _eep(
                    b, x0, base_idx, base_frac, nv, scale, m_step, m_first, m_count, offset,
                    grid, side, row_offset, boundary,
                )  # fmt: skip
                i0 = max(sign * (s0 - kk), 0.0)
                p0 = i0 if ex0 else max(p0 + kk * e0, i0)
            for s in range(n_s):
                x = ln_new[s] - ln_k
                sd = vm[s] * max(vol_floor, atm - slope * x) * sqrt_t
                d1 = (x + carry_t) / sd + 0.5 * sd
                price[s] = sign * (
                    s_new[s] * df_q * fast_ncdf(sign * d1) - k_df * fast_ncdf(sign * (d1 - sd))
                )
            if b >= 0:
                for s in range(n_s):
                    e, ex = _eep(
                        b, ln_new[s] - ln_k, v_idx[s], v_frac[s], nv,
                        scale, m_step, m_first, m_count, offset, grid,
                        side, row_offset, boundary,
                    )  # fmt: skip
                    intrinsic = max(sign * (s_new[s] - kk), 0.0)
                    price[s] = intrinsic if ex else max(price[s] + kk * e, intrinsic)
            for s in range(n_s):
                # A scenario that moves nothing has a P&L of exactly zero. The scalar p0 and
                # the vectorised scenario loop may round differently (FMA contraction) by
                # ~1e-16 of the price, so equal inputs are tested, not equal outputs.
                unmoved = ln_new[s] == ln_s0 and vm[s] == 1.0
                row[s] = 0.0 if unmoved else (price[s] - p0) * m
