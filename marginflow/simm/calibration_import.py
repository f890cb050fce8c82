"""Re-express a SIMM calibration published as XML (the layout ORE's ``simmcalibration_*.xml``
files use) in our own JSON calibration format, one file per version.

This is a maintenance tool, not part of the calculation path: run it once when ISDA publishes a
new calibration, review the diff of the generated file, commit the file::

    python -m marginflow.simm.calibration_import SOURCE.xml marginflow/simm/params/v2.6.json \\
        --version 2.6 --alias 2.5.6

The JSON layout is documented in ``marginflow/simm/params/README.md``. Everything that is a
number of the calibration (risk weights, correlations, thresholds, currency groups) comes from
the source; the few structural facts of the methodology that the XML does not carry (tenor
lists, sub-curve names, curvature scaling weights) are written here from the ISDA SIMM
methodology document.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TENORS = ("2w", "1m", "3m", "6m", "1y", "2y", "3y", "5y", "10y", "15y", "20y", "30y")
CREDIT_TENORS = ("1y", "2y", "3y", "5y", "10y")
IR_SUBCURVES = ("OIS", "Libor1m", "Libor3m", "Libor6m", "Libor12m", "Prime", "Municipal")
RISK_CLASSES = (
    "InterestRate",
    "CreditQualifying",
    "CreditNonQualifying",
    "Equity",
    "Commodity",
    "FX",
)
# Days in each vol tenor (ISDA: a month is 365/12 days), for the curvature scaling function.
_TENOR_DAYS = (
    14.0,
    365.0 / 12.0,
    3.0 * 365.0 / 12.0,
    6.0 * 365.0 / 12.0,
    *(y * 365.0 for y in (1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0)),
)


def curvature_weights(mpor_days: int) -> list[float]:
    """ISDA curvature scaling SF(t) = 0.5 * min(1, 14 / days(t)) for the 10-day horizon and
    0.5 * min(1, 1.4 / days(t)) for the 1-day horizon (SIMM technical paper, section I.3),
    with the same floating-point evaluation order as the reference implementation."""
    out: list[float] = []
    for i, days in enumerate(_TENOR_DAYS):
        if mpor_days == 10:
            out.append(0.5 if i == 0 else 0.5 * 14.0 / days)
        else:
            out.append(0.5 / 10.0 if i == 0 else 0.5 * 1.40 / days)
    return out


def _req(node: ET.Element, path: str) -> ET.Element:
    """The child at ``path``; a missing section is an error in the source file."""
    found = node.find(path)
    if found is None:
        raise ValueError(f"{node.tag}: missing {path}")
    return found


def _num(text: str | None) -> float:
    if text is None:
        raise ValueError("missing number")
    return float(text.strip())


def _mpor_nodes(parent: ET.Element, tag: str) -> dict[str, ET.Element]:
    return {node.get("mporDays", ""): node for node in parent.findall(tag)}


def _bucket_weights(node: ET.Element) -> dict[str, float]:
    return {w.get("bucket", ""): _num(w.text) for w in node.findall("Weight")}


def _single_weight(node: ET.Element) -> float:
    weights = node.findall("Weight")
    if len(weights) != 1 or weights[0].get("bucket"):
        raise ValueError(f"expected one flat weight in {node.tag}")
    return _num(weights[0].text)


def _vega_by_bucket(node: ET.Element, buckets: Sequence[str]) -> dict[str, float]:
    weights = node.findall("Weight")
    if len(weights) == 1 and not weights[0].get("bucket"):
        return {b: _num(weights[0].text) for b in buckets}
    return {w.get("bucket", ""): _num(w.text) for w in weights}


def _matrix(node: ET.Element, labels: Sequence[str], diagonal: float = 1.0) -> list[list[float]]:
    index = {label: i for i, label in enumerate(labels)}
    out = [[diagonal if i == j else float("nan") for j in labels] for i in labels]
    for corr in node.findall("Correlation"):
        i, j = index[corr.get("label1", "")], index[corr.get("label2", "")]
        out[i][j] = _num(corr.text)
    for i, row in enumerate(out):
        for j, value in enumerate(row):
            if value != value:  # NaN: missing entry
                raise ValueError(f"{node.tag}: no correlation for {labels[i]}/{labels[j]}")
    return out


def _thresholds(node: ET.Element) -> dict[str, float] | float:
    items = node.findall("Threshold")
    if len(items) == 1 and not items[0].get("bucket"):
        return _num(items[0].text)
    return {t.get("bucket", ""): _num(t.text) for t in items}


def _currency_lists(node: ET.Element) -> tuple[dict[str, list[str]], str]:
    groups: dict[str, list[str]] = {}
    other = ""
    for ccy in node.findall("Currency"):
        bucket = ccy.get("bucket", "")
        if (ccy.text or "").strip() == "Other":
            other = bucket
            groups.setdefault(bucket, [])
        else:
            groups.setdefault(bucket, []).append((ccy.text or "").strip())
    if not other:
        raise ValueError("currency list without an 'Other' group")
    return {k: sorted(v) for k, v in groups.items() if v}, other


def _ordered_buckets(weights: dict[str, float]) -> list[str]:
    numeric = sorted((b for b in weights if b != "Residual"), key=int)
    return numeric + (["Residual"] if "Residual" in weights else [])


def _interest_rate(node: ET.Element, mpor: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rw = _req(node, "RiskWeights")
    corr = _req(node, "Correlations")
    conc = _req(node, "ConcentrationThresholds")
    for days, delta in _mpor_nodes(rw, "Delta").items():
        table: dict[str, list[float]] = {}
        for w in delta.findall("Weight"):
            table.setdefault(w.get("bucket", ""), [0.0] * len(TENORS))[
                TENORS.index(w.get("label1", ""))
            ] = _num(w.text)
        entry = mpor.setdefault(days, {}).setdefault("interest_rate", {})
        entry["delta"] = table
    for tag, key in (("Vega", "vega"),):
        for days, vega in _mpor_nodes(rw, tag).items():
            mpor[days]["interest_rate"][key] = _single_weight(vega)
    for tag, key in (
        ("HistoricalVolatilityRatio", "hvr"),
        ("Inflation", "inflation"),
        ("XCcyBasis", "xccy_basis"),
    ):
        for days, item in _mpor_nodes(rw, tag).items():
            mpor[days]["interest_rate"][key] = _num(item.text)
    ccy_node = _req(rw, "CurrencyLists")
    conc_ccy = _req(conc, "CurrencyLists")
    intra = _req(corr, "IntraBucket")
    buckets, other = _currency_lists(ccy_node)
    categories, other_category = _currency_lists(conc_ccy)
    delta_t, vega_t = _req(conc, "Delta"), _req(conc, "Vega")
    return {
        "currency_buckets": buckets,
        "other_currency_bucket": other,
        "tenor_correlations": _matrix(intra, TENORS),
        "subcurve_correlation": _num(corr.findtext("SubCurves")),
        "inflation_correlation": _num(corr.findtext("Inflation")),
        "xccy_basis_correlation": _num(corr.findtext("XCcyBasis")),
        "inter_currency_correlation": _num(corr.findtext("Outer")),
        "concentration": {
            "currency_categories": categories,
            "other_category": other_category,
            "delta": _thresholds(delta_t),
            "vega": _thresholds(vega_t),
        },
    }


def _credit_intra(node: ET.Element) -> dict[str, float]:
    out = {}
    for c in node.findall("Correlation"):
        key = (c.get("label1", ""), c.get("label2", ""))
        out[key] = _num(c.text)
    residual = {v for k, v in out.items() if k[0] == "residual"}
    if len(residual) != 1:
        raise ValueError("expected one residual intra-bucket credit correlation")
    return {
        "same_correlation": out[("aggregate", "same")],
        "different_correlation": out[("aggregate", "different")],
        "residual_correlation": residual.pop(),
    }


def _bucketed_class(
    node: ET.Element, key: str, mpor: dict[str, dict[str, Any]], *, hvr: bool
) -> list[str]:
    rw = _req(node, "RiskWeights")
    buckets: list[str] = []
    for days, delta in _mpor_nodes(rw, "Delta").items():
        weights = _bucket_weights(delta)
        buckets = _ordered_buckets(weights)
        mpor.setdefault(days, {}).setdefault(key, {})["delta"] = weights
    for days, vega in _mpor_nodes(rw, "Vega").items():
        mpor[days][key]["vega"] = _vega_by_bucket(vega, buckets)
    if hvr:
        for days, item in _mpor_nodes(rw, "HistoricalVolatilityRatio").items():
            mpor[days][key]["hvr"] = _num(item.text)
    for days, item in _mpor_nodes(rw, "BaseCorrelation").items():
        mpor[days][key]["base_correlation"] = _num(item.text)
    return buckets


def _concentration(node: ET.Element) -> dict[str, Any]:
    conc = _req(node, "ConcentrationThresholds")
    delta, vega = _req(conc, "Delta"), _req(conc, "Vega")
    return {"delta": _thresholds(delta), "vega": _thresholds(vega)}


def _credit(node: ET.Element, key: str, mpor: dict[str, dict[str, Any]]) -> dict[str, Any]:
    buckets = _bucketed_class(node, key, mpor, hvr=False)
    corr = _req(node, "Correlations")
    intra, inter = _req(corr, "IntraBucket"), _req(corr, "InterBucket")
    out: dict[str, Any] = {"buckets": buckets, **_credit_intra(intra)}
    numeric = [b for b in buckets if b != "Residual"]
    if key == "credit_qualifying":
        out["inter_bucket_correlations"] = _matrix(inter, numeric)
        out["base_correlation_correlation"] = _num(corr.findtext("BaseCorrelation"))
    else:
        values = {_num(c.text) for c in inter.findall("Correlation")}
        if len(values) != 1:
            raise ValueError("expected one credit non-qualifying inter-bucket correlation")
        out["inter_bucket_correlation"] = values.pop()
    out["concentration"] = _concentration(node)
    return out


def _equity_like(node: ET.Element, key: str, mpor: dict[str, dict[str, Any]]) -> dict[str, Any]:
    buckets = _bucketed_class(node, key, mpor, hvr=True)
    corr = _req(node, "Correlations")
    intra, inter = _req(corr, "IntraBucket"), _req(corr, "InterBucket")
    intra_map = {c.get("bucket", ""): _num(c.text) for c in intra.findall("Correlation")}
    numeric = [b for b in buckets if b != "Residual"]
    return {
        "buckets": buckets,
        "intra_bucket_correlations": {b: intra_map[b] for b in numeric},
        "inter_bucket_correlations": _matrix(inter, numeric),
        "concentration": _concentration(node),
    }


def _fx(node: ET.Element, mpor: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rw = _req(node, "RiskWeights")
    corr = _req(node, "Correlations")
    conc = _req(node, "ConcentrationThresholds")
    ccy_node = _req(rw, "CurrencyLists")
    groups, regular = _currency_lists(ccy_node)
    high = sorted(c for g, ccys in groups.items() if g != regular for c in ccys)
    high_labels = {g for g in groups if g != regular} or {"__none__"}

    def index(label: str) -> int:  # 0: regular volatility group, 1: high volatility group
        return 0 if label == regular else 1

    for days, delta in _mpor_nodes(rw, "Delta").items():
        m = [[0.0, 0.0], [0.0, 0.0]]
        for w in delta.findall("Weight"):
            m[index(w.get("label1", ""))][index(w.get("label2", ""))] = _num(w.text)
        mpor.setdefault(days, {}).setdefault("fx", {})["delta"] = m
    for days, vega in _mpor_nodes(rw, "Vega").items():
        mpor[days]["fx"]["vega"] = _single_weight(vega)
    for days, item in _mpor_nodes(rw, "HistoricalVolatilityRatio").items():
        mpor[days]["fx"]["hvr"] = _num(item.text)
    intra = _req(corr, "IntraBucket")
    by_calc: dict[int, list[list[float]]] = {0: [[0.0] * 2, [0.0] * 2], 1: [[0.0] * 2, [0.0] * 2]}
    for c in intra.findall("Correlation"):
        calc = index(c.get("bucket", ""))
        by_calc[calc][index(c.get("label1", ""))][index(c.get("label2", ""))] = _num(c.text)
    conc_ccy = _req(conc, "CurrencyLists")
    delta_t, vega_t = _req(conc, "Delta"), _req(conc, "Vega")
    categories, other_category = _currency_lists(conc_ccy)
    del high_labels
    return {
        "high_volatility_currencies": high,
        "correlations_regular_calculation_currency": by_calc[0],
        "correlations_high_calculation_currency": by_calc[1],
        "vega_correlation": _num(corr.findtext("Volatility")),
        "concentration": {
            "currency_categories": categories,
            "other_category": other_category,
            "delta": _thresholds(delta_t),
            "vega": _thresholds(vega_t),
        },
    }


def convert(xml_text: str, *, version: str, aliases: Sequence[str], source: str) -> dict[str, Any]:
    """Return the calibration in ``xml_text`` as our JSON document (a plain dict)."""
    # the operator's ORE calibration file; expat resolves no external entity and bounds
    # entity expansion (Python 3.11 with expat >= 2.4.1)
    root = ET.fromstring(xml_text)  # noqa: S314
    cal = root if root.tag == "SIMMCalibration" else root.find("SIMMCalibration")
    if cal is None:
        raise ValueError("no SIMMCalibration element")
    mpor: dict[str, dict[str, Any]] = {}

    def section(tag: str) -> ET.Element:
        found = cal.find(tag)
        if found is None:
            raise ValueError(f"missing section {tag}")
        return found

    doc: dict[str, Any] = {
        "format": "marginflow-simm-calibration/1",
        "version": version,
        "aliases": list(aliases),
        "effective_date": cal.findtext("AdditionalFields/SIMM_EffectiveDate"),
        "source": source,
        "tenors": list(TENORS),
        "credit_tenors": list(CREDIT_TENORS),
        "ir_subcurves": list(IR_SUBCURVES),
        "equity_curvature_zero_buckets": ["12"],
        "credit_non_qualifying_correlation_by_label2": True,
        "interest_rate": _interest_rate(section("InterestRate"), mpor),
        "credit_qualifying": _credit(section("CreditQualifying"), "credit_qualifying", mpor),
        "credit_non_qualifying": _credit(
            section("CreditNonQualifying"), "credit_non_qualifying", mpor
        ),
        "equity": _equity_like(section("Equity"), "equity", mpor),
        "commodity": _equity_like(section("Commodity"), "commodity", mpor),
        "fx": _fx(section("FX"), mpor),
        "risk_class_order": list(RISK_CLASSES),
        "risk_class_correlations": _matrix(section("RiskClassCorrelations"), RISK_CLASSES),
    }
    for days, entry in mpor.items():
        entry["curvature_weights"] = {
            "tenor": curvature_weights(int(days)),
            "credit_tenor": [curvature_weights(int(days))[TENORS.index(t)] for t in CREDIT_TENORS],
        }
    doc["mpor"] = {d: mpor[d] for d in sorted(mpor, key=lambda d: -int(d))}
    return doc


def dumps(value: Any, indent: int = 0) -> str:
    """JSON with one line per scalar list (a matrix row, a tenor vector), so that a reviewer
    reads a calibration diff the way the ISDA tables are printed."""
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [pad + dumps(v, indent + 2) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--version", required=True, help="ISDA version name, e.g. 2.6")
    parser.add_argument("--alias", action="append", default=[], help="other accepted names")
    parser.add_argument("--provenance", default="", help="text for the 'source' field")
    args = parser.parse_args(argv)
    try:  # the operator's file: one line, not a traceback, when it cannot be used
        if not args.source.is_file():  # a folder or /dev/zero is never an XML file
            raise ValueError("not a regular file")
        doc = convert(
            args.source.read_text(encoding="utf-8"),
            version=args.version,
            aliases=args.alias,
            source=args.provenance or f"re-expressed from {args.source.name}",
        )
    except OSError as exc:
        parser.exit(2, f"error: {args.source}: cannot be read: {exc.strerror or exc}\n")
    except (ET.ParseError, ValueError, KeyError) as exc:
        parser.exit(2, f"error: {args.source}: not an ORE SIMM calibration: {exc}\n")
    args.target.write_text(dumps(doc) + "\n")
    print(f"wrote {args.target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
