"""The engine's state is a function of (book, scenarios, market, holdings), not of history
or of the machine's thread count: what a restarted stream calculator relies on to publish,
for the same input version, the margin an uninterrupted one published."""

from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from marginflow.engine.aggregate import account_pnl
from marginflow.engine.revaluation import revalue
from marginflow.engine.state import MarginEngine
from marginflow.margin.es_model import ExpectedShortfallModel
from tests.engine.conftest import SmallCase

# Concentration on (tiny ADV fraction) so the add-on path is exercised too.
MODEL = ExpectedShortfallModel(participation=0.0005)


Op = tuple[str, str, str, float, float]  # ("move", underlying, "", spot x, vol x) or
# ("trade", account, instrument, quantity, 0)


def _ops(case: SmallCase, n: int, seed: int) -> list[Op]:
    rng = np.random.default_rng(seed)
    b = case.book
    out: list[Op] = []
    for _ in range(n):
        if rng.random() < 0.3:
            u = b.underlyings.ids[int(rng.integers(len(b.underlyings.ids)))]
            x, y = float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.8, 1.2))
            out.append(("move", u, "", x, y))
        else:
            a = b.positions.accounts[int(rng.integers(len(b.positions.accounts)))]
            i = b.instruments.ids[int(rng.integers(len(b.instruments.ids)))]
            out.append(("trade", a, i, float(rng.integers(-300, 301)), 0.0))
    return out


def _do(eng: MarginEngine, case: SmallCase, op: Op) -> None:
    kind, name, instrument, x, y = op
    if kind == "move":
        u = case.book.underlyings.index()[name]
        spot, vol = case.book.market.spot[u] * x, case.book.market.atm_vol[u] * y
        eng.apply_market(name, spot=float(spot), atm_vol=float(vol))
    else:
        eng.apply_trade(name, instrument, x)


@pytest.mark.parametrize("cut", [0, 17, 40])
def test_restored_engine_equals_the_uninterrupted_one(small_case: SmallCase, cut: int) -> None:
    """Engine A applies changes 1..n; engine B starts flat at the original market, takes
    the market and holdings A had after change ``cut`` (holdings in shuffled order, as a
    snapshot restore does), then replays the rest. Rows must be bit-identical; account
    margins may differ only by float64 rounding of the P&L sums (measured ~2e-16)."""
    b, scen = small_case.book, small_case.scenarios
    ops = _ops(small_case, 60, seed=cut)
    a_eng = MarginEngine(b, scen, MODEL)
    for op in ops[:cut]:
        _do(a_eng, small_case, op)
    snap_book, snap_market = a_eng.current_book(), a_eng.book.market
    for op in ops[cut:]:
        _do(a_eng, small_case, op)

    flat = replace(b, positions=replace(b.positions, matrix=b.positions.matrix * 0.0))
    b_eng = MarginEngine(flat, scen, MODEL)
    for u, name in enumerate(b.underlyings.ids):
        spot, vol = float(snap_market.spot[u]), float(snap_market.atm_vol[u])
        if spot != b.market.spot[u] or vol != b.market.atm_vol[u]:
            b_eng.apply_market(name, spot=spot, atm_vol=vol)
    x = snap_book.positions.matrix.tocoo()
    for k in np.random.default_rng(cut).permutation(x.nnz):
        account, instrument = b.positions.accounts[x.row[k]], b.instruments.ids[x.col[k]]
        b_eng.apply_trade(account, instrument, float(x.data[k]))
    for op in ops[cut:]:
        _do(b_eng, small_case, op)

    assert np.array_equal(a_eng.matrix, b_eng.matrix)
    assert np.array_equal(a_eng._delta, b_eng._delta)
    assert b_eng.margin == pytest.approx(a_eng.margin, rel=1e-12, abs=1e-9)
    assert b_eng.concentration == pytest.approx(a_eng.concentration, rel=1e-12, abs=1e-9)
    assert (a_eng.concentration > 0).sum() == (b_eng.concentration > 0).sum() > 0


def test_results_do_not_depend_on_the_thread_count(small_case: SmallCase) -> None:
    """Every parallel kernel (revaluation, premium grids, aggregation, tails) splits work
    by rows, never a reduction across threads, so 1 thread and all threads agree bit for
    bit; calculator processes on machines with other core counts publish the same value."""
    b, scen = small_case.book, small_case.scenarios
    threads = numba.get_num_threads()
    results: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    try:
        for n in sorted({1, threads}):
            numba.set_num_threads(n)
            eng = MarginEngine(b, scen, MODEL)
            eng.apply_market(b.underlyings.ids[2], spot=float(b.market.spot[2]) * 1.07)
            results.append((eng.matrix.copy(), eng.pnl.copy(), eng.margin.copy()))
    finally:
        numba.set_num_threads(threads)
    if len(results) == 1:
        pytest.skip("one thread only: nothing to compare")
    for one, many in zip(results[0], results[1], strict=True):
        assert np.array_equal(one, many)


def _at_offset(a: np.ndarray, offset: int) -> np.ndarray:
    """A C-contiguous copy of ``a`` starting ``offset`` elements into a larger buffer: same
    values, another address (and another alignment)."""
    big = np.zeros(a.size + 8, dtype=a.dtype)
    big[offset : offset + a.size] = a.ravel()
    return big[offset : offset + a.size].reshape(a.shape)


def test_revaluation_and_aggregation_do_not_depend_on_array_addresses(
    small_case: SmallCase,
) -> None:
    """The same inputs at other addresses give the same bytes: a vectorised loop's scalar
    fallback is chosen at run time from address checks, so a kernel whose two bodies round
    differently (as the American pricer's did under fast-math contraction) would fail."""
    b, scen = small_case.book, small_case.scenarios
    spot, vol = (np.ascontiguousarray(a) for a in scen.aligned(b.underlyings.ids))
    pnl = revalue(instruments=b.instruments, market=b.market, spot_shock=spot, vol_shock=vol)
    positions = sp.random(40, pnl.shape[0], density=0.1, random_state=3, format="csr") * 100
    acc = account_pnl(positions, pnl)
    held = []
    for offset in (1, 3, 5, 6):
        held.append(np.empty(1 + 113 * offset))  # shift the heap between calls
        out = _at_offset(np.zeros_like(pnl), (offset + 2) % 8)
        got = revalue(
            instruments=b.instruments, market=b.market, spot_shock=_at_offset(spot, offset),
            vol_shock=_at_offset(vol, (offset + 3) % 8), out=out,
        )  # fmt: skip
        assert got.tobytes() == pnl.tobytes(), f"revalue, offset {offset}"
        got_acc = account_pnl(positions, _at_offset(pnl, offset), out=_at_offset(acc, offset))
        assert got_acc.tobytes() == acc.tobytes(), f"account_pnl, offset {offset}"
