"""Per-trade Euler contributions: exact cases, Euler's theorem where SIMM is homogeneous,
and agreement with a brute-force difference through the public API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from marginflow.core.errors import ValidationError
from marginflow.io.crif import crif_from_rows
from marginflow.sim.synthetic_crif import USD_PER_UNIT, CrifSpec, generate
from marginflow.simm.calculator import run_simm, winners
from marginflow.simm.calibration import load_calibration
from marginflow.simm.contributions import NO_TRADE, trade_contributions
from marginflow.simm.fx import FxRates
from marginflow.simm.report import simm_report

FX = FxRates.of(USD_PER_UNIT)


def _eq(trade: str, qualifier: str, amount: float, bucket: str = "1") -> dict[str, Any]:
    return {
        "TradeID": trade,
        "PortfolioID": "P",
        "ProductClass": "Equity",
        "RiskType": "Risk_Equity",
        "Qualifier": qualifier,
        "Bucket": bucket,
        "Amount": amount,
        "AmountCurrency": "USD",
    }


def test_single_trade_takes_everything_and_twins_split_evenly() -> None:
    cal = load_calibration("2.6")
    crif = crif_from_rows([_eq("A", "X", 1e6), _eq("B", "X", 1e6)], calibration=cal).crif
    c = trade_contributions(crif, calibration=cal)[("P", "call")]
    assert c.simm == pytest.approx(60e6, rel=1e-12)  # 2m x RW 30 (2.6, bucket 1)
    # Finite differences with step 1e-6: 1e-8 relative is two orders above their error.
    assert c.by_trade["A"] == pytest.approx(30e6, rel=1e-8)
    assert c.by_trade["B"] == pytest.approx(30e6, rel=1e-8)
    assert abs(c.unallocated) < 1e-8 * c.simm


def test_hedge_has_negative_contribution() -> None:
    cal = load_calibration("2.6")
    # Same equity: SIMM = RW x |2m - 1m| = 30m; Euler gives the long 60m, the hedge -30m.
    rows = [_eq("LONG", "X", 2e6), _eq("HEDGE", "X", -1e6)]
    c = trade_contributions(crif_from_rows(rows, calibration=cal).crif, calibration=cal)
    call = c[("P", "call")]
    assert call.simm == pytest.approx(30e6, rel=1e-12)
    assert call.by_trade["LONG"] == pytest.approx(60e6, rel=1e-8)
    assert call.by_trade["HEDGE"] == pytest.approx(-30e6, rel=1e-8)


def test_rows_without_trade_id_form_one_pseudo_trade() -> None:
    cal = load_calibration("2.6")
    rows = [_eq("", "X", 1e6), _eq("A", "Y", 1e6)]
    c = trade_contributions(crif_from_rows(rows, calibration=cal).crif, calibration=cal)
    assert set(c[("P", "post")].by_trade) == {NO_TRADE, "A"}


def test_euler_sum_is_the_total_where_simm_is_homogeneous() -> None:
    # 1-day horizon: no concentration thresholds, no fixed add-on, so SIMM is homogeneous of
    # degree one and the contributions must add up to it (to finite-difference accuracy).
    cal = load_calibration("2.8+2506", 1)
    rows = generate(
        CrifSpec(rows=800, portfolios=2, trades=25, names=15, seed=8, regulations=("ESA", "USPR"))
    )
    crif = crif_from_rows(rows, calibration=cal).crif
    for c in trade_contributions(crif, calibration=cal, fx=FX).values():
        assert abs(c.unallocated) < 1e-8 * c.simm, c


def test_contribution_matches_brute_force_through_the_public_api() -> None:
    cal = load_calibration("2.6")
    rows = generate(CrifSpec(rows=400, portfolios=1, trades=12, names=10, seed=6, add_ons=True))
    crif = crif_from_rows(rows, calibration=cal).crif
    c = trade_contributions(crif, calibration=cal, fx=FX)[("P000", "call")]
    trade = next(iter(c.by_trade))  # the largest
    eps = 1e-4

    def simm(scale: float) -> float:
        scaled = [
            dict(r, Amount=r["Amount"] * scale, AmountUSD=r["AmountUSD"] * scale)
            if r["TradeID"] == trade and r["RiskType"].startswith("Risk_")
            else r
            for r in rows
        ]
        run = run_simm(crif_from_rows(scaled, calibration=cal).crif, calibration=cal, fx=FX)
        return winners(run)[("P000", "call")][0]

    brute = (simm(1 + eps) - simm(1 - eps)) / (2 * eps)
    # Two central differences with steps 1e-4 and 1e-6: both O(step^2) accurate on a smooth
    # margin; they agree to 1e-7 relative.
    assert c.by_trade[trade] == pytest.approx(brute, rel=1e-7)
    # The fixed add-on (1m per portfolio) is not allocated to any trade.
    assert c.unallocated == pytest.approx(1e6, rel=0.2)


def test_report_carries_contributions_summing_to_simm() -> None:
    cal = load_calibration("2.6")
    crif = crif_from_rows([_eq("A", "X", 1e6), _eq("B", "Y", -3e5)], calibration=cal)
    report = simm_report(crif, calibration=cal, contributions=True)
    for r in report.results:
        assert r.contributions is not None
        assert sum(r.contributions.values()) == pytest.approx(r.simm, rel=1e-12)


def test_contributions_follow_the_reported_regulation_of_a_mixed_portfolio() -> None:
    # SIMM alone is won by SEC (A and B), but with the Schedule trade (ESA only) the side's
    # winner is ESA, whose SIMM holds trade A alone: the contributions must explain that
    # SIMM (A takes all of it, B nothing), not SEC's.
    cal = load_calibration("2.6")
    rows: list[dict[str, Any]] = [
        _eq("A", "X", 1e6) | {"CollectRegulation": "SEC,ESA"},
        _eq("B", "Y", 1e5) | {"CollectRegulation": "SEC"},
        {
            "TradeID": "S",
            "PortfolioID": "P",
            "ProductClass": "Rates",
            "RiskType": "Notional",
            "Amount": 100e6,
            "AmountCurrency": "USD",
            "EndDate": "2034-07-01",
            "IMModel": "Schedule",
            "CollectRegulation": "ESA",
        },
    ]
    load = crif_from_rows(rows, calibration=cal)
    report = simm_report(load, calibration=cal, as_of=dt.date(2024, 6, 28), contributions=True)
    call = report.get("P", "call")
    assert call.regulation == "ESA"
    assert call.simm == pytest.approx(30e6, rel=1e-12)  # 1m x RW 30 (2.6, bucket 1)
    assert call.im == pytest.approx(34e6, rel=1e-12)  # + 4% x 100m (rates, 5+ years)
    assert call.contributions is not None
    assert call.contributions["A"] == pytest.approx(30e6, rel=1e-8)
    assert call.contributions.get("B", 0.0) == 0.0
    assert sum(call.contributions.values()) == pytest.approx(call.simm, rel=1e-12)


def test_the_size_guard_is_checked_before_the_copies_are_built() -> None:
    # Two trades in one 2-factor portfolio: 2 x 2 copies of 2 rows, plus 2 x 2 trade rows.
    cal = load_calibration("2.6")
    crif = crif_from_rows([_eq("A", "X", 1e6), _eq("B", "Y", 1e6)], calibration=cal).crif
    with pytest.raises(ValidationError, match=r"need 12 factor rows \(2 trades"):
        trade_contributions(crif, calibration=cal, max_rows=11)
    assert trade_contributions(crif, calibration=cal, max_rows=12)
