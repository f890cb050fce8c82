"""Monte Carlo scenarios: a Student-t copula over factor returns, filtered-historical
marginals, independent Student-t residuals.

For each of N draws (n = margin period of risk in days, ν the copula's degrees of freedom):

1. factors: de-volatise the factor history with EWMA (``z = r / σ_{t-1}``); over the
   look-back estimate the correlation R of the daily ``z`` (de-volatised returns, as STANS
   does) and the empirical distribution of the standardised n-day sums ``Σ z / √n``;
2. copula: ``g ~ N(0, R)``, ``w ~ χ²_ν / ν``, ``u = t_ν(g / √w)`` — tail dependence, so
   factors crash together more often than a Gaussian copula allows;
3. marginals: ``x_f = σ_f,now · √n · Q_f(u_f)`` with ``Q_f`` the empirical quantile
   (linear between plotting positions (i - ½)/m, and beyond the sample a t_ν tail scaled to
   meet it), i.e. the factor's own filtered-historical distribution;
4. underlyings: ``x_u = Σ_f β_uf x_f + σ_e,now · √n · ε_u`` with ε standardised t_ν,
   independent across underlyings, ``σ_e,now`` the EWMA volatility of the residual;
5. spot shock ``exp(x_u) - 1``; vol shock by the :class:`~.ewma.VolResponse` applied to
   ``z_u = x_u / (σ_u,now √n)``, with the EWMA change the n-day move would cause.

How it is computed. 10,000 scenarios × 2,000 underlyings take 0.18-0.21 s (0.33-0.39
CPU-seconds over the two cores) with a neighbour's job on the machine; the NumPy/SciPy
version it replaced took 1.2-1.3 s at best (1.4-1.6 CPU-s), 3.3-4 s whenever its ~1 GB of
float64 temporaries had to be faulted in afresh (``python -m benchmarks.scenarios``):

* Random streams: ``SeedSequence(seed)`` spawns one child for the factor draws (NumPy's
  PCG64) and one whose state seeds an SFC64 stream per underlying (the generator of
  NumPy's ``SFC64``, re-implemented in Numba and checked against it by the tests). An
  underlying's residuals come from its own stream, so the result is the same bit for bit
  whatever the number of threads or the order they run in.
* Residuals: Bailey's polar method (Math. Comp. 62, 1994): ``(v1, v2)`` uniform in the unit
  disc, ``w = v1² + v2²``, then ``v1 · √(ν (w^(-2/ν) - 1) / w)`` is exactly t_ν. The
  rejection of points outside the disc is branch-free (every candidate is written, the
  write index advances only on acceptance), and the transcendental part runs as NumPy's
  SIMD ``log``/``expm1``/``sqrt`` over a block: no per-draw branch or scalar ``log``.
* Step 3's tails use the copula's t variate itself (``t_ν⁻¹(u) = g / √w``), so only the
  interior needs ``u``.
* Steps 4-5 run per block of whole underlying rows (about 32,000 values, so the float64
  intermediates stay in cache), in float64 — NumPy's SIMD ``log``/``expm1`` cost about a
  nanosecond each, so float32 would save little — and are rounded once to the float32 that
  :class:`~.scenario_set.ScenarioSet` stores. Blocks are shared by
  ``numba.get_num_threads()`` threads (NumPy and the Numba kernels release the GIL).
* Step 5's vol response is written out (``expm1(a · ½ ln(λⁿ + (1 - λⁿ) z²) + b z)``) instead
  of calling :func:`~.ewma.ewma_log_change_for_return` and
  :meth:`~.ewma.VolResponse.vol_shock`, which would take nine passes over the block and five
  temporaries instead of three passes; the tests check the two agree.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit
from numpy.typing import NDArray

from marginflow.core.batch import FloatArray
from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import (
    DEFAULT_VOL_RESPONSE,
    VolResponse,
    ewma_filter,
    ewma_sigma_now,
)
from marginflow.scenarios.factors import FactorModel
from marginflow.scenarios.scenario_set import Float32Array, ScenarioGroup, ScenarioSet

SeedArray = NDArray[np.uint64]

GENERATOR = "pcg64-copula/sfc64-polar-t"
"""Which random draws a seed stands for (in the set's params): PCG64 for the copula,
SFC64 streams and Bailey's polar t for the residuals."""

BLOCK_VALUES = 1 << 15
"""Values per work block of steps 4-5 (whole underlyings: at least one row). Five float64
buffers of this size are 1.3 MB, about one core's L2 cache."""


def student_t_copula(
    history: ReturnHistory,
    model: FactorModel,
    *,
    n_scenarios: int = 10_000,
    horizon_days: int = 2,
    lookback_days: int = 1250,
    decay: float = 0.97,
    dof: float = 5.0,
    seed: int = 0,
    vol_response: VolResponse = DEFAULT_VOL_RESPONSE,
) -> ScenarioSet:
    """``n_scenarios`` Monte Carlo scenarios for every underlying of ``history``.

    Reproducible bit for bit for a given ``seed`` on a given machine, whatever the number
    of threads (different CPUs may differ in the last bit of a float64 before the float32
    rounding, as NumPy's SIMD functions do).
    """
    if n_scenarios < 1:
        raise ValidationError("n_scenarios", f"must be >= 1, got {n_scenarios}")
    if not dof > 2.0:
        raise ValidationError("dof", f"must be > 2 (finite variance), got {dof!r}")
    if lookback_days < horizon_days + 10 or lookback_days > len(history) - 50:
        raise ValidationError(
            "lookback_days",
            f"must be in {horizon_days + 10}..{len(history) - 50} for this history, "
            f"got {lookback_days}",
        )
    factor_seq, residual_seq = np.random.SeedSequence(seed).spawn(2)
    threads = max(1, int(numba.get_num_threads()))
    x_f = _factor_moves(
        model.factor_returns,
        n_scenarios=n_scenarios,
        horizon_days=horizon_days,
        lookback_days=lookback_days,
        decay=decay,
        dof=dof,
        rng=np.random.Generator(np.random.PCG64(factor_seq)),
        threads=threads,
    )
    sqrt_n = math.sqrt(horizon_days)
    resid_sigma = model.residual_sigma_now(history, decay=decay)
    total_sigma = ewma_sigma_now(history.log_returns, decay=decay)
    n_u = len(history.underlyings)
    spot, vol = underlying_shocks(
        x_f,
        loadings=np.ascontiguousarray(model.loadings, dtype=np.float64),
        residual_scale=resid_sigma * sqrt_n,
        total_scale=total_sigma * sqrt_n,
        row_seeds=residual_seq.generate_state(3 * n_u, np.uint64).astype(np.uint64).reshape(n_u, 3),
        dof=dof,
        ewma_decay=decay**horizon_days,
        vol_response=vol_response,
        threads=threads,
    )
    return ScenarioSet(
        underlyings=history.underlyings,
        spot_shock=spot,
        vol_shock=vol,
        labels=tuple(f"mc:{i + 1:05d}" for i in range(n_scenarios)),
        group=np.full(n_scenarios, int(ScenarioGroup.CURRENT), dtype=np.int8),
        horizon_days=horizon_days,
        source="mc",
        params={
            "as_of": str(history.dates[-1]),
            "n_scenarios": n_scenarios,
            "horizon_days": horizon_days,
            "lookback_days": lookback_days,
            "decay": decay,
            "dof": dof,
            "seed": seed,
            # The draws a seed gives: a stored margin names them, so one made by another
            # generator (NumPy's standard_t before 2026-12) is told apart, not mismatched.
            "generator": GENERATOR,
            "factors": list(model.factor_names),
            "vol_response": [vol_response.ewma_elasticity, vol_response.return_beta],
        },
    )


def run_blocks(
    n: int, chunk: int, make_worker: Callable[[], Callable[[int, int], None]], *, threads: int
) -> None:
    """Call a worker on every chunk ``[start, start + chunk)`` of ``range(n)``, on up to
    ``threads`` threads; ``make_worker()`` makes one thread's worker (with its own buffers).

    The chunks do not depend on the thread count and each is computed on its own, so the
    result does not either. A thread takes the next chunk when free: one descheduled by a
    busy machine does not hold the others back.
    """
    starts: Iterator[int] = iter(range(0, n, chunk))
    lock = threading.Lock()

    def drain() -> None:
        fn = make_worker()
        while True:
            with lock:
                start = next(starts, None)
            if start is None:
                return
            fn(start, min(start + chunk, n))

    n_workers = min(threads, -(-n // chunk))
    if n_workers <= 1:
        drain()
        return
    with ThreadPoolExecutor(n_workers, thread_name_prefix="mc") as pool:
        for future in [pool.submit(drain) for _ in range(n_workers)]:
            future.result()


def _factor_moves(
    factor_returns: FloatArray,
    *,
    n_scenarios: int,
    horizon_days: int,
    lookback_days: int,
    decay: float,
    dof: float,
    rng: np.random.Generator,
    threads: int,
) -> FloatArray:
    """Steps 1-3: the factors' n-day log moves, F × S (one contiguous row per factor)."""
    n = horizon_days
    ff = ewma_filter(factor_returns, decay=decay)
    z = (factor_returns / ff.sigma_before)[-lookback_days:]
    corr = np.atleast_2d(np.corrcoef(z, rowvar=False))
    chol = np.linalg.cholesky(corr + 1e-10 * np.eye(corr.shape[0]))
    window = np.lib.stride_tricks.sliding_window_view(z, n, axis=0).sum(axis=-1) / math.sqrt(n)
    marginals = np.sort(window, axis=0)
    g = chol @ rng.standard_normal((corr.shape[0], n_scenarios))
    w = rng.chisquare(dof, n_scenarios) / dof
    t = np.ascontiguousarray(g / np.sqrt(w))
    out = empirical_quantile(marginals, t, dof, threads=threads)
    out *= (ff.sigma_after[-1] * math.sqrt(n))[:, np.newaxis]
    return out


def empirical_quantile(
    sorted_sample: FloatArray, t: FloatArray, dof: float, *, threads: int = 1
) -> FloatArray:
    """Quantile ``Q_f(u)`` of each column ``f`` of ``sorted_sample`` (m × F, ascending) at
    ``u = t_ν(t[f])``, for the copula's t variates ``t`` (F × S); F × S.

    Linear in ``u`` between the plotting positions ``(i - ½)/m``; below the first (above
    the last) the t_ν quantile scaled to meet the extreme observation, ``x_1 · t / t_ν⁻¹(p_1)``
    — ``t_ν⁻¹(u)`` is ``t`` itself, so no round trip through ``u`` loses the far tail. An
    extreme observation on the wrong side of zero is held flat instead.
    """
    from scipy.special import stdtr, stdtrit  # here: scipy.special costs ~0.3 s at CLI start

    m = sorted_sample.shape[0]
    if sorted_sample.shape[1:] != t.shape[:1] or t.ndim != 2 or m < 2:
        raise ValidationError(
            "sorted_sample", f"must be m × {t.shape[0]} with m >= 2, got {sorted_sample.shape}"
        )
    u = np.empty_like(t)

    def cdf_rows() -> Callable[[int, int], None]:
        def fn(start: int, stop: int) -> None:
            stdtr(dof, t[start:stop], out=u[start:stop])

        return fn

    run_blocks(t.shape[0], 1, cdf_rows, threads=threads)
    out = np.empty_like(t)
    _quantile_kernel(
        np.ascontiguousarray(sorted_sample.T),
        u,
        t,
        float(stdtrit(dof, 0.5 / m)),
        float(stdtrit(dof, (m - 0.5) / m)),
        out,
    )
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _quantile_kernel(
    cols: np.ndarray, u: np.ndarray, t: np.ndarray, t_lo: float, t_hi: float, out: np.ndarray
) -> None:
    # The plotting positions are evenly spaced, so u's cell is arithmetic, not a search.
    m = cols.shape[1]
    for f in range(u.shape[0]):
        col = cols[f]
        lo, hi = col[0], col[m - 1]
        for s in range(u.shape[1]):
            k = u[f, s] * m - 0.5
            if k < 0.0:
                out[f, s] = lo * t[f, s] / t_lo if lo < 0.0 else lo
            elif k > m - 1:
                out[f, s] = hi * t[f, s] / t_hi if hi > 0.0 else hi
            else:
                i = min(int(k), m - 2)
                out[f, s] = col[i] + (k - i) * (col[i + 1] - col[i])


def underlying_shocks(
    x_f: FloatArray,
    *,
    loadings: FloatArray,
    residual_scale: FloatArray,
    total_scale: FloatArray,
    row_seeds: SeedArray,
    dof: float,
    ewma_decay: float,
    vol_response: VolResponse,
    threads: int = 1,
) -> tuple[Float32Array, Float32Array]:
    """Steps 4-5: spot and vol shocks, float32 U × S.

    ``x_f`` are the factor moves (F × S), ``loadings`` U × F, ``residual_scale`` the
    residual's n-day volatility ``σ_e √n`` and ``total_scale`` the underlying's ``σ √n`` (U
    each), ``row_seeds`` three words per underlying seeding its SFC64 residual stream,
    ``ewma_decay`` is ``λⁿ``.
    """
    n_u, n_s = loadings.shape[0], x_f.shape[1]
    # The kernels' arithmetic is typed by their arguments: signed seeds would shift wrong.
    seeds = np.ascontiguousarray(row_seeds, dtype=np.uint64)
    if seeds.shape != (n_u, 3):
        raise ValidationError("row_seeds", f"must be {n_u} × 3, got {seeds.shape}")
    x_f = np.ascontiguousarray(x_f, dtype=np.float64)
    loadings = np.ascontiguousarray(loadings, dtype=np.float64)
    # The kernels do not check their bounds: a mismatch would read past the arrays.
    if x_f.ndim != 2 or loadings.shape != (n_u, x_f.shape[0]):
        raise ValidationError("loadings", f"must be U × {x_f.shape[0]}, got {loadings.shape}")
    for name, arr in (("residual_scale", residual_scale), ("total_scale", total_scale)):
        if np.shape(arr) != (n_u,):
            raise ValidationError(name, f"must have {n_u} entries, got {np.shape(arr)}")
    spot = np.empty((n_u, n_s), dtype=np.float32)
    vol = np.empty((n_u, n_s), dtype=np.float32)
    # ε = t_ν √((ν-2)/ν) with t_ν = v1 √ν √(w^(-2/ν) - 1) / √w: the √ν cancels, leaving
    # √(ν-2) · v1 / √w (the draw kernel, scaled here) times √(w^(-2/ν) - 1) (NumPy's passes).
    a_scale = np.asarray(residual_scale, dtype=np.float64) * math.sqrt(dof - 2.0)
    inv_total = 1.0 / np.asarray(total_scale, dtype=np.float64)
    rows = max(1, BLOCK_VALUES // n_s)
    half_a = 0.5 * vol_response.ewma_elasticity
    beta = vol_response.return_beta
    power = -2.0 / dof

    def block_fn() -> Callable[[int, int], None]:
        buf = np.empty((5, rows, n_s))

        def fn(r0: int, r1: int) -> None:
            a, w, x, q, bz = (b[: r1 - r0] for b in buf)
            _polar_t_parts(seeds[r0:r1], a_scale[r0:r1], a, w)
            # w := √(w^(-2/ν) - 1), so that a·w is the residual
            np.log(w, out=w)
            w *= power
            np.expm1(w, out=w)
            np.sqrt(w, out=w)
            _linear_moves(x_f, loadings[r0:r1], inv_total[r0:r1], a, w, ewma_decay, beta, x, q, bz)
            np.expm1(x, out=spot[r0:r1], casting="same_kind")
            np.log(q, out=q)
            _affine(q, half_a, bz)
            np.expm1(q, out=vol[r0:r1], casting="same_kind")

        return fn

    run_blocks(n_u, rows, block_fn, threads=threads)
    return spot, vol


# SFC64 (Chris Doty-Humphrey's Small Fast Chaotic generator), as NumPy's SFC64: 256 bits of
# state (a, b, c, counter w), seeded by three words, counter 1, and 12 discarded outputs.
_SH3, _SH11, _SH24, _SH32, _SH40 = (np.uint64(k) for k in (3, 11, 24, 32, 40))
_ONE = np.uint64(1)
_LOW32 = np.uint64(0xFFFFFFFF)
_HALF32 = 2.0**-31


@njit(cache=True, inline="always")
def _sfc64_next(
    a: np.uint64, b: np.uint64, c: np.uint64, w: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64, np.uint64]:
    """(output, next a, b, c, w)."""
    out = a + b + w
    return out, b ^ (b >> _SH11), c + (c << _SH3), ((c << _SH24) | (c >> _SH40)) + out, w + _ONE


@njit(cache=True, inline="always")
def _sfc64_seeded(
    seed: np.ndarray,
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    a, b, c, w = seed[0], seed[1], seed[2], _ONE
    for _ in range(12):
        _, a, b, c, w = _sfc64_next(a, b, c, w)
    return a, b, c, w


@njit(cache=True)
def sfc64_raw(seed: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` outputs of the SFC64 stream seeded by ``seed`` (three uint64): what
    ``numpy.random.SFC64`` gives for the same seed words (used by the tests)."""
    a, b, c, w = _sfc64_seeded(seed)
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        out[i], a, b, c, w = _sfc64_next(a, b, c, w)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _polar_t_parts(seeds: np.ndarray, scale: np.ndarray, a: np.ndarray, w: np.ndarray) -> None:
    """Row r from stream ``seeds[r]``: ``w`` uniform on (0, 1] and ``a = scale · v1 / √w``,
    (v1, v2) uniform in the unit disc (Bailey's polar t, first half)."""
    n_s = a.shape[1]
    for r in range(a.shape[0]):
        sa, sb, sc, sw = _sfc64_seeded(seeds[r])
        ar, wr = a[r], w[r]
        j = 0
        # Branch-free rejection: a point outside the disc is written and then overwritten
        # (21% of candidates; a branch would be mispredicted that often).
        while j < n_s:
            bits, sa, sb, sc, sw = _sfc64_next(sa, sb, sc, sw)
            # Two 32-bit halves, centred on the grid: never 0, symmetric about it.
            v1 = (np.float64(bits >> _SH32) + 0.5) * _HALF32 - 1.0
            v2 = (np.float64(bits & _LOW32) + 0.5) * _HALF32 - 1.0
            rr = v1 * v1 + v2 * v2
            ar[j] = v1
            wr[j] = rr
            j += int(rr <= 1.0)
        k = scale[r]
        for s in range(n_s):
            ar[s] = k * ar[s] / math.sqrt(wr[s])


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _linear_moves(
    x_f: np.ndarray,
    loadings: np.ndarray,
    inv_total: np.ndarray,
    a: np.ndarray,
    g: np.ndarray,
    ewma_decay: float,
    beta: float,
    x: np.ndarray,
    q: np.ndarray,
    bz: np.ndarray,
) -> None:
    """``x = a·g + Σ_f β_f x_f`` (the log move), ``q = λⁿ + (1 - λⁿ) z²`` and ``bz = b·z``
    for ``z = x / (σ √n)``; rows of the block."""
    n_f, n_s = x_f.shape
    for r in range(x.shape[0]):
        xr, ar, gr = x[r], a[r], g[r]
        for s in range(n_s):
            xr[s] = ar[s] * gr[s]
        f = 0
        # Four factors per pass over the row: a quarter of the loads and stores of x.
        while f + 4 <= n_f:
            l0, l1, l2, l3 = (
                loadings[r, f],
                loadings[r, f + 1],
                loadings[r, f + 2],
                loadings[r, f + 3],
            )
            x0, x1, x2, x3 = x_f[f], x_f[f + 1], x_f[f + 2], x_f[f + 3]
            for s in range(n_s):
                xr[s] += l0 * x0[s] + l1 * x1[s] + l2 * x2[s] + l3 * x3[s]
            f += 4
        while f < n_f:
            l0, x0 = loadings[r, f], x_f[f]
            for s in range(n_s):
                xr[s] += l0 * x0[s]
            f += 1
        it, qr, br = inv_total[r], q[r], bz[r]
        for s in range(n_s):
            z = xr[s] * it
            qr[s] = ewma_decay + (1.0 - ewma_decay) * z * z
            br[s] = beta * z


@njit(cache=True, nogil=True, fastmath={"contract"})
def _affine(q: np.ndarray, k: float, add: np.ndarray) -> None:
    for r in range(q.shape[0]):
        qr, ar = q[r], add[r]
        for s in range(q.shape[1]):
            qr[s] = k * qr[s] + ar[s]
