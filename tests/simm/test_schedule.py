"""Schedule IM: the BCBS-IOSCO grid, the net-to-gross ratio, ACT/ACT maturities, and
agreement with ORE's ``imschedule`` analytic on generated portfolios."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from marginflow.io.crif import crif_from_rows, read_crif
from marginflow.sim.synthetic_crif import USD_PER_UNIT, generate_schedule, write_schedule_csv
from marginflow.simm.calibration import load_calibration
from marginflow.simm.fx import FxRates
from marginflow.simm.report import simm_report
from marginflow.simm.risk import ProductClass
from marginflow.simm.schedule import grid_band, year_fraction_act_act_isda

AS_OF = dt.date(2024, 6, 28)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (dt.date(2024, 6, 28), dt.date(2025, 6, 28)),
        (dt.date(2024, 6, 28), dt.date(2034, 2, 28)),
        (dt.date(2023, 12, 31), dt.date(2024, 1, 1)),
        (dt.date(2024, 6, 28), dt.date(2024, 6, 28)),
        (dt.date(2024, 6, 28), dt.date(2023, 1, 15)),
    ],
)
def test_act_act_isda_matches_quantlib(start: dt.date, end: dt.date) -> None:
    ql = pytest.importorskip("QuantLib")
    day_counter = ql.ActualActual(ql.ActualActual.ISDA)
    expected = day_counter.yearFraction(
        ql.Date(start.day, start.month, start.year), ql.Date(end.day, end.month, end.year)
    )
    # Same day counts and year lengths; only summation order differs (1e-14 absolute).
    assert year_fraction_act_act_isda(start, end) == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize(
    ("product_class", "years", "label", "rate"),
    [
        (ProductClass.RATES, 0.0, "Interest Rate 0-2 years", 0.01),
        (ProductClass.RATES, 1.999, "Interest Rate 0-2 years", 0.01),
        (ProductClass.RATES, 2.0, "Interest Rate 2-5 years", 0.02),
        (ProductClass.RATES, 5.0, "Interest Rate 5+ years", 0.04),
        (ProductClass.CREDIT, 4.99, "Credit 2-5 years", 0.05),
        (ProductClass.CREDIT, 30.0, "Credit 5+ years", 0.10),
        (ProductClass.FX, 10.0, "FX", 0.06),
        (ProductClass.EQUITY, 1.0, "Equity", 0.15),
        (ProductClass.COMMODITY, 1.0, "Commodity", 0.15),
        (ProductClass.OTHER, 1.0, "Other", 0.15),
        (ProductClass.RATES, -0.5, "Interest Rate 0-2 years", 0.01),
    ],
)
def test_grid(product_class: ProductClass, years: float, label: str, rate: float) -> None:
    # BCBS-IOSCO (2015) Appendix A; a matured trade falls in the shortest band.
    band = grid_band(product_class, years)
    assert (band.label, band.rate) == (label, rate)


def _sched_row(trade: str, pc: str, rt: str, amount: float, end: str) -> dict[str, object]:
    return {
        "TradeID": trade,
        "PortfolioID": "P",
        "ProductClass": pc,
        "RiskType": rt,
        "Amount": amount,
        "AmountCurrency": "USD",
        "EndDate": end,
        "IMModel": "Schedule",
    }


def test_net_to_gross_hand_example() -> None:
    # Two trades: a 10y swap (4% of 100m = 4m) with PV +3m and an equity option (15% of 20m
    # = 3m) with PV -1m. Gross margin 7m. Call side: NGR = max(0, 2m) / 3m, IM = 7m (0.4 +
    # 0.6 x 2/3) = 5.6m. Post side: NGR = min(0, 2m) / -1m = 0, IM = 0.4 x 7m = 2.8m.
    rows = [
        _sched_row("A", "Rates", "Notional", 100e6, "2034-07-01"),
        _sched_row("A", "Rates", "PV", 3e6, "2034-07-01"),
        _sched_row("B", "Equity", "Notional", -20e6, "2025-03-01"),
        _sched_row("B", "Equity", "PV", -1e6, "2025-03-01"),
    ]
    cal = load_calibration("2.6")
    report = simm_report(crif_from_rows(rows, calibration=cal), calibration=cal, as_of=AS_OF)
    call, post = report.get("P", "call"), report.get("P", "post")
    assert call.schedule == pytest.approx(5.6e6, rel=1e-12)
    assert post.schedule == pytest.approx(2.8e6, rel=1e-12)
    assert call.schedule_detail is not None
    assert call.schedule_detail.net_to_gross == pytest.approx(2.0 / 3.0, rel=1e-12)
    assert call.simm == 0.0
    assert call.im == call.schedule


def test_a_trade_notional_in_several_rows_is_netted_before_the_grid() -> None:
    # One credit trade (5+ years: 10%) reported as two Notional rows, +1m and -0.4m: its
    # notional is |1m - 0.4m| = 0.6m and its gross margin 60k (ORE's imschedule: 60,000),
    # not 10% of 1m + 0.4m. No PV: NGR 1.
    rows = [
        _sched_row("A", "Credit", "Notional", 1e6, "2030-01-01"),
        _sched_row("A", "Credit", "Notional", -4e5, "2030-01-01"),
    ]
    cal = load_calibration("2.6")
    report = simm_report(crif_from_rows(rows, calibration=cal), calibration=cal, as_of=AS_OF)
    assert report.get("P", "call").schedule == pytest.approx(60e3, rel=1e-12)


def test_mixed_portfolio_adds_simm_and_schedule_and_models_select() -> None:
    cal = load_calibration("2.6")
    rows: list[dict[str, object]] = [
        _sched_row("A", "Rates", "Notional", 100e6, "2034-07-01"),
        {
            "PortfolioID": "P",
            "ProductClass": "Equity",
            "RiskType": "Risk_Equity",
            "Qualifier": "X",
            "Bucket": "1",
            "Amount": 1e6,
            "AmountCurrency": "USD",
        },
    ]
    load = crif_from_rows(rows, calibration=cal)
    mixed = simm_report(load, calibration=cal, as_of=AS_OF).get("P", "call")
    assert mixed.schedule == pytest.approx(4e6, rel=1e-12)  # no PV: NGR 1
    assert mixed.simm == pytest.approx(30e6, rel=1e-12)  # 1m x RW 30 (2.6, bucket 1)
    assert mixed.im == pytest.approx(34e6, rel=1e-12)
    simm_only = simm_report(load, calibration=cal, as_of=AS_OF, models={"P": "simm"})
    assert simm_only.get("P", "call").im == pytest.approx(30e6, rel=1e-12)
    sched_only = simm_report(load, calibration=cal, as_of=AS_OF, default_model="schedule")
    assert sched_only.get("P", "call").im == pytest.approx(4e6, rel=1e-12)


ORE = pytest.importorskip("ORE", reason="ORE (open-source-risk-engine) is the Schedule oracle")


@pytest.mark.parametrize("regulations", [(), ("ESA", "USPR", "JFSA")])
def test_schedule_against_ore(regulations: tuple[str, ...], tmp_path: Path) -> None:
    # USD only: ORE's imschedule analytic builds no market, so it cannot convert currencies.
    from tests.simm.ore_oracle import run_ore_schedule, side_of

    rows = generate_schedule(trades=40, portfolios=3, regulations=regulations)
    path = write_schedule_csv(rows, tmp_path / "schedule.csv", ore_names=True)
    ore = run_ore_schedule(path)
    cal = load_calibration("2.6")
    load = read_crif(path, calibration=cal)
    assert not load.failures
    report = simm_report(load, calibration=cal, fx=FxRates.of(USD_PER_UNIT), as_of=AS_OF)
    assert len(ore.totals) == 6
    for (portfolio, side, reg), (gross, ngr, im) in ore.totals.items():
        result = report.get(portfolio, side_of(side))
        sched = result.schedule_detail
        assert sched is not None
        assert (result.regulation, sched.regulation) == (reg, reg)
        # Same formula on the same inputs in double precision: 1e-10 relative.
        assert sched.gross_margin == pytest.approx(gross, rel=1e-10)
        assert sched.net_to_gross == pytest.approx(ngr, rel=1e-10, abs=1e-12)
        assert sched.margin == pytest.approx(im, rel=1e-10)
        assert result.im == pytest.approx(im, rel=1e-10)
