"""Monte Carlo scenario generation alone: the Numba/SIMD generator against the NumPy/SciPy
one it replaced, on the margin benchmark's universe, in the same run.

``python -m benchmarks.scenarios`` draws 10,000 Student-t copula scenarios for the 2,000
underlyings of ``benchmarks/margin.py``'s large book (its universe: the same history and
factor model as ``generate_book(..., underlyings=2000, seed=1)``, without the positions).
Each generator runs once to warm up (Numba kernels, first touch of memory), then both run
``--repeat`` times in turn; the table gives the best and median wall time, the CPU time of
the best run (both threads), the ratio of best times and the load average around the
runs. The median shows what the best hides: on this virtual machine memory that was not
touched lately costs 2-3 ms per MiB to fault in (1.6 GB: 3.7 s in a fresh process, 0.14 s
again at once), so the old generator's ~1 GB of float64 temporaries made it slow and
erratic. A second table compares the sets' distributions for two
seeds each (same model, different draws: the seed-to-seed spread shows how far apart two
correct sets fall).

The baseline, :func:`numpy_student_t_copula`, is the generator as it was before the rewrite
(commit e7044a2), kept here only to be measured against.

The machine is shared: a busy neighbour slows the threaded generator most (it uses both
cores), so the CPU column and the best-of are the fairer figures.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

import numpy as np

from benchmarks.common import print_table
from marginflow.core.batch import FloatArray
from marginflow.core.history import ReturnHistory
from marginflow.scenarios.ewma import (
    DEFAULT_VOL_RESPONSE,
    VolResponse,
    ewma_filter,
    ewma_log_change_for_return,
)
from marginflow.scenarios.factors import FactorModel
from marginflow.scenarios.montecarlo import student_t_copula
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet
from marginflow.sim.universe import generate_universe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scenarios", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="200 underlyings, 2,000 scenarios")
    ap.add_argument("--underlyings", type=int, default=None)
    ap.add_argument("--scenarios", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    n_u = args.underlyings or (200 if args.quick else 2000)
    n_s = args.scenarios or (2000 if args.quick else 10_000)
    uni = generate_universe(n_u, seed=args.seed)
    h, model = uni.history, uni.factors
    gens = {"ours (Numba + SIMD)": student_t_copula, "NumPy/SciPy (before)": numpy_student_t_copula}
    sets: dict[str, ScenarioSet] = {}
    for name, gen in gens.items():  # warm-up: compilation or cache load, first page touch
        for seed in (args.seed, args.seed + 1):
            sets[f"{name.split()[0]}, seed {seed}"] = gen(h, model, n_scenarios=n_s, seed=seed)
    load_before = os.getloadavg()
    wall: dict[str, list[float]] = {name: [] for name in gens}
    cpu: dict[str, list[float]] = {name: [] for name in gens}
    for _ in range(args.repeat):
        for name, gen in gens.items():
            t0, c0 = time.perf_counter(), time.process_time()
            gen(h, model, n_scenarios=n_s, seed=args.seed)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)

    load_after = os.getloadavg()
    base = list(gens)[1]
    rows: list[tuple[Any, ...]] = []
    for name in gens:
        best = int(np.argmin(wall[name]))
        rows.append(
            (
                name,
                min(wall[name]),
                statistics.median(wall[name]),
                cpu[name][best],
                min(wall[base]) / min(wall[name]),
            )
        )
    print_table(
        f"Monte Carlo generation: {n_s:,} scenarios × {n_u:,} underlyings, best of "
        f"{args.repeat}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after",
        (
            "generator",
            "best s",
            "median s",
            "CPU s (best run)",
            "× faster than before (best)",
        ),
        rows,
    )
    print_table(
        "same model, different draws (ln(1 + spot shock), pooled over underlyings)",
        ("statistic", *sets),
        _distribution_rows(sets, h),
    )
    return 0


def _distribution_rows(sets: dict[str, ScenarioSet], h: ReturnHistory) -> list[tuple[Any, ...]]:
    sigma = ewma_filter(h.log_returns, decay=0.97).sigma_after[-1] * math.sqrt(2)
    stats: dict[str, list[float]] = {}
    for s in sets.values():
        x = np.log1p(s.spot_shock.astype(np.float64))
        z = (x / sigma[:, np.newaxis]).ravel()
        corr = np.corrcoef(x[:, :2000] if x.shape[1] > 2000 else x)
        values = [
            float(np.mean(x.std(axis=1) / sigma)),
            *(float(v) for v in np.quantile(z, [0.001, 0.01, 0.99, 0.999])),
            float(np.mean(corr[np.triu_indices(len(corr), 1)])),
            float(np.mean(s.vol_shock)),
        ]
        for k, v in zip(_STAT_NAMES, values, strict=True):
            stats.setdefault(k, []).append(v)
    return [(k, *v) for k, v in stats.items()]


_STAT_NAMES = (
    "std / today's EWMA σ√n (mean)",
    "0.1% quantile of z",
    "1% quantile of z",
    "99% quantile of z",
    "99.9% quantile of z",
    "mean pairwise correlation",
    "mean vol shock",
)


def numpy_student_t_copula(
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
    """The generator before the rewrite (commit e7044a2), unchanged but for its checks."""
    from scipy.stats import t as student_t

    rng = np.random.default_rng(np.random.PCG64(seed))
    n = horizon_days
    sqrt_n = math.sqrt(n)

    ff = ewma_filter(model.factor_returns, decay=decay)
    z = (model.factor_returns / ff.sigma_before)[-lookback_days:]
    corr = np.atleast_2d(np.corrcoef(z, rowvar=False))
    chol = np.linalg.cholesky(corr + 1e-10 * np.eye(corr.shape[0]))
    window = np.lib.stride_tricks.sliding_window_view(z, n, axis=0).sum(axis=-1) / sqrt_n
    marginals = np.sort(window, axis=0)

    g = rng.standard_normal((n_scenarios, corr.shape[0])) @ chol.T
    w = rng.chisquare(dof, (n_scenarios, 1)) / dof
    u = student_t.cdf(g / np.sqrt(w), dof)
    x_f = _numpy_empirical_quantile(marginals, u, dof) * (ff.sigma_after[-1] * sqrt_n)

    resid_sigma = ewma_filter(model.residuals(history), decay=decay).sigma_after[-1]
    eps = rng.standard_t(dof, (n_scenarios, len(history.underlyings))) * math.sqrt(
        (dof - 2.0) / dof
    )
    x_u = x_f @ model.loadings.T + eps * (resid_sigma * sqrt_n)

    total_sigma = ewma_filter(history.log_returns, decay=decay).sigma_after[-1]
    z_u = x_u / (total_sigma * sqrt_n)
    dlog = ewma_log_change_for_return(z_u, decay=decay, horizon_days=n)
    vol = vol_response.vol_shock(dlog, z_u)
    return ScenarioSet(
        underlyings=history.underlyings,
        spot_shock=np.ascontiguousarray(np.expm1(x_u).T, dtype=np.float32),
        vol_shock=np.ascontiguousarray(vol.T, dtype=np.float32),
        labels=tuple(f"mc:{i + 1:05d}" for i in range(n_scenarios)),
        group=np.full(n_scenarios, int(ScenarioGroup.CURRENT), dtype=np.int8),
        horizon_days=n,
        source="mc",
    )


def _numpy_empirical_quantile(sorted_sample: FloatArray, u: FloatArray, dof: float) -> FloatArray:
    from scipy.stats import t as student_t

    m = sorted_sample.shape[0]
    p = (np.arange(m) + 0.5) / m
    out = np.empty_like(u)
    t_lo, t_hi = student_t.ppf(p[0], dof), student_t.ppf(p[-1], dof)
    for f in range(u.shape[1]):
        col, uf = sorted_sample[:, f], u[:, f]
        q = np.interp(uf, p, col)
        lo, hi = uf < p[0], uf > p[-1]
        q[lo] = col[0] * student_t.ppf(uf[lo], dof) / t_lo if col[0] < 0 else col[0]
        q[hi] = col[-1] * student_t.ppf(uf[hi], dof) / t_hi if col[-1] > 0 else col[-1]
        out[:, f] = q
    return out


if __name__ == "__main__":
    raise SystemExit(main())
