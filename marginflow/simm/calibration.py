"""SIMM calibrations: one JSON file per ISDA version in ``marginflow/simm/params``, loaded into
immutable arrays for one margin period of risk (10-day or 1-day).

A new ISDA release is a new file in that folder (see ``params/README.md``); nothing here names
a version. Versions are selected by ISDA's names (``2.6``, ``2.8+2506``) or by the aliases the
file lists (ORE's internal names such as ``2.5.6``).

Units: risk weights as ISDA publishes them (per bp, per %, or per unit of vega); concentration
thresholds in USD (the files hold USD millions); correlations as fractions.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginflow.core.errors import ConfigurationError

PARAMS_DIR = Path(__file__).resolve().parent / "params"
FORMAT = "marginflow-simm-calibration/1"

# Standard normal quantiles used by the methodology (99% for the vega sigma scaling, 99.5%
# for the curvature lambda), to double precision.
NORMAL_Q99 = 2.3263478740408408
NORMAL_Q995 = 2.5758293035489004

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BucketedParams:
    """One bucketed risk class (credit qualifying / non-qualifying, equity, commodity).

    Arrays are indexed by bucket index (position in ``buckets``). ``intra_same`` is the
    correlation between two risk factors of the same qualifier (for credit non-qualifying from
    version 2.2: of the same Label2 group), ``intra_diff`` between different ones.
    Thresholds are in USD, ``inf`` when concentration does not apply.
    """

    buckets: tuple[str, ...]
    residual: int
    delta_rw: F64
    vega_rw: F64
    hvr: float
    intra_same: F64
    intra_diff: F64
    inter: F64
    delta_threshold: F64
    vega_threshold: F64


@dataclass(frozen=True, slots=True)
class InterestRateParams:
    """Interest-rate risk class. Currency volatility buckets index ``delta_rw`` rows (0-based);
    concentration categories index the threshold arrays."""

    currency_bucket: Mapping[str, int]
    other_bucket: int
    delta_rw: F64
    vega_rw: float
    inflation_rw: float
    xccy_basis_rw: float
    hvr: float
    tenor_corr: F64
    subcurve_corr: float
    inflation_corr: float
    xccy_basis_corr: float
    inter_currency_corr: float
    concentration_category: Mapping[str, int]
    other_category: int
    delta_threshold: F64
    vega_threshold: F64

    def bucket_of(self, currency: str) -> int:
        return self.currency_bucket.get(currency, self.other_bucket)

    def category_of(self, currency: str) -> int:
        return self.concentration_category.get(currency, self.other_category)


@dataclass(frozen=True, slots=True)
class FxParams:
    """FX risk class. Volatility groups: 0 regular, 1 high; ``delta_rw[calc, qualifier]`` and
    correlation matrices indexed by the groups of the two currencies."""

    high_volatility: frozenset[str]
    delta_rw: F64
    vega_rw: float
    hvr: float
    corr_regular_calc: F64
    corr_high_calc: F64
    vega_corr: float
    concentration_category: Mapping[str, int]
    other_category: int
    delta_threshold: F64
    vega_threshold: F64

    def group_of(self, currency: str) -> int:
        return 1 if currency in self.high_volatility else 0

    def category_of(self, currency: str) -> int:
        return self.concentration_category.get(currency, self.other_category)

    def vega_threshold_of(self, pair: str) -> float:
        """Vega threshold of a currency pair from the concentration categories (1, 2, 3) of its
        two currencies: 1-1, 1-2, 1-3, 2-2, 2-3, 3-3 map to the six ISDA pair groups."""
        a, b = sorted((self.category_of(pair[:3]), self.category_of(pair[3:6])))
        index = {(0, 0): 0, (0, 1): 1, (0, 2): 2, (1, 1): 3, (1, 2): 4}.get((a, b), 5)
        return float(self.vega_threshold[index])


@dataclass(frozen=True, slots=True)
class Calibration:
    """Everything the calculator needs for one SIMM version at one margin period of risk."""

    version: str
    aliases: tuple[str, ...]
    effective_date: str | None
    source: str
    mpor_days: int
    tenors: tuple[str, ...]
    credit_tenors: tuple[str, ...]
    ir_subcurves: tuple[str, ...]
    interest_rate: InterestRateParams
    credit_q: BucketedParams
    credit_non_q: BucketedParams
    equity: BucketedParams
    commodity: BucketedParams
    fx: FxParams
    base_corr_rw: float
    base_corr_corr: float
    credit_non_q_by_label2: bool
    equity_curvature_zero_buckets: frozenset[int]
    risk_class_corr: F64
    curvature_weight: F64

    @property
    def sigma_multiplier(self) -> float:
        """sqrt(365 / (1.4 * MPOR days)) / N^-1(99%): turns a delta risk weight into the
        volatility scaling of vega (SIMM technical paper, section I.2)."""
        return math.sqrt(365.0 / (1.4 * self.mpor_days)) / NORMAL_Q99

    @property
    def curvature_ir_scaling(self) -> float:
        """HVR_IR ** -2, the scale applied to the interest-rate curvature margin."""
        return float(self.interest_rate.hvr**-2.0)


def _arr(values: Any) -> F64:
    out = np.asarray(values, dtype=np.float64)
    out.setflags(write=False)
    return out


def _thresholds(spec: Any, keys: list[str], enabled: bool) -> F64:
    if not enabled:
        return _arr([math.inf] * len(keys))
    if isinstance(spec, int | float):
        return _arr([float(spec) * 1e6] * len(keys))
    return _arr([float(spec[k]) * 1e6 for k in keys])


def _category_map(groups: Mapping[str, list[str]], labels: list[str]) -> dict[str, int]:
    return {ccy: labels.index(label) for label, ccys in groups.items() for ccy in ccys}


def _bucketed(
    doc: Mapping[str, Any],
    weights: Mapping[str, Any],
    *,
    kind: str,
    enabled: bool,
) -> BucketedParams:
    buckets: list[str] = list(doc["buckets"])
    residual = buckets.index("Residual") if "Residual" in buckets else -1
    numeric = [b for b in buckets if b != "Residual"]
    n = len(buckets)
    inter = np.zeros((n, n))
    if kind == "credit_non_qualifying":
        inter[: len(numeric), : len(numeric)] = doc["inter_bucket_correlation"]
    else:
        inter[: len(numeric), : len(numeric)] = np.asarray(doc["inter_bucket_correlations"])
    np.fill_diagonal(inter, 0.0)
    same = np.ones(n)
    diff = np.zeros(n)
    if kind in ("credit_qualifying", "credit_non_qualifying"):
        same[:] = doc["same_correlation"]
        diff[:] = doc["different_correlation"]
        if residual >= 0:
            same[residual] = diff[residual] = doc["residual_correlation"]
    else:
        for i, b in enumerate(numeric):
            diff[i] = doc["intra_bucket_correlations"][b]
    vega = weights["vega"]
    vega_rw = [vega[b] if isinstance(vega, dict) else vega for b in buckets]
    conc = doc["concentration"]
    return BucketedParams(
        buckets=tuple(buckets),
        residual=residual,
        delta_rw=_arr([weights["delta"][b] for b in buckets]),
        vega_rw=_arr(vega_rw),
        hvr=float(weights.get("hvr", 1.0)),
        intra_same=_arr(same),
        intra_diff=_arr(diff),
        inter=_arr(inter),
        delta_threshold=_thresholds(conc["delta"], buckets, enabled),
        vega_threshold=_thresholds(conc["vega"], buckets, enabled),
    )


def _interest_rate(
    doc: Mapping[str, Any], w: Mapping[str, Any], enabled: bool
) -> InterestRateParams:
    bucket_labels = sorted([*doc["currency_buckets"], doc["other_currency_bucket"]], key=int)
    conc = doc["concentration"]
    cat_labels = sorted([*conc["currency_categories"], conc["other_category"]], key=int)
    return InterestRateParams(
        currency_bucket=_category_map(doc["currency_buckets"], bucket_labels),
        other_bucket=bucket_labels.index(doc["other_currency_bucket"]),
        delta_rw=_arr([w["delta"][b] for b in bucket_labels]),
        vega_rw=float(w["vega"]),
        inflation_rw=float(w["inflation"]),
        xccy_basis_rw=float(w["xccy_basis"]),
        hvr=float(w["hvr"]),
        tenor_corr=_arr(doc["tenor_correlations"]),
        subcurve_corr=float(doc["subcurve_correlation"]),
        inflation_corr=float(doc["inflation_correlation"]),
        xccy_basis_corr=float(doc["xccy_basis_correlation"]),
        inter_currency_corr=float(doc["inter_currency_correlation"]),
        concentration_category=_category_map(conc["currency_categories"], cat_labels),
        other_category=cat_labels.index(conc["other_category"]),
        delta_threshold=_thresholds(conc["delta"], cat_labels, enabled),
        vega_threshold=_thresholds(conc["vega"], cat_labels, enabled),
    )


def _fx(doc: Mapping[str, Any], w: Mapping[str, Any], enabled: bool) -> FxParams:
    conc = doc["concentration"]
    cat_labels = sorted([*conc["currency_categories"], conc["other_category"]], key=int)
    vega_keys = sorted(conc["vega"], key=int)
    return FxParams(
        high_volatility=frozenset(doc["high_volatility_currencies"]),
        delta_rw=_arr(w["delta"]),
        vega_rw=float(w["vega"]),
        hvr=float(w["hvr"]),
        corr_regular_calc=_arr(doc["correlations_regular_calculation_currency"]),
        corr_high_calc=_arr(doc["correlations_high_calculation_currency"]),
        vega_corr=float(doc["vega_correlation"]),
        concentration_category=_category_map(conc["currency_categories"], cat_labels),
        other_category=cat_labels.index(conc["other_category"]),
        delta_threshold=_thresholds(conc["delta"], cat_labels, enabled),
        vega_threshold=_thresholds(conc["vega"], vega_keys, enabled),
    )


def from_document(doc: Mapping[str, Any], mpor_days: int = 10) -> Calibration:
    """Build a :class:`Calibration` from a parsed calibration file for one MPOR (10 or 1)."""
    if doc.get("format") != FORMAT:
        raise ConfigurationError(
            f"calibration format must be {FORMAT!r}, got {doc.get('format')!r}"
        )
    key = str(mpor_days)
    if key not in doc["mpor"]:
        raise ConfigurationError(
            f"SIMM {doc['version']} has no {mpor_days}-day calibration "
            f"(available: {', '.join(sorted(doc['mpor']))})"
        )
    w = doc["mpor"][key]
    enabled = mpor_days == 10
    equity = _bucketed(doc["equity"], w["equity"], kind="equity", enabled=enabled)
    zero_buckets = frozenset(
        i for i, b in enumerate(equity.buckets) if b in doc["equity_curvature_zero_buckets"]
    )
    return Calibration(
        version=str(doc["version"]),
        aliases=tuple(doc.get("aliases", ())),
        effective_date=doc.get("effective_date"),
        source=str(doc.get("source", "")),
        mpor_days=mpor_days,
        tenors=tuple(doc["tenors"]),
        credit_tenors=tuple(doc["credit_tenors"]),
        ir_subcurves=tuple(doc["ir_subcurves"]),
        interest_rate=_interest_rate(doc["interest_rate"], w["interest_rate"], enabled),
        credit_q=_bucketed(
            doc["credit_qualifying"],
            w["credit_qualifying"],
            kind="credit_qualifying",
            enabled=enabled,
        ),
        credit_non_q=_bucketed(
            doc["credit_non_qualifying"],
            w["credit_non_qualifying"],
            kind="credit_non_qualifying",
            enabled=enabled,
        ),
        equity=equity,
        commodity=_bucketed(doc["commodity"], w["commodity"], kind="commodity", enabled=enabled),
        fx=_fx(doc["fx"], w["fx"], enabled),
        base_corr_rw=float(w["credit_qualifying"]["base_correlation"]),
        base_corr_corr=float(doc["credit_qualifying"]["base_correlation_correlation"]),
        credit_non_q_by_label2=bool(doc.get("credit_non_qualifying_correlation_by_label2", True)),
        equity_curvature_zero_buckets=zero_buckets,
        risk_class_corr=_arr(doc["risk_class_correlations"]),
        curvature_weight=_arr(w["curvature_weights"]["tenor"]),
    )


@functools.cache
def _index() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in sorted(PARAMS_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        for name in (doc["version"], *doc.get("aliases", ())):
            names[str(name).upper()] = path
    return names


def available_versions() -> list[str]:
    """ISDA names of the calibrations shipped, oldest first."""
    versions = {json.loads(p.read_text())["version"] for p in set(_index().values())}
    return sorted(versions, key=_version_key)


def _version_key(name: str) -> tuple[int, ...]:
    digits = [
        int("".join(c for c in part if c.isdigit()) or 0)
        for part in name.replace("+", ".").split(".")
    ]
    return (*digits, 1 if name[-1:].isalpha() else 0)


@functools.cache
def _document(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def load_calibration(version: str, mpor_days: int = 10) -> Calibration:
    """The calibration of SIMM ``version`` (ISDA name or a listed alias) at ``mpor_days``.

    Raises :class:`ConfigurationError` naming the available versions when ``version`` is
    unknown, and when ``mpor_days`` is neither 10 nor 1.
    """
    if mpor_days not in (10, 1):
        raise ConfigurationError(f"mpor_days must be 10 or 1, got {mpor_days!r}")
    path = _index().get(version.strip().upper())
    if path is None:
        raise ConfigurationError(
            f"unknown SIMM version {version!r}; available: {', '.join(available_versions())}"
        )
    return _load(path, mpor_days)


@functools.cache
def _load(path: Path, mpor_days: int) -> Calibration:
    return from_document(_document(path), mpor_days)
