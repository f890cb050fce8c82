"""Synthetic CRIFs for tests, demos and benchmarks: random but valid sensitivities covering
every risk class and margin type, with stable qualifier-to-bucket assignments.

The rows are plain dicts with canonical CRIF column names (``write_crif_csv`` writes them,
optionally in ORE's spelling of the regulation columns). Amounts are in ``AmountCurrency``
with a consistent ``AmountUSD`` (from the FX rates in :data:`USD_PER_UNIT`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

TENORS = ("2w", "1m", "3m", "6m", "1y", "2y", "3y", "5y", "10y", "15y", "20y", "30y")
CREDIT_TENORS = ("1y", "2y", "3y", "5y", "10y")
SUBCURVES = ("OIS", "Libor1m", "Libor3m", "Libor6m", "Libor12m", "Prime", "Municipal")
IR_CURRENCIES = (
    "USD",
    "EUR",
    "GBP",
    "JPY",
    "AUD",
    "CHF",
    "CAD",
    "SEK",
    "BRL",
    "TRY",
    "ZAR",
    "MXN",
    "INR",
    "KRW",
)
USD_PER_UNIT: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.0825,
    "GBP": 1.2675,
    "JPY": 0.00668,
    "AUD": 0.6543,
    "CHF": 1.1302,
    "CAD": 0.7311,
    "SEK": 0.0951,
    "BRL": 0.1834,
    "TRY": 0.0298,
    "ZAR": 0.0541,
    "MXN": 0.0587,
    "INR": 0.01198,
    "KRW": 0.000731,
}
COLUMNS = (
    "TradeID",
    "PortfolioID",
    "ProductClass",
    "RiskType",
    "Qualifier",
    "Bucket",
    "Label1",
    "Label2",
    "AmountCurrency",
    "Amount",
    "AmountUSD",
    "CollectRegulation",
    "PostRegulation",
)
ORE_NAMES = {"CollectRegulation": "collect_regulations", "PostRegulation": "post_regulations"}

# (risk type, product class, weight in the mix)
MIX: tuple[tuple[str, str, float], ...] = (
    ("Risk_IRCurve", "RatesFX", 0.30),
    ("Risk_Inflation", "RatesFX", 0.01),
    ("Risk_XCcyBasis", "RatesFX", 0.01),
    ("Risk_IRVol", "RatesFX", 0.08),
    ("Risk_InflationVol", "RatesFX", 0.01),
    ("Risk_FX", "RatesFX", 0.05),
    ("Risk_FXVol", "RatesFX", 0.04),
    ("Risk_CreditQ", "Credit", 0.12),
    ("Risk_CreditVol", "Credit", 0.03),
    ("Risk_BaseCorr", "Credit", 0.01),
    ("Risk_CreditNonQ", "Credit", 0.03),
    ("Risk_CreditVolNonQ", "Credit", 0.01),
    ("Risk_Equity", "Equity", 0.12),
    ("Risk_EquityVol", "Equity", 0.06),
    ("Risk_Commodity", "Commodity", 0.08),
    ("Risk_CommodityVol", "Commodity", 0.04),
)


@dataclass(frozen=True, slots=True)
class CrifSpec:
    """What to generate. ``scale`` multiplies every amount (large values hit concentration
    thresholds); ``names`` is the number of issuers/equities/commodities per class."""

    rows: int = 1000
    portfolios: int = 1
    trades: int = 100
    names: int = 50
    scale: float = 1.0
    regulations: Sequence[str] = ()
    add_ons: bool = False
    seed: int = 7
    risk_types: Sequence[str] = ()


def _bucketed_names(
    prefix: str, n: int, buckets: Sequence[str], rng: np.random.Generator
) -> list[tuple[str, str]]:
    return [(f"{prefix}{i:04d}", str(rng.choice(buckets))) for i in range(n)]


def generate(spec: CrifSpec) -> list[dict[str, Any]]:
    """CRIF rows following ``spec`` (deterministic for a given seed)."""
    rng = np.random.default_rng(spec.seed)
    mix = [m for m in MIX if not spec.risk_types or m[0] in spec.risk_types]
    weights = np.array([m[2] for m in mix])
    kinds = rng.choice(len(mix), size=spec.rows, p=weights / weights.sum())
    credit_q = _bucketed_names("ISSUER", spec.names, [*map(str, range(1, 13)), "Residual"], rng)
    credit_nq = _bucketed_names("RMBS", max(spec.names // 5, 2), ["1", "2", "Residual"], rng)
    equity = _bucketed_names("EQ", spec.names, [*map(str, range(1, 13)), "Residual"], rng)
    commodity = _bucketed_names("CMD", max(spec.names // 2, 2), [str(b) for b in range(1, 18)], rng)
    indices = ["CDX.NA.IG", "CDX.NA.HY", "ITRAXX.EUR", "ITRAXX.XOVER"]
    pairs = ["EURUSD", "USDJPY", "GBPUSD", "EURGBP", "USDBRL", "AUDUSD", "USDTRY", "EURCHF"]
    groups = ["CMBX", "ABX", "MBX"]
    rows: list[dict[str, Any]] = []
    reg_choices = list(spec.regulations)
    for i, k in enumerate(kinds.tolist()):
        rt, pc, _ = mix[k]
        ccy = str(rng.choice(IR_CURRENCIES))
        row: dict[str, Any] = {
            "TradeID": f"T{int(rng.integers(spec.trades)):05d}",
            "PortfolioID": f"P{int(rng.integers(spec.portfolios)):03d}",
            "ProductClass": pc,
            "RiskType": rt,
            "Qualifier": ccy,
            "Bucket": "",
            "Label1": "",
            "Label2": "",
        }
        amount = float(rng.normal(0.0, 1.0))
        if rt == "Risk_IRCurve":
            row.update(Label1=str(rng.choice(TENORS)), Label2=str(rng.choice(SUBCURVES)))
            amount *= 2.0e4
        elif rt in ("Risk_Inflation", "Risk_XCcyBasis"):
            amount *= 1.0e4
        elif rt in ("Risk_IRVol", "Risk_InflationVol"):
            row["Label1"] = str(rng.choice(TENORS))
            amount *= 5.0e5
        elif rt == "Risk_FX":
            amount *= 5.0e6
        elif rt == "Risk_FXVol":
            row.update(Qualifier=str(rng.choice(pairs)), Label1=str(rng.choice(TENORS)))
            amount *= 2.0e5
        elif rt in ("Risk_CreditQ", "Risk_CreditVol"):
            name, bucket = credit_q[int(rng.integers(len(credit_q)))]
            row.update(Qualifier=name, Bucket=bucket, Label1=str(rng.choice(CREDIT_TENORS)))
            if rt == "Risk_CreditQ" and rng.random() < 0.1:
                row["Label2"] = "Sec"
            amount *= 5.0e3 if rt == "Risk_CreditQ" else 2.0e5
        elif rt == "Risk_BaseCorr":
            row["Qualifier"] = str(rng.choice(indices))
            amount *= 1.0e5
        elif rt in ("Risk_CreditNonQ", "Risk_CreditVolNonQ"):
            name, bucket = credit_nq[int(rng.integers(len(credit_nq)))]
            row.update(
                Qualifier=name,
                Bucket=bucket,
                Label1=str(rng.choice(CREDIT_TENORS)),
                Label2=str(rng.choice(groups)),
            )
            amount *= 2.0e3 if rt == "Risk_CreditNonQ" else 1.0e5
        elif rt in ("Risk_Equity", "Risk_EquityVol"):
            name, bucket = equity[int(rng.integers(len(equity)))]
            row.update(Qualifier=name, Bucket=bucket)
            if rt == "Risk_EquityVol":
                row["Label1"] = str(rng.choice(TENORS))
            amount *= 1.0e5 if rt == "Risk_Equity" else 5.0e4
        elif rt in ("Risk_Commodity", "Risk_CommodityVol"):
            name, bucket = commodity[int(rng.integers(len(commodity)))]
            row.update(Qualifier=name, Bucket=bucket)
            if rt == "Risk_CommodityVol":
                row["Label1"] = str(rng.choice(TENORS))
            amount *= 1.0e5 if rt == "Risk_Commodity" else 5.0e4
        amount *= spec.scale
        amount_ccy = (
            ccy
            if rt.startswith("Risk_IR") or rt.startswith("Risk_Infl")
            else str(rng.choice(IR_CURRENCIES[:6]))
        )
        amount_local = amount / USD_PER_UNIT[amount_ccy]
        row.update(
            AmountCurrency=amount_ccy,
            Amount=round(amount_local, 2),
            AmountUSD=round(amount_local, 2) * USD_PER_UNIT[amount_ccy],
        )
        row["CollectRegulation"] = _regs(rng, reg_choices)
        row["PostRegulation"] = _regs(rng, reg_choices)
        rows.append(row)
        del i
    if spec.add_ons:
        rows.extend(_add_ons(spec, rng))
    return rows


def _regs(rng: np.random.Generator, choices: list[str]) -> str:
    if not choices:
        return ""
    k = int(rng.integers(1, len(choices) + 1))
    return ",".join(sorted(rng.choice(choices, size=k, replace=False).tolist()))


def _add_ons(spec: CrifSpec, rng: np.random.Generator) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    reg = ",".join(spec.regulations)
    for p in range(spec.portfolios):
        port = f"P{p:03d}"
        common = {
            "TradeID": "",
            "PortfolioID": port,
            "ProductClass": "",
            "Bucket": "",
            "Label1": "",
            "Label2": "",
        }
        common |= {"CollectRegulation": reg, "PostRegulation": reg}
        for pc, m in (("RatesFX", 1.05), ("Equity", 1.2)):
            out.append(
                common
                | {
                    "RiskType": "Param_ProductClassMultiplier",
                    "Qualifier": pc,
                    "Amount": m,
                    "AmountCurrency": "",
                    "AmountUSD": "",
                }
            )
        out.append(
            common
            | {
                "RiskType": "Param_AddOnFixedAmount",
                "Qualifier": "",
                "Amount": 1.0e6,
                "AmountCurrency": "USD",
                "AmountUSD": 1.0e6,
            }
        )
        out.append(
            common
            | {
                "RiskType": "Param_AddOnNotionalFactor",
                "Qualifier": "Exotic",
                "Amount": 2.5,
                "AmountCurrency": "",
                "AmountUSD": "",
            }
        )
        notional = float(rng.uniform(1e7, 1e8))
        out.append(
            common
            | {
                "RiskType": "Notional",
                "Qualifier": "Exotic",
                "Amount": notional,
                "AmountCurrency": "USD",
                "AmountUSD": notional,
            }
        )
    return out


def write_crif_csv(
    rows: Iterable[Mapping[str, Any]], path: str | Path, *, ore_names: bool = False
) -> Path:
    """Write rows as a CRIF CSV (regulation columns in ORE's spelling with ``ore_names``)."""
    path = Path(path)
    header = [ORE_NAMES.get(c, c) if ore_names else c for c in COLUMNS]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c, "") for c in COLUMNS])
    return path


SCHEDULE_COLUMNS = (*COLUMNS, "EndDate", "IMModel")
SCHEDULE_CLASSES = ("Rates", "FX", "Credit", "Equity", "Commodity", "Other")


def generate_schedule(
    *,
    trades: int = 40,
    portfolios: int = 2,
    start_year: int = 2025,
    regulations: Sequence[str] = (),
    seed: int = 4,
) -> list[dict[str, Any]]:
    """Schedule rows: one Notional and one PV row per trade (a few trades without PV),
    end dates from ``start_year`` on, amounts in USD/EUR/GBP with a consistent AmountUSD."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for p in range(portfolios):
        for t in range(trades):
            pc = str(rng.choice(SCHEDULE_CLASSES))
            year = int(rng.integers(start_year, start_year + 16))
            end = f"{year}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
            ccy = str(rng.choice(["USD", "EUR", "GBP"]))
            regs = _regs(rng, list(regulations))
            values = (
                ("Notional", round(float(rng.uniform(1e6, 5e7)), 2)),
                ("PV", round(float(rng.normal(0, 2e6)), 2)),
            )
            for rt, amount in values:
                if rt == "PV" and t % 17 == 3:
                    continue
                rows.append(
                    {
                        "TradeID": f"S{p}_{t}",
                        "PortfolioID": f"P{p:03d}",
                        "ProductClass": pc,
                        "RiskType": rt,
                        "Qualifier": "",
                        "Bucket": "",
                        "Label1": "",
                        "Label2": "",
                        "AmountCurrency": ccy,
                        "Amount": amount,
                        "AmountUSD": amount * USD_PER_UNIT[ccy],
                        "CollectRegulation": regs,
                        "PostRegulation": regs,
                        "EndDate": end,
                        "IMModel": "Schedule",
                    }
                )
    return rows


def write_schedule_csv(
    rows: Iterable[Mapping[str, Any]], path: str | Path, *, ore_names: bool = False
) -> Path:
    """Write Schedule rows (ORE spells ``end_date``, ``im_model`` and the regulation columns)."""
    names = ORE_NAMES | {"EndDate": "end_date", "IMModel": "im_model"}
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([names.get(c, c) if ore_names else c for c in SCHEDULE_COLUMNS])
        for row in rows:
            writer.writerow(
                ["" if row.get(c) is None else row.get(c, "") for c in SCHEDULE_COLUMNS]
            )
    return path


def generate_table(spec: CrifSpec) -> Any:
    """Like :func:`generate` but vectorised, as a ``pyarrow.Table`` of strings and floats
    (for benchmark-sized files: a million rows in about a second). No add-ons or
    regulations; every risk type of :data:`MIX`."""
    import pyarrow as pa

    rng = np.random.default_rng(spec.seed)
    n = spec.rows
    weights = np.array([m[2] for m in MIX])
    kind = rng.choice(len(MIX), size=n, p=weights / weights.sum())
    rt_names = np.array([m[0] for m in MIX], dtype=object)
    pc_names = np.array([m[1] for m in MIX], dtype=object)
    rt = rt_names[kind]
    ccy = np.array(IR_CURRENCIES, dtype=object)[rng.integers(0, len(IR_CURRENCIES), n)]
    tenor = np.array(TENORS, dtype=object)[rng.integers(0, 12, n)]
    ctenor = np.array(CREDIT_TENORS, dtype=object)[rng.integers(0, 5, n)]
    qualifier = ccy.copy()
    bucket = np.full(n, "", dtype=object)
    label1 = np.full(n, "", dtype=object)
    label2 = np.full(n, "", dtype=object)
    scale = np.ones(n)

    def names(prefix: str, count: int, buckets: list[str], mask: NDArray[np.bool_]) -> None:
        k = int(mask.sum())
        idx = rng.integers(0, count, k)
        table_b = np.array(buckets, dtype=object)[
            np.random.default_rng(len(prefix)).integers(0, len(buckets), count)
        ]
        qualifier[mask] = np.char.add(prefix, idx.astype(str)).astype(object)
        bucket[mask] = table_b[idx]

    is_ = {name: rt == name for name in rt_names}
    ir_tenor = (
        is_["Risk_IRCurve"]
        | is_["Risk_IRVol"]
        | is_["Risk_InflationVol"]
        | is_["Risk_EquityVol"]
        | is_["Risk_CommodityVol"]
        | is_["Risk_FXVol"]
    )
    label1[ir_tenor] = tenor[ir_tenor]
    label2[is_["Risk_IRCurve"]] = np.array(SUBCURVES, dtype=object)[
        rng.integers(0, 7, int(is_["Risk_IRCurve"].sum()))
    ]
    credit = (
        is_["Risk_CreditQ"]
        | is_["Risk_CreditVol"]
        | is_["Risk_CreditNonQ"]
        | is_["Risk_CreditVolNonQ"]
    )
    label1[credit] = ctenor[credit]
    all_buckets = [*map(str, range(1, 13)), "Residual"]
    names("ISSUER", spec.names, all_buckets, is_["Risk_CreditQ"] | is_["Risk_CreditVol"])
    nq = is_["Risk_CreditNonQ"] | is_["Risk_CreditVolNonQ"]
    names("RMBS", max(spec.names // 5, 2), ["1", "2", "Residual"], nq)
    label2[nq] = np.array(["CMBX", "ABX", "MBX"], dtype=object)[rng.integers(0, 3, int(nq.sum()))]
    names("EQ", spec.names, all_buckets, is_["Risk_Equity"] | is_["Risk_EquityVol"])
    names(
        "CMD",
        max(spec.names // 2, 2),
        [str(b) for b in range(1, 18)],
        is_["Risk_Commodity"] | is_["Risk_CommodityVol"],
    )
    pairs = np.array(
        ["EURUSD", "USDJPY", "GBPUSD", "EURGBP", "USDBRL", "AUDUSD", "USDTRY", "EURCHF"],
        dtype=object,
    )
    qualifier[is_["Risk_FXVol"]] = pairs[rng.integers(0, len(pairs), int(is_["Risk_FXVol"].sum()))]
    qualifier[is_["Risk_BaseCorr"]] = np.array(
        ["CDX.NA.IG", "CDX.NA.HY", "ITRAXX.EUR"], dtype=object
    )[rng.integers(0, 3, int(is_["Risk_BaseCorr"].sum()))]
    for name, s in (
        ("Risk_IRCurve", 2e4),
        ("Risk_Inflation", 1e4),
        ("Risk_XCcyBasis", 1e4),
        ("Risk_IRVol", 5e5),
        ("Risk_InflationVol", 5e5),
        ("Risk_FX", 5e6),
        ("Risk_FXVol", 2e5),
        ("Risk_CreditQ", 5e3),
        ("Risk_CreditVol", 2e5),
        ("Risk_BaseCorr", 1e5),
        ("Risk_CreditNonQ", 2e3),
        ("Risk_CreditVolNonQ", 1e5),
        ("Risk_Equity", 1e5),
        ("Risk_EquityVol", 5e4),
        ("Risk_Commodity", 1e5),
        ("Risk_CommodityVol", 5e4),
    ):
        scale[is_[name]] = s
    amount_usd = np.round(rng.normal(0.0, 1.0, n) * scale * spec.scale, 2)
    portfolio = np.char.add("P", rng.integers(0, spec.portfolios, n).astype(str))
    trade = np.char.add("T", rng.integers(0, spec.trades, n).astype(str))
    return pa.table(
        {
            "TradeID": pa.array(trade.astype(object), pa.string()),
            "PortfolioID": pa.array(portfolio.astype(object), pa.string()),
            "ProductClass": pa.array(pc_names[kind], pa.string()),
            "RiskType": pa.array(rt, pa.string()),
            "Qualifier": pa.array(qualifier, pa.string()),
            "Bucket": pa.array(bucket, pa.string()),
            "Label1": pa.array(label1, pa.string()),
            "Label2": pa.array(label2, pa.string()),
            "AmountCurrency": pa.array(np.full(n, "USD", dtype=object), pa.string()),
            "Amount": pa.array(amount_usd),
            "AmountUSD": pa.array(amount_usd),
        }
    )
