"""SIMM against ORE (open-source-risk-engine), an independent implementation, on the same
CRIF files: generated portfolios covering every risk class and margin type for every shipped
version, plus hand-built edge cases (single sensitivities, offsetting ones, concentration
thresholds hit, negative curvature, residual buckets, add-ons, regulations, non-USD
calculation currency, 1-day horizon).

Tolerance: 1e-8 relative (absolute floor 1e-8 x one unit of currency for zero margins). Both
sides evaluate the same closed-form expressions in double precision; they differ only in the
order of summation, which moves results by ~1e-15 relative (observed maximum 6e-16), so 1e-8
leaves seven orders of magnitude of margin yet catches any wrong parameter or rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from marginflow.io.crif import read_crif
from marginflow.sim.synthetic_crif import USD_PER_UNIT, CrifSpec, generate, write_crif_csv
from marginflow.simm.calculator import SimmRun, run_simm
from marginflow.simm.calibration import load_calibration
from marginflow.simm.fx import FxRates
from marginflow.simm.results import Node

ORE = pytest.importorskip("ORE", reason="ORE (open-source-risk-engine) is the SIMM oracle")
from tests.simm.ore_oracle import OreSimm, run_ore, side_of  # noqa: E402

REL_TOL = 1e-8
MARGIN_TYPES = {"Delta", "Vega", "Curvature", "BaseCorr"}
SIMM_PCS = {"RatesFX", "Credit", "Equity", "Commodity"}


def _close(ours: float, ref: float) -> bool:
    return abs(ours - ref) <= REL_TOL * max(abs(ref), 1.0)


def _ours(path: Path, version: str, mpor: int, currency: str) -> SimmRun:
    calibration = load_calibration(version, mpor)
    load = read_crif(path, calibration=calibration)
    assert not load.failures, load.failures[:3]
    return run_simm(
        load.crif, calibration=calibration, currency=currency, fx=FxRates.of(USD_PER_UNIT)
    )


def _by_regulation(run: SimmRun) -> dict[tuple[str, str, str], float]:
    return {
        (run.portfolios[u.unit.portfolio], u.unit.side.capitalize(), reg): u.margin
        for u in run.units
        for reg in u.unit.regulations
    }


def _tree_value(tree: Node, key: tuple[str, ...]) -> float | None:
    """Our value for an ORE report row (product class, risk class, margin type, bucket)."""
    pc, rc, mt, bucket = key
    if pc == "All":
        return tree.margin if (rc, mt, bucket) == ("All", "All", "All") else None
    if pc in ("AddOnNotionalFactor", "AddOnFixedAmount"):
        node = tree.find(pc)
        return node.margin if node and (rc, mt, bucket) == ("All", "All", "All") else None
    if pc not in SIMM_PCS:
        return None
    if rc == "All":
        if (mt, bucket) == ("All", "All"):
            node = tree.find(pc)
        elif (mt, bucket) == ("AdditionalIM", "All"):
            node = tree.find(pc, "ProductClassMultiplier")
        else:
            return None  # cross aggregations (product class x margin type) are not in our tree
        return node.margin if node else None
    path = [pc, rc] + ([] if mt == "All" else [mt]) + ([] if bucket in ("All", "") else [bucket])
    if mt != "All" and mt not in MARGIN_TYPES:
        return None
    node = tree.find(*path)
    return node.margin if node else None


def _compare(ours: SimmRun, ore: OreSimm) -> Iterator[str]:
    mine = _by_regulation(ours)
    for key, ref in ore.by_regulation.items():
        if key not in mine:
            yield f"{key}: missing (ORE {ref})"
        elif not _close(mine[key], ref):
            yield f"{key}: ours {mine[key]!r} ORE {ref!r}"
    for key in mine:
        if key not in ore.by_regulation and abs(mine[key]) > 0:
            yield f"{key}: not computed by ORE (ours {mine[key]!r})"
    trees = {
        (ours.portfolios[u.unit.portfolio], u.unit.side.capitalize(), reg): u.breakdown
        for u in ours.units
        for reg in u.unit.regulations
    }
    for (p, pc, rc, mt, bucket, side, reg), ref in ore.rows.items():
        tree = trees.get((p, side, reg))
        if tree is None:
            continue
        value = _tree_value(tree, (pc, rc, mt, bucket))
        if value is None:
            if pc in SIMM_PCS and rc != "All" and mt in MARGIN_TYPES and bucket not in ("All", ""):
                yield f"{(p, pc, rc, mt, bucket, side)}: no such node in our tree (ORE {ref})"
            continue
        if not _close(value, ref):
            yield f"{(p, pc, rc, mt, bucket, side, reg)}: ours {value!r} ORE {ref!r}"


def _check(path: Path, version: str, mpor: int = 10, currency: str = "USD") -> None:
    ore = run_ore(path, version=version, mpor=mpor, currency=currency)
    assert ore.by_regulation, "ORE returned no results"
    problems = list(_compare(_ours(path, version, mpor, currency), ore))
    assert not problems, "\n".join(problems[:20])


# ----------------------------------------------------------------------------- generated


@pytest.mark.parametrize(
    "version", ["2.2", "2.3", "2.4", "2.5", "2.5A", "2.6", "2.7", "2.7+2412", "2.8+2506"]
)
def test_generated_portfolio_every_version(version: str, tmp_path: Path) -> None:
    rows = generate(CrifSpec(rows=1500, portfolios=2, names=25, add_ons=True, seed=11))
    _check(write_crif_csv(rows, tmp_path / "crif.csv", ore_names=True), version)


@pytest.mark.parametrize(
    ("version", "mpor", "currency"),
    [("2.6", 1, "USD"), ("2.6", 10, "EUR"), ("2.8+2506", 1, "JPY"), ("2.8+2506", 10, "BRL")],
)
def test_generated_portfolio_horizons_and_currencies(
    version: str, mpor: int, currency: str, tmp_path: Path
) -> None:
    rows = generate(CrifSpec(rows=1500, portfolios=2, names=25, add_ons=True, seed=5))
    _check(write_crif_csv(rows, tmp_path / "crif.csv", ore_names=True), version, mpor, currency)


@pytest.mark.parametrize("version", ["2.6", "2.8+2506"])
def test_regulations_per_side(version: str, tmp_path: Path) -> None:
    # Each row collects and posts under random subsets of four regimes: every (portfolio,
    # side, regulation) margin and the winner must match.
    rows = generate(
        CrifSpec(
            rows=1200,
            portfolios=2,
            names=20,
            regulations=("CFTC", "ESA", "JFSA", "USPR"),
            add_ons=True,
            seed=9,
        )
    )
    path = write_crif_csv(rows, tmp_path / "crif.csv", ore_names=True)
    ore = run_ore(path, version=version)
    ours = _ours(path, version, 10, "USD")
    problems = list(_compare(ours, ore))
    assert not problems, "\n".join(problems[:20])
    from marginflow.simm.calculator import winners

    for (portfolio, side), (reg, im) in ore.totals.items():
        won = winners(ours)[(portfolio, side_of(side))]
        assert won[1] == reg, (portfolio, side)
        assert _close(won[0], im)


# ----------------------------------------------------------------------------- edge cases


def _row(
    portfolio: str, rt: str, pc: str, qualifier: str, amount: float, **kw: Any
) -> dict[str, Any]:
    return {
        "TradeID": kw.get("trade", "T1"),
        "PortfolioID": portfolio,
        "ProductClass": pc,
        "RiskType": rt,
        "Qualifier": qualifier,
        "Bucket": kw.get("bucket", ""),
        "Label1": kw.get("label1", ""),
        "Label2": kw.get("label2", ""),
        "AmountCurrency": "USD",
        "Amount": amount,
        "AmountUSD": amount,
    }


def _edge_rows() -> list[dict[str, Any]]:
    r: list[dict[str, Any]] = []
    # a single sensitivity of every risk type
    singles: list[tuple[str, str, str, dict[str, Any], float]] = [
        ("Risk_IRCurve", "RatesFX", "EUR", {"label1": "5y", "label2": "OIS"}, 1e5),
        ("Risk_Inflation", "RatesFX", "GBP", {}, -4e4),
        ("Risk_XCcyBasis", "RatesFX", "JPY", {}, 3e4),
        ("Risk_IRVol", "RatesFX", "USD", {"label1": "10y"}, 2e6),
        ("Risk_InflationVol", "RatesFX", "EUR", {"label1": "2y"}, -1e6),
        ("Risk_FX", "RatesFX", "EUR", {}, 5e7),
        ("Risk_FXVol", "RatesFX", "EURUSD", {"label1": "1y"}, 3e6),
        ("Risk_CreditQ", "Credit", "ISSUER1", {"bucket": "3", "label1": "5y"}, 2e4),
        ("Risk_CreditVol", "Credit", "ISSUER1", {"bucket": "3", "label1": "3y"}, 5e5),
        ("Risk_BaseCorr", "Credit", "CDX.IG", {}, 1e5),
        (
            "Risk_CreditNonQ",
            "Credit",
            "RMBS1",
            {"bucket": "1", "label1": "2y", "label2": "CMBX"},
            1e4,
        ),
        ("Risk_CreditVolNonQ", "Credit", "RMBS1", {"bucket": "1", "label1": "1y"}, 4e5),
        ("Risk_Equity", "Equity", "EQ1", {"bucket": "7"}, 1e6),
        ("Risk_EquityVol", "Equity", "EQ1", {"bucket": "7", "label1": "6m"}, 2e5),
        ("Risk_Commodity", "Commodity", "CMD1", {"bucket": "2"}, 1e6),
        ("Risk_CommodityVol", "Commodity", "CMD1", {"bucket": "2", "label1": "3m"}, -2e5),
    ]
    for rt, pc, q, kw, amount in singles:
        r.append(_row(f"single_{rt[5:]}", rt, pc, q, amount, **kw))
    # offsetting sensitivities from two trades: zero margin
    for rt, pc, q, kw in (
        ("Risk_IRCurve", "RatesFX", "USD", {"label1": "1y", "label2": "Libor3m"}),
        ("Risk_Equity", "Equity", "EQ9", {"bucket": "2"}),
        ("Risk_CreditVol", "Credit", "ISSUER9", {"bucket": "5", "label1": "1y"}),
    ):
        r.append(_row("offsetting", rt, pc, q, 7.5e5, trade="A", **kw))
        r.append(_row("offsetting", rt, pc, q, -7.5e5, trade="B", **kw))
    # partially offsetting across correlated factors
    r.append(_row("hedged", "Risk_IRCurve", "RatesFX", "USD", 1e6, label1="10y", label2="OIS"))
    r.append(_row("hedged", "Risk_IRCurve", "RatesFX", "USD", -9e5, label1="15y", label2="Libor3m"))
    r.append(_row("hedged", "Risk_Equity", "Equity", "EQ1", 1e6, bucket="7"))
    r.append(_row("hedged", "Risk_Equity", "Equity", "EQ2", -1e6, bucket="7"))
    # concentration thresholds hit in every risk class (10-day)
    big = [
        ("Risk_IRCurve", "RatesFX", "USD", {"label1": "10y", "label2": "OIS"}, 5e8),
        ("Risk_IRCurve", "RatesFX", "EUR", {"label1": "2y", "label2": "OIS"}, -2e8),
        ("Risk_IRVol", "RatesFX", "USD", {"label1": "5y"}, 9e10),
        ("Risk_FX", "RatesFX", "BRL", {}, 5e10),
        ("Risk_FX", "RatesFX", "JPY", {}, -2e10),
        ("Risk_FXVol", "RatesFX", "USDBRL", {"label1": "1y"}, 5e9),
        ("Risk_CreditQ", "Credit", "ISSUER2", {"bucket": "4", "label1": "5y"}, 8e5),
        ("Risk_CreditQ", "Credit", "ISSUER3", {"bucket": "4", "label1": "2y"}, 3e5),
        ("Risk_CreditVol", "Credit", "ISSUER2", {"bucket": "4", "label1": "5y"}, 9e8),
        (
            "Risk_CreditNonQ",
            "Credit",
            "RMBS2",
            {"bucket": "2", "label1": "5y", "label2": "ABX"},
            2e6,
        ),
        ("Risk_Equity", "Equity", "EQ3", {"bucket": "9"}, 5e9),
        ("Risk_Equity", "Equity", "EQ4", {"bucket": "9"}, 1e8),
        ("Risk_EquityVol", "Equity", "EQ3", {"bucket": "9", "label1": "1y"}, 9e9),
        ("Risk_Commodity", "Commodity", "CMD2", {"bucket": "10"}, 9e9),
        ("Risk_CommodityVol", "Commodity", "CMD2", {"bucket": "10", "label1": "1y"}, 5e9),
    ]
    for rt, pc, q, kw, amount in big:
        r.append(_row("concentrated", rt, pc, q, amount, **kw))
    # negative and mixed curvature (theta < 0 on the call side, > 0 on the post side)
    for i, (tenor, amount) in enumerate((("1y", -3e6), ("5y", -1e6), ("10y", 4e5))):
        r.append(
            _row("curvature", "Risk_IRVol", "RatesFX", "USD", amount, label1=tenor, trade=f"C{i}")
        )
        r.append(
            _row(
                "curvature", "Risk_EquityVol", "Equity", f"EQC{i}", amount, bucket="3", label1=tenor
            )
        )
        r.append(
            _row(
                "curvature", "Risk_CreditVol", "Credit", f"ISS{i}", amount, bucket="2", label1="5y"
            )
        )
        r.append(
            _row(
                "curvature",
                "Risk_FXVol",
                "RatesFX",
                ["EURUSD", "USDJPY", "GBPUSD"][i],
                amount,
                label1=tenor,
            )
        )
        r.append(
            _row(
                "curvature",
                "Risk_CommodityVol",
                "Commodity",
                f"CM{i}",
                amount,
                bucket="6",
                label1=tenor,
            )
        )
    # residual buckets, equity bucket 12 (zero curvature), credit non-qualifying groups
    r.append(
        _row("residual", "Risk_CreditQ", "Credit", "ISS_R1", 3e4, bucket="Residual", label1="5y")
    )
    r.append(
        _row("residual", "Risk_CreditQ", "Credit", "ISS_R2", -1e4, bucket="Residual", label1="3y")
    )
    r.append(_row("residual", "Risk_CreditQ", "Credit", "ISS_A", 2e4, bucket="1", label1="3y"))
    r.append(_row("residual", "Risk_Equity", "Equity", "EQ_R", 2e6, bucket="Residual"))
    r.append(_row("residual", "Risk_Equity", "Equity", "EQ_S", -1e6, bucket="Residual"))
    r.append(
        _row("residual", "Risk_EquityVol", "Equity", "EQ_R", 1e6, bucket="Residual", label1="1y")
    )
    r.append(_row("residual", "Risk_EquityVol", "Equity", "EQ_V", 1e6, bucket="12", label1="1y"))
    r.append(
        _row(
            "residual",
            "Risk_CreditNonQ",
            "Credit",
            "N1",
            1e4,
            bucket="Residual",
            label1="1y",
            label2="CMBX",
        )
    )
    r.append(
        _row(
            "residual",
            "Risk_CreditNonQ",
            "Credit",
            "N2",
            1e4,
            bucket="1",
            label1="1y",
            label2="CMBX",
        )
    )
    r.append(
        _row(
            "residual",
            "Risk_CreditNonQ",
            "Credit",
            "N3",
            -2e4,
            bucket="1",
            label1="3y",
            label2="ABX",
        )
    )
    # FX delta only in the calculation currency: zero
    r.append(_row("calc_ccy_fx", "Risk_FX", "RatesFX", "USD", 1e8))
    return r


@pytest.mark.parametrize(
    ("version", "mpor", "currency"),
    [("2.6", 10, "USD"), ("2.8+2506", 10, "USD"), ("2.7", 1, "USD"), ("2.5", 10, "EUR")],
)
def test_edge_cases(version: str, mpor: int, currency: str, tmp_path: Path) -> None:
    _check(
        write_crif_csv(_edge_rows(), tmp_path / "edge.csv", ore_names=True), version, mpor, currency
    )


def test_edge_cases_are_what_they_claim() -> None:
    # The edge file must really exercise the cases: zero margin where offsetting, a
    # concentration factor above 1, and a curvature margin reduced by negative theta.
    path_rows = _edge_rows()
    calibration = load_calibration("2.6")
    from marginflow.io.crif import crif_from_rows

    load = crif_from_rows(path_rows, calibration=calibration)
    run = run_simm(load.crif, calibration=calibration, fx=FxRates.of(USD_PER_UNIT))
    margins: Mapping[tuple[str, str], float] = {
        (run.portfolios[u.unit.portfolio], u.unit.side): u.margin for u in run.units
    }
    assert margins[("offsetting", "call")] == 0.0
    assert margins[("calc_ccy_fx", "call")] == 0.0
    call = next(
        u
        for u in run.units
        if run.portfolios[u.unit.portfolio] == "curvature" and u.unit.side == "call"
    )
    post = next(
        u
        for u in run.units
        if run.portfolios[u.unit.portfolio] == "curvature" and u.unit.side == "post"
    )
    call_curv = call.breakdown.find("RatesFX", "InterestRate", "Curvature")
    post_curv = post.breakdown.find("RatesFX", "InterestRate", "Curvature")
    assert call_curv is not None
    assert post_curv is not None
    assert call_curv.margin < post_curv.margin  # negative net curvature shrinks the call side


# ----------------------------------------------------------------------------- newest version


def _high_vol_fx_rows() -> list[dict[str, Any]]:
    # FX risk on the high-volatility currencies of 2.8+2512 (ARS, ISK, NGN): their risk
    # weights, correlations and concentration categories differ from the regular ones.
    rows = [
        _row("P000", "Risk_FX", "RatesFX", "ARS", 4e7),
        _row("P000", "Risk_FX", "RatesFX", "ISK", -2e7),
        _row("P000", "Risk_FX", "RatesFX", "NGN", 3e9),
        _row("P000", "Risk_FX", "RatesFX", "EUR", 5e7),
        _row("P001", "Risk_FXVol", "RatesFX", "USDARS", 2e6, label1="1y"),
        _row("P001", "Risk_FXVol", "RatesFX", "EURISK", -1e6, label1="3m"),
        _row("P001", "Risk_FX", "RatesFX", "ZMW", 8e6),
    ]
    return rows


@pytest.mark.parametrize("mpor", [10, 1])
@pytest.mark.parametrize(
    ("version", "configuration"),
    [
        ("2.8+2512", "SimmConfiguration_ISDA_V2_8_2512"),
        ("2.8+2506", "SimmConfiguration_ISDA_V2_8_2506"),
    ],
)
def test_newest_versions_against_ore_compiled_configuration(
    version: str, configuration: str, mpor: int
) -> None:
    # ORE 1.8.17's application cannot build 2.8+2512, so its SimmCalculator is driven
    # directly (2.8+2506 through the same path checks the path). 120 names per class put
    # sensitivities in every bucket; the large scale hits concentration thresholds.
    from marginflow.io.crif import crif_from_rows
    from tests.simm.ore_oracle import run_ore_low_level

    for seed, scale in ((21, 1.0), (22, 40.0)):
        rows = generate(CrifSpec(rows=3000, portfolios=2, names=120, seed=seed, scale=scale))
        rows += _high_vol_fx_rows()
        ore = run_ore_low_level(rows, configuration=configuration, mpor=mpor)
        calibration = load_calibration(version, mpor)
        crif = crif_from_rows(rows, calibration=calibration).crif
        run = run_simm(crif, calibration=calibration, fx=FxRates.of(USD_PER_UNIT))
        from marginflow.simm.calculator import winners

        ours = winners(run)
        assert set(ours) == set(ore)
        for key, ref in ore.items():
            assert _close(ours[key][0], ref), (key, ours[key][0], ref)
