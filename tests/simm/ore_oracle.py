"""ORE (open-source-risk-engine on PyPI) as an independent SIMM oracle.

It runs ORE's own application on a CRIF file with a minimal configuration (the reliable
route, see ``../shared/reference/ore-simm-notes.md``): an ``ore.xml`` naming an as-of date,
empty curve/convention/pricing-engine files, a market with FX spots against USD, and one
``simm`` analytic. Results come from ORE's ``simm`` report (winning regulation per portfolio
and side) and ``regulation_breakdown_simm`` report (every regulation).

Used by ``tests/simm/test_against_ore.py`` and by ``benchmarks/simm.py`` (which runs it in a
subprocess: ``python -m tests.simm.ore_oracle CRIF VERSION MPOR CCY`` prints timings).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginflow.sim.synthetic_crif import COLUMNS, USD_PER_UNIT
from marginflow.simm.regulations import Side


def side_of(ore_side: str) -> Side:
    """Our side name for ORE's ``Call`` / ``Post``."""
    if ore_side == "Call":
        return "call"
    if ore_side == "Post":
        return "post"
    raise ValueError(f"not an ORE SIMM side: {ore_side!r}")


_EMPTY = {
    "curve.xml": "<CurveConfiguration/>",
    "conventions.xml": "<Conventions/>",
    "pricingengine.xml": "<PricingEngines/>",
}


@dataclass(frozen=True, slots=True)
class OreSimm:
    """ORE's totals: (portfolio, side) -> (regulation, IM) and per-regulation IMs, plus the
    full report rows (portfolio, product class, risk class, margin type, bucket, side,
    regulation) -> IM."""

    totals: Mapping[tuple[str, str], tuple[str, float]]
    by_regulation: Mapping[tuple[str, str, str], float]
    rows: Mapping[tuple[str, str, str, str, str, str, str], float]
    seconds: float


def _ore_xml(version: str, mpor: int, currency: str, enforce: bool, crif_name: str) -> str:
    return f"""<?xml version="1.0"?>
<ORE>
  <Setup>
    <Parameter name="asofDate">{AS_OF}</Parameter>
    <Parameter name="inputPath">Input</Parameter>
    <Parameter name="outputPath">Output</Parameter>
    <Parameter name="logFile">log.txt</Parameter>
    <Parameter name="logMask">0</Parameter>
    <Parameter name="marketDataFile">market.txt</Parameter>
    <Parameter name="fixingDataFile"></Parameter>
    <Parameter name="implyTodaysFixings">N</Parameter>
    <Parameter name="curveConfigFile">curve.xml</Parameter>
    <Parameter name="conventionsFile">conventions.xml</Parameter>
    <Parameter name="marketConfigFile">todaysmarket.xml</Parameter>
    <Parameter name="pricingEnginesFile">pricingengine.xml</Parameter>
    <Parameter name="portfolioFile"></Parameter>
    <Parameter name="observationModel">None</Parameter>
  </Setup>
  <Markets/>
  <Analytics>
    <Analytic type="simm">
      <Parameter name="active">Y</Parameter>
      <Parameter name="version">{version}</Parameter>
      <Parameter name="crif">{crif_name}</Parameter>
      <Parameter name="calculationCurrency">{currency}</Parameter>
      <Parameter name="enforceIMRegulations">{"Y" if enforce else "N"}</Parameter>
      <Parameter name="mporDays">{mpor}</Parameter>
    </Analytic>
  </Analytics>
</ORE>
"""


def _market(rates: Mapping[str, float]) -> tuple[str, str]:
    quotes = [f"20240628 FX/RATE/{c}/USD {v!r}" for c, v in rates.items() if c != "USD"]
    spots = [f'    <FxSpot pair="{c}USD">FX/{c}/USD</FxSpot>' for c in rates if c != "USD"]
    todays = (
        '<?xml version="1.0"?>\n<TodaysMarket>\n  <Configuration id="default"/>\n'
        '  <FxSpots id="default">\n' + "\n".join(spots) + "\n  </FxSpots>\n</TodaysMarket>\n"
    )
    return "\n".join(quotes) + "\n", todays


def run_ore(
    crif_csv: str | Path,
    *,
    version: str,
    mpor: int = 10,
    currency: str = "USD",
    enforce_regulations: bool = True,
    rates: Mapping[str, float] = USD_PER_UNIT,
) -> OreSimm:
    """Run ORE's SIMM analytic on ``crif_csv`` (ORE's column spelling) and read its reports."""
    import ORE  # the test oracle; imported here so that importing this module stays cheap

    crif_csv = Path(crif_csv)
    with tempfile.TemporaryDirectory(prefix="ore-simm-") as tmp:
        root = Path(tmp)
        inputs = root / "Input"
        inputs.mkdir()
        (root / "Output").mkdir()
        for name, body in _EMPTY.items():
            (inputs / name).write_text(f'<?xml version="1.0"?>\n{body}\n')
        market, todays = _market(rates)
        (inputs / "market.txt").write_text(market)
        (inputs / "todaysmarket.xml").write_text(todays)
        (inputs / "crif.csv").symlink_to(crif_csv.resolve())
        ore_xml = root / "ore.xml"
        ore_xml.write_text(_ore_xml(version, mpor, currency, enforce_regulations, "crif.csv"))
        params = ORE.Parameters()
        params.fromFile(str(ore_xml))
        app = ORE.OREApp(params, False)
        cwd = Path.cwd()
        try:
            import os

            os.chdir(root)
            start = time.perf_counter()
            app.run()
            seconds = time.perf_counter() - start
        finally:
            os.chdir(cwd)
        names = set(app.getReportNames()) if hasattr(app, "getReportNames") else {"simm"}
        if "simm" not in names:
            log = (root / "Output" / "log.txt").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"ORE produced no simm report: {log}")
        final = _rows(app.getReport("simm"))
        breakdown = _rows(app.getReport("regulation_breakdown_simm"))
    totals: dict[tuple[str, str], tuple[str, float]] = {}
    for (p, pc, rc, mt, b, side, reg), im in final.items():
        # ORE adds a portfolio "All" (the sum over netting sets); it is not a portfolio.
        if pc == "All" and rc == "All" and mt == "All" and b == "All" and p != "All":
            totals[(p, side)] = (reg, im)
    by_reg: dict[tuple[str, str, str], float] = {}
    for (p, pc, rc, mt, b, side, reg), im in breakdown.items():
        if pc == "All" and rc == "All" and mt == "All" and b == "All":
            by_reg[(p, side, reg)] = im
    return OreSimm(totals=totals, by_regulation=by_reg, rows=final, seconds=seconds)


@dataclass(frozen=True, slots=True)
class OreSchedule:
    """ORE's Schedule IM: (portfolio, side, regulation) -> (gross IM, NGR, Schedule IM)."""

    totals: Mapping[tuple[str, str, str], tuple[float, float, float]]


AS_OF = "2024-06-28"


def run_ore_schedule(
    crif_csv: str | Path, *, currency: str = "USD", rates: Mapping[str, float] = USD_PER_UNIT
) -> OreSchedule:
    """Run ORE's ``imschedule`` analytic on ``crif_csv`` (as of :data:`AS_OF`)."""
    import os

    import ORE

    with tempfile.TemporaryDirectory(prefix="ore-schedule-") as tmp:
        root = Path(tmp)
        inputs = root / "Input"
        inputs.mkdir()
        (root / "Output").mkdir()
        for name, body in _EMPTY.items():
            (inputs / name).write_text(f'<?xml version="1.0"?>\n{body}\n')
        market, todays = _market(rates)
        (inputs / "market.txt").write_text(market)
        (inputs / "todaysmarket.xml").write_text(todays)
        (inputs / "crif.csv").symlink_to(Path(crif_csv).resolve())
        xml = _ore_xml("2.6", 10, currency, True, "crif.csv").replace(
            'type="simm"', 'type="imschedule"'
        )
        (root / "ore.xml").write_text(xml)
        params = ORE.Parameters()
        params.fromFile(str(root / "ore.xml"))
        app = ORE.OREApp(params, False)
        cwd = Path.cwd()
        try:
            os.chdir(root)
            app.run()
        finally:
            os.chdir(cwd)
        report = app.getReport("im_schedule")
        headers = [report.header(i) for i in range(report.columns())]
        col = {h: i for i, h in enumerate(headers)}
        text = {
            h: report.dataAsString(col[h])
            for h in ("Portfolio", "ProductClass", "Side", "Regulation")
        }
        real = {h: report.dataAsReal(col[h]) for h in ("GrossIM", "NetToGrossRatio", "ScheduleIM")}
        totals = {
            (text["Portfolio"][i], text["Side"][i], text["Regulation"][i]): (
                float(real["GrossIM"][i]),
                float(real["NetToGrossRatio"][i]),
                float(real["ScheduleIM"][i]),
            )
            for i in range(report.rows())
            if text["ProductClass"][i] == "All" and text["Portfolio"][i] != "All"
        }
    return OreSchedule(totals=totals)


def _rows(report: Any) -> dict[tuple[str, str, str, str, str, str, str], float]:
    headers = [report.header(i) for i in range(report.columns())]
    col = {h: i for i, h in enumerate(headers)}
    n = report.rows()
    data = {h: report.dataAsString(col[h]) for h in headers if h != "InitialMargin"}
    im = report.dataAsReal(col["InitialMargin"])
    keys = (
        "Portfolio",
        "ProductClass",
        "RiskClass",
        "MarginType",
        "Bucket",
        "SimmSide",
        "Regulation",
    )
    return {tuple(data[k][i] for k in keys): float(im[i]) for i in range(n)}


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.simm.ore_oracle CRIF VERSION MPOR CURRENCY``: run ORE once and print
    a JSON line with its run time (import excluded) and the number of results."""
    args = sys.argv[1:] if argv is None else argv
    crif, version, mpor, currency = args[0], args[1], int(args[2]), args[3]
    result = run_ore(crif, version=version, mpor=mpor, currency=currency)
    print(json.dumps({"seconds": result.seconds, "results": len(result.totals)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


_BUCKETED_RISK_TYPES = {
    "Risk_CreditQ": "RiskType_CreditQ",
    "Risk_CreditVol": "RiskType_CreditVol",
    "Risk_CreditNonQ": "RiskType_CreditNonQ",
    "Risk_CreditVolNonQ": "RiskType_CreditVolNonQ",
    "Risk_Equity": "RiskType_Equity",
    "Risk_EquityVol": "RiskType_EquityVol",
    "Risk_Commodity": "RiskType_Commodity",
    "Risk_CommodityVol": "RiskType_CommodityVol",
}
# The lower-level API reads the CRIF columns up to AmountUSD (no regulation columns).
LOW_LEVEL_COLUMNS = COLUMNS[: COLUMNS.index("AmountUSD") + 1]


def run_ore_low_level(
    rows: Sequence[Mapping[str, object]], *, configuration: str, mpor: int = 10
) -> dict[tuple[str, Side], float]:
    """ORE's SimmCalculator driven directly, for versions its application cannot build
    (2.8+2512 in ORE 1.8.17). The traps named in ore-simm-notes.md are avoided: the CRIF is
    written tab-separated with AmountUSD on every row, and every (risk type, qualifier) is
    mapped to its bucket by hand. Returns (portfolio, side) -> SIMM in USD."""
    import csv
    import io

    import ORE

    mapper = ORE.SimmBucketMapperBase()
    seen: set[tuple[str, str]] = set()
    for r in rows:
        rt, q = str(r["RiskType"]), str(r["Qualifier"])
        if rt in _BUCKETED_RISK_TYPES and (rt, q) not in seen:
            seen.add((rt, q))
            mapper.addMapping(
                getattr(ORE.CrifRecord, _BUCKETED_RISK_TYPES[rt]), q, str(r["Bucket"])
            )
    config = getattr(ORE, configuration)(mapper, mpor)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(LOW_LEVEL_COLUMNS)
    for r in rows:
        writer.writerow([r.get(c, "") for c in LOW_LEVEL_COLUMNS])
    crif = ORE.Crif()
    crif.setCsvLoaderConfig(config)
    crif.fromCSVString(buffer.getvalue())
    calc = ORE.SimmCalculator(crif, config)
    sides: tuple[tuple[Side, object], ...] = (
        ("call", ORE.SimmConfiguration.SimmSide_Call),
        ("post", ORE.SimmConfiguration.SimmSide_Post),
    )
    out: dict[tuple[str, Side], float] = {}
    for portfolio in sorted({str(r["PortfolioID"]) for r in rows}):
        for name, side in sides:
            results = calc.finalSimmResults(side, ORE.NettingSetDetails(portfolio)).second
            out[(portfolio, name)] = results.get(
                ORE.CrifRecord.ProductClass_All,
                ORE.SimmConfiguration.RiskClass_All,
                ORE.SimmConfiguration.MarginType_All,
                "All",
            )
    return out
