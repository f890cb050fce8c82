"""A validated CRIF held as parallel arrays (struct of arrays), strings dictionary-encoded.

:func:`build_crif` turns raw string columns into a :class:`Crif` plus a list of
:class:`~marginflow.core.errors.RowFailure` (line, field, reason), validating every row
against one SIMM calibration (its buckets and tenors). Valid rows are kept; invalid rows are
reported with the input they came from, never silently dropped.

Conventions
-----------
* ``amount`` is the CRIF ``Amount`` in ``AmountCurrency``; ``amount_usd`` the CRIF
  ``AmountUSD``; either may be NaN when absent. Sensitivities follow the CRIF sign convention
  (the change in the portfolio value of the file's owner).
* ``label1`` holds the index of the tenor in :data:`TENORS` (credit tenors are a subset), or -1.
* ``bucket`` holds the index of the bucket in the risk class's bucket list of the calibration
  the file was validated against (-1 where the risk type has no bucket); interest-rate buckets
  are derived from the currency and not stored.
* Regulation columns become codes into ``regulation_sets`` (code 0 is the empty set).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from marginflow.core.errors import RowFailure, ValidationError
from marginflow.simm.calibration import Calibration
from marginflow.simm.currencies import ACCEPTED_CURRENCIES, CURRENCY_ALIASES
from marginflow.simm.risk import (
    BUCKETED,
    CREDIT_TENOR_LABELLED,
    CURRENCY_QUALIFIED,
    PRODUCT_CLASS_BY_NAME,
    PRODUCT_CLASS_NAMES,
    REGULATION_ORDER,
    RISK_TYPE_BY_NAME,
    RISK_TYPE_NAMES,
    TENOR_LABELLED,
    ProductClass,
    RiskType,
)

I8 = NDArray[np.int8]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

TENORS: tuple[str, ...] = (
    "2w",
    "1m",
    "3m",
    "6m",
    "1y",
    "2y",
    "3y",
    "5y",
    "10y",
    "15y",
    "20y",
    "30y",
)
DEFAULT_PORTFOLIO = "DEFAULT"
# Largest |Amount| / |AmountUSD| accepted, in any currency. 1e20 is beyond any real
# sensitivity or notional (1e20 of the weakest currency is still above 1e15 USD), and keeps
# SIMM's products and squares of weighted sensitivities far from double overflow (1.8e308),
# where a finite input such as 1e300 would otherwise turn a margin into inf or NaN.
MAX_ABS_AMOUNT = 1e20
IM_MODEL_SIMM = 0
IM_MODEL_SCHEDULE = 1

# Canonical CRIF column names, and the spellings accepted for each (compared lower-case with
# '_' and spaces removed): ISDA's CRIF names and the ones ORE writes.
COLUMNS: dict[str, tuple[str, ...]] = {
    "TradeID": ("tradeid",),
    "PortfolioID": ("portfolioid",),
    "ProductClass": ("productclass",),
    "RiskType": ("risktype",),
    "Qualifier": ("qualifier",),
    "Bucket": ("bucket",),
    "Label1": ("label1",),
    "Label2": ("label2",),
    "Amount": ("amount",),
    "AmountCurrency": ("amountcurrency", "currency"),
    "AmountUSD": ("amountusd",),
    "PostRegulation": ("postregulation", "postregulations"),
    "CollectRegulation": ("collectregulation", "collectregulations"),
    "EndDate": ("enddate",),
    "IMModel": ("immodel",),
}
_ALIAS = {alias: name for name, aliases in COLUMNS.items() for alias in aliases}

MSG_UNKNOWN_RISK_TYPE = "unknown risk type {value!r}"
MSG_BAD_PRODUCT_CLASS = "must be one of {choices}, got {value!r}"
MSG_NOT_CURRENCY = "is not an ISO currency code: {value!r}"
MSG_NOT_PAIR = "is not a currency pair (two ISO codes): {value!r}"
MSG_BUCKET_RANGE = (
    "bucket {value!r} is outside the buckets of SIMM {version} for {risk_type}: {choices}"
)
MSG_BUCKET_MISSING = "is required for {risk_type}"
MSG_TENOR = "tenor label {value!r} is not allowed for {risk_type} (allowed: {choices})"
MSG_SUBCURVE = "sub-curve label {value!r} is not allowed for Risk_IRCurve (allowed: {choices})"
MSG_NOT_NUMBER = "is not a number: {value!r}"
MSG_NOT_FINITE = "must be finite, got {value!r}"
MSG_TOO_LARGE = "magnitude must be at most {limit:g}, got {value:g}"
MSG_NO_AMOUNT = "no amount: give Amount with AmountCurrency, or AmountUSD"
MSG_NEGATIVE_MULTIPLIER = "a product class multiplier must be >= 0, got {value!r}"
MSG_IM_MODEL = "unknown IM model {value!r} (expected SIMM or Schedule)"
MSG_END_DATE = "is not a date (YYYY-MM-DD): {value!r}"
MSG_END_DATE_MISSING = "is required for Schedule rows"
MSG_SCHEDULE_RISK_TYPE = "Schedule rows must have risk type Notional or PV, got {value!r}"
MSG_TRADE_REQUIRED = "is required for Schedule rows (it pairs a trade's Notional and PV)"
MSG_MISSING_COLUMN = "column is missing (accepted names: {choices})"


@dataclass(frozen=True, slots=True)
class Crif:
    """Validated CRIF rows as arrays of length ``n``; see the module docstring for units."""

    source: str
    line: I64
    portfolio: I32
    portfolios: tuple[str, ...]
    trade: I32
    trades: tuple[str, ...]
    product_class: I8
    risk_type: I8
    qualifier: I32
    qualifiers: tuple[str, ...]
    bucket: I32
    label1: I8
    label2: I32
    labels2: tuple[str, ...]
    amount: F64
    amount_currency: I32
    currencies: tuple[str, ...]
    amount_usd: F64
    collect_regs: I32
    post_regs: I32
    regulation_sets: tuple[frozenset[str], ...]
    im_model: I8
    end_date: NDArray[np.datetime64]
    version: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.line.shape[0])

    def take(self, index: NDArray[Any]) -> Crif:
        """Rows selected by an index or boolean mask (string tables are shared)."""
        arrays = {
            name: getattr(self, name)[index]
            for name in (
                "line",
                "portfolio",
                "trade",
                "product_class",
                "risk_type",
                "qualifier",
                "bucket",
                "label1",
                "label2",
                "amount",
                "amount_currency",
                "amount_usd",
                "collect_regs",
                "post_regs",
                "im_model",
                "end_date",
            )
        }
        return replace(self, **arrays)

    @property
    def has_trade_ids(self) -> bool:
        return bool(self.trades) and bool(np.any(self.trade >= 0))


@dataclass(frozen=True, slots=True)
class CrifLoad:
    """A loader's answer: the valid rows and one failure per rejected field."""

    crif: Crif
    failures: tuple[RowFailure, ...]

    @property
    def rejected_lines(self) -> int:
        return len({f.line for f in self.failures})


def canonical_column(name: str) -> str | None:
    """The canonical CRIF name of a header (``post_regulations`` -> ``PostRegulation``)."""
    key = re.sub(r"[\s_]", "", name.strip().lstrip("\ufeff")).lower()
    return _ALIAS.get(key)


class _Failures:
    """Collects failures as (row index, field, reason) without building objects per row."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items: list[tuple[NDArray[np.intp], str, list[str]]] = []
        self.bad = np.zeros(n, dtype=bool)

    def add(self, mask: NDArray[np.bool_], field: str, reason: Callable[[int], str]) -> None:
        rows = np.flatnonzero(mask & ~self.bad)
        if rows.size:
            self.items.append((rows, field, [reason(int(r)) for r in rows]))
            self.bad[rows] = True

    def to_list(self, source: str, lines: I64, raw: Callable[[int], str]) -> list[RowFailure]:
        out = [
            RowFailure(source, int(lines[r]), field, reason, raw(int(r)))
            for rows, field, reasons in self.items
            for r, reason in zip(rows, reasons, strict=True)
        ]
        out.sort(key=lambda f: f.line)
        return out


def _encode(column: pa.Array | pa.ChunkedArray | None, n: int) -> tuple[I32, list[str]]:
    """Dictionary-encode a string column (nulls become ''), values stripped."""
    if column is None:
        return np.zeros(n, dtype=np.int32), [""]
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    arr = pc.utf8_trim_whitespace(pc.fill_null(arr, ""))
    encoded = pc.dictionary_encode(arr)
    indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    values: list[str] = encoded.dictionary.to_pylist()
    if not values:
        values = [""]
    return indices, values


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _numbers(column: pa.Array | pa.ChunkedArray | None, n: int) -> tuple[F64, NDArray[np.bool_]]:
    """Parse a numeric column: (values with NaN where empty or bad, mask of non-numeric)."""
    if column is None:
        return np.full(n, np.nan), np.zeros(n, dtype=bool)
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
        values = np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
        return values, np.zeros(n, dtype=bool)
    arr = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
    empty = pc.fill_null(pc.equal(arr, ""), True)
    null = pa.scalar(None, pa.string())
    try:
        parsed = pc.cast(pc.if_else(empty, null, arr), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Some entries are not numbers: parse only those that look like one.
        ok = pc.fill_null(pc.match_substring_regex(arr, _NUMBER.pattern), False)
        parsed = pc.cast(pc.if_else(ok, arr, null), pa.float64())
    values = np.asarray(parsed.to_numpy(zero_copy_only=False), dtype=float)
    empty_np = np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)
    return values, ~empty_np & np.isnan(values)


def _pair_lut(
    codes_a: NDArray[Any], codes_b: NDArray[Any], fn: Callable[[int, int], Any]
) -> tuple[NDArray[np.intp], list[Any]]:
    """Evaluate ``fn`` once per distinct (a, b) pair; return (row -> result index, results)."""
    width = int(codes_b.max(initial=0)) + 1
    combined = codes_a.astype(np.int64) * width + codes_b.astype(np.int64)
    uniq, inverse = np.unique(combined, return_inverse=True)
    results = [fn(int(u // width), int(u % width)) for u in uniq]
    return inverse.reshape(-1), results


def _normal_currency(text: str) -> str | None:
    code = text.strip().upper()
    return code if code in ACCEPTED_CURRENCIES else None


def _normal_pair(text: str) -> str | None:
    cleaned = re.sub(r"[/.,\-_|;: ]", "", text.strip().upper())
    if len(cleaned) != 6:
        return None
    a, b = cleaned[:3], cleaned[3:]
    if a not in ACCEPTED_CURRENCIES or b not in ACCEPTED_CURRENCIES:
        return None
    a, b = CURRENCY_ALIASES.get(a, a), CURRENCY_ALIASES.get(b, b)
    return a + b if a <= b else b + a


def _bucket_list(cal: Calibration, rt: RiskType) -> tuple[str, ...]:
    rc = {
        RiskType.CREDIT_Q: cal.credit_q,
        RiskType.CREDIT_VOL: cal.credit_q,
        RiskType.CREDIT_NON_Q: cal.credit_non_q,
        RiskType.CREDIT_VOL_NON_Q: cal.credit_non_q,
        RiskType.EQUITY: cal.equity,
        RiskType.EQUITY_VOL: cal.equity,
        RiskType.COMMODITY: cal.commodity,
        RiskType.COMMODITY_VOL: cal.commodity,
    }[rt]
    return rc.buckets


_DATE_FORMATS = (
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), (1, 2, 3)),
    (re.compile(r"^(\d{4})(\d{2})(\d{2})$"), (1, 2, 3)),
    (re.compile(r"^(\d{2})/(\d{2})/(\d{4})$"), (3, 2, 1)),
)


def _parse_date(text: str) -> np.datetime64 | None:
    for pattern, (y, m, d) in _DATE_FORMATS:
        match = pattern.match(text.strip())
        if match:
            try:
                return np.datetime64(f"{match[y]}-{match[m]}-{match[d]}", "D")
            except ValueError:
                return None
    return None


def _regulation_set(text: str) -> frozenset[str]:
    canonical = {r.upper(): r for r in (*REGULATION_ORDER, "Excluded")}
    tokens = [t for t in re.split(r"[,\[\] ]+", text) if t]
    return frozenset(canonical.get(t.upper(), t) for t in tokens)


def build_crif(
    columns: Mapping[str, pa.Array | pa.ChunkedArray],
    *,
    calibration: Calibration,
    source: str,
    lines: I64 | None = None,
    raw: Callable[[int], str] | None = None,
) -> CrifLoad:
    """Validate raw CRIF columns (canonical names, see :data:`COLUMNS`) against
    ``calibration`` and return the valid rows and the failures.

    ``lines`` gives the 1-based line (or row) number of each input row for messages;
    ``raw(i)`` returns the input text of row ``i`` for the failure record. Raises
    :class:`ValidationError` when a required column is missing (nothing can be computed).
    """
    if "RiskType" not in columns:
        raise ValidationError("RiskType", MSG_MISSING_COLUMN.format(choices="RiskType, risk_type"))
    if "Amount" not in columns and "AmountUSD" not in columns:
        raise ValidationError(
            "Amount", MSG_MISSING_COLUMN.format(choices="Amount (+AmountCurrency) or AmountUSD")
        )
    n = len(columns["RiskType"])
    line_no = lines if lines is not None else np.arange(2, n + 2, dtype=np.int64)
    fail = _Failures(n)

    def raw_text(i: int) -> str:
        if raw is not None:
            return raw(i)
        parts = []
        for name, col in columns.items():
            value = col[i].as_py()
            parts.append(f"{name}={'' if value is None else value}")
        return ", ".join(parts)

    # Risk type
    rt_idx, rt_values = _encode(columns.get("RiskType"), n)
    rt_lut = np.array([RISK_TYPE_BY_NAME.get(v.lower(), -1) for v in rt_values], dtype=np.int8)
    risk_type = rt_lut[rt_idx]
    fail.add(
        risk_type < 0,
        "RiskType",
        lambda r: MSG_UNKNOWN_RISK_TYPE.format(value=rt_values[rt_idx[r]]),
    )
    rt_safe = np.where(risk_type < 0, RiskType.PV, risk_type).astype(np.int8)

    # IM model and product class
    im_idx, im_values = _encode(columns.get("IMModel"), n)

    def im_code(v: str) -> int:
        low = v.lower()
        if low == "" or low.startswith("simm"):
            return IM_MODEL_SIMM
        return IM_MODEL_SCHEDULE if low == "schedule" else -1

    im_model = np.array([im_code(v) for v in im_values], dtype=np.int8)[im_idx]
    fail.add(im_model < 0, "IMModel", lambda r: MSG_IM_MODEL.format(value=im_values[im_idx[r]]))
    schedule = im_model == IM_MODEL_SCHEDULE
    fail.add(
        schedule & (rt_safe != RiskType.NOTIONAL) & (rt_safe != RiskType.PV),
        "RiskType",
        lambda r: MSG_SCHEDULE_RISK_TYPE.format(value=rt_values[rt_idx[r]]),
    )
    pc_idx, pc_values = _encode(columns.get("ProductClass"), n)
    pc_lut = np.array(
        [PRODUCT_CLASS_BY_NAME.get(v.lower(), -1 if v == "" else -2) for v in pc_values],
        dtype=np.int8,
    )
    product_class = pc_lut[pc_idx]
    sensitivity = rt_safe < RiskType.PRODUCT_CLASS_MULTIPLIER
    simm_names = ", ".join(PRODUCT_CLASS_NAMES[ProductClass(i)] for i in range(4))
    fail.add(
        sensitivity & ((product_class < 0) | (product_class > ProductClass.COMMODITY)),
        "ProductClass",
        lambda r: MSG_BAD_PRODUCT_CLASS.format(choices=simm_names, value=pc_values[pc_idx[r]]),
    )
    schedule_names = "Rates, FX, Credit, Equity, Commodity, Other"
    fail.add(
        schedule & ((product_class < 0) | (product_class == ProductClass.RATES_FX)),
        "ProductClass",
        lambda r: MSG_BAD_PRODUCT_CLASS.format(choices=schedule_names, value=pc_values[pc_idx[r]]),
    )

    # Qualifier: currencies and currency pairs are checked and normalised.
    q_idx, q_values = _encode(columns.get("Qualifier"), n)

    def norm_qualifier(rt: int, q: int) -> str | None:
        text = q_values[q]
        if rt in CURRENCY_QUALIFIED:
            code = _normal_currency(text)
            return None if code is None else CURRENCY_ALIASES.get(code, code)
        if rt == RiskType.FX_VOL:
            return _normal_pair(text)
        if rt == RiskType.PRODUCT_CLASS_MULTIPLIER:
            pc_code = PRODUCT_CLASS_BY_NAME.get(text.lower())
            if pc_code is None or pc_code > ProductClass.COMMODITY:
                return None
            return PRODUCT_CLASS_NAMES[pc_code]
        return text

    q_inv, q_norm = _pair_lut(rt_safe, q_idx, norm_qualifier)
    q_bad = np.array([v is None for v in q_norm], dtype=bool)[q_inv]

    def q_reason(r: int) -> str:
        rt = RiskType(int(rt_safe[r]))
        value = q_values[q_idx[r]]
        if rt == RiskType.FX_VOL:
            return MSG_NOT_PAIR.format(value=value)
        if rt == RiskType.PRODUCT_CLASS_MULTIPLIER:
            return MSG_BAD_PRODUCT_CLASS.format(choices=simm_names, value=value)
        return MSG_NOT_CURRENCY.format(value=value)

    fail.add(q_bad, "Qualifier", q_reason)
    qualifiers = sorted({v for v in q_norm if v is not None})
    q_code_of = {v: i for i, v in enumerate(qualifiers)}
    qualifier = np.array([q_code_of[v] if v is not None else -1 for v in q_norm], dtype=np.int32)[
        q_inv
    ]

    # Bucket
    b_idx, b_values = _encode(columns.get("Bucket"), n)

    def norm_bucket(rt: int, b: int) -> int:
        text = b_values[b]
        if rt in BUCKETED:
            names = _bucket_list(calibration, RiskType(rt))
            text = "Residual" if text.lower() == "residual" else text.lstrip("0") or text
            return names.index(text) if text in names else (-3 if text == "" else -2)
        if rt in (RiskType.IR_CURVE, RiskType.IR_VOL, RiskType.INFLATION_VOL) and text:
            n_ir = calibration.interest_rate.delta_rw.shape[0]
            return -1 if text.lstrip("0") in {str(i + 1) for i in range(n_ir)} else -2
        return -1

    b_inv, b_norm = _pair_lut(rt_safe, b_idx, norm_bucket)
    bucket = np.array(b_norm, dtype=np.int32)[b_inv]

    def b_reason(r: int) -> str:
        rt = RiskType(int(rt_safe[r]))
        if bucket[r] == -3:
            return MSG_BUCKET_MISSING.format(risk_type=RISK_TYPE_NAMES[rt])
        if rt in BUCKETED:
            choices = ", ".join(_bucket_list(calibration, rt))
        else:
            choices = ", ".join(
                str(i + 1) for i in range(calibration.interest_rate.delta_rw.shape[0])
            )
        return MSG_BUCKET_RANGE.format(
            value=b_values[b_idx[r]],
            version=calibration.version,
            risk_type=RISK_TYPE_NAMES[rt],
            choices=choices,
        )

    fail.add(bucket <= -2, "Bucket", b_reason)
    bucket = np.where(bucket < 0, -1, bucket).astype(np.int32)

    # Label1: tenors
    l1_idx, l1_values = _encode(columns.get("Label1"), n)
    tenor_index = {t.lower(): i for i, t in enumerate(TENORS)}
    credit_ok = {t.lower() for t in calibration.credit_tenors}

    def norm_label1(rt: int, l1: int) -> int:
        low = l1_values[l1].lower()
        if rt in TENOR_LABELLED:
            return tenor_index.get(low, -2)
        if rt in CREDIT_TENOR_LABELLED:
            return tenor_index[low] if low in credit_ok else -2
        return -1

    l1_inv, l1_norm = _pair_lut(rt_safe, l1_idx, norm_label1)
    label1 = np.array(l1_norm, dtype=np.int8)[l1_inv]

    def l1_reason(r: int) -> str:
        rt = RiskType(int(rt_safe[r]))
        allowed = calibration.credit_tenors if rt in CREDIT_TENOR_LABELLED else TENORS
        return MSG_TENOR.format(
            value=l1_values[l1_idx[r]], risk_type=RISK_TYPE_NAMES[rt], choices=", ".join(allowed)
        )

    fail.add(label1 == -2, "Label1", l1_reason)

    # Label2: IR sub-curves are checked; other Label2 values (credit, non-qualifying group
    # names) are kept as given.
    l2_idx, l2_values = _encode(columns.get("Label2"), n)
    subcurves = {s.lower(): s for s in calibration.ir_subcurves}

    def norm_label2(rt: int, l2: int) -> str | None:
        text = l2_values[l2]
        if rt == RiskType.IR_CURVE:
            return subcurves.get(text.lower())
        return text

    l2_inv, l2_norm = _pair_lut(rt_safe, l2_idx, norm_label2)
    fail.add(
        np.array([v is None for v in l2_norm], dtype=bool)[l2_inv],
        "Label2",
        lambda r: MSG_SUBCURVE.format(
            value=l2_values[l2_idx[r]], choices=", ".join(calibration.ir_subcurves)
        ),
    )
    labels2 = sorted({v for v in l2_norm if v is not None})
    l2_code_of = {v: i for i, v in enumerate(labels2)}
    label2 = np.array(
        [l2_code_of.get(v, -1) if v is not None else -1 for v in l2_norm], dtype=np.int32
    )[l2_inv]

    # Amounts
    amount, amount_bad = _numbers(columns.get("Amount"), n)
    amount_raw = columns.get("Amount")
    fail.add(
        amount_bad,
        "Amount",
        lambda r: MSG_NOT_NUMBER.format(
            value=amount_raw[r].as_py() if amount_raw is not None else ""
        ),
    )
    fail.add(
        np.isinf(amount),
        "Amount",
        lambda r: MSG_NOT_FINITE.format(value=float(amount[r])),
    )
    fail.add(
        np.abs(amount) > MAX_ABS_AMOUNT,
        "Amount",
        lambda r: MSG_TOO_LARGE.format(limit=MAX_ABS_AMOUNT, value=float(amount[r])),
    )
    amount_usd, usd_bad = _numbers(columns.get("AmountUSD"), n)
    usd_raw = columns.get("AmountUSD")
    fail.add(
        usd_bad,
        "AmountUSD",
        lambda r: MSG_NOT_NUMBER.format(value=usd_raw[r].as_py() if usd_raw is not None else ""),
    )
    fail.add(
        np.isinf(amount_usd),
        "AmountUSD",
        lambda r: MSG_NOT_FINITE.format(value=float(amount_usd[r])),
    )
    fail.add(
        np.abs(amount_usd) > MAX_ABS_AMOUNT,
        "AmountUSD",
        lambda r: MSG_TOO_LARGE.format(limit=MAX_ABS_AMOUNT, value=float(amount_usd[r])),
    )
    amount = np.where(np.isfinite(amount), amount, np.nan)
    amount_usd = np.where(np.isfinite(amount_usd), amount_usd, np.nan)
    c_idx, c_values = _encode(columns.get("AmountCurrency"), n)
    c_norm = [_normal_currency(v) if v else "" for v in c_values]
    fail.add(
        np.array([v is None for v in c_norm], dtype=bool)[c_idx],
        "AmountCurrency",
        lambda r: MSG_NOT_CURRENCY.format(value=c_values[c_idx[r]]),
    )
    currencies = sorted({v for v in c_norm if v})
    c_code_of = {v: i for i, v in enumerate(currencies)}
    amount_currency = np.array([c_code_of.get(v or "", -1) for v in c_norm], dtype=np.int32)[c_idx]
    unitless = (rt_safe == RiskType.PRODUCT_CLASS_MULTIPLIER) | (
        rt_safe == RiskType.ADD_ON_NOTIONAL_FACTOR
    )
    has_ccy_amount = ~np.isnan(amount) & (amount_currency >= 0)
    fail.add(
        ~unitless & ~has_ccy_amount & np.isnan(amount_usd),
        "Amount",
        lambda r: MSG_NO_AMOUNT,
    )
    fail.add(unitless & np.isnan(amount), "Amount", lambda r: MSG_NO_AMOUNT)
    fail.add(
        (rt_safe == RiskType.PRODUCT_CLASS_MULTIPLIER) & (amount < 0),
        "Amount",
        lambda r: MSG_NEGATIVE_MULTIPLIER.format(value=float(amount[r])),
    )

    # Regulations
    regulation_sets: list[frozenset[str]] = [frozenset()]
    set_code: dict[frozenset[str], int] = {frozenset(): 0}

    def regs(name: str) -> I32:
        idx, values = _encode(columns.get(name), n)
        lut = []
        for v in values:
            s = _regulation_set(v)
            if s not in set_code:
                set_code[s] = len(regulation_sets)
                regulation_sets.append(s)
            lut.append(set_code[s])
        return np.array(lut, dtype=np.int32)[idx]

    collect_regs = regs("CollectRegulation")
    post_regs = regs("PostRegulation")

    # End date (Schedule rows)
    d_idx, d_values = _encode(columns.get("EndDate"), n)
    d_parsed = [_parse_date(v) if v else None for v in d_values]
    end_date = np.array(
        [np.datetime64("NaT", "D") if d is None else d for d in d_parsed], dtype="datetime64[D]"
    )[d_idx]
    d_empty = np.array([v == "" for v in d_values], dtype=bool)[d_idx]
    fail.add(schedule & d_empty, "EndDate", lambda r: MSG_END_DATE_MISSING)
    fail.add(
        schedule & np.isnat(end_date),
        "EndDate",
        lambda r: MSG_END_DATE.format(value=d_values[d_idx[r]]),
    )

    # Portfolio and trade
    p_idx, p_values = _encode(columns.get("PortfolioID"), n)
    if "PortfolioID" not in columns:
        p_values = [DEFAULT_PORTFOLIO]
    t_idx, t_values = _encode(columns.get("TradeID"), n)
    trade = np.where(np.array([v == "" for v in t_values], dtype=bool)[t_idx], -1, t_idx).astype(
        np.int32
    )

    fail.add(schedule & (trade < 0), "TradeID", lambda r: MSG_TRADE_REQUIRED)

    failures = fail.to_list(source, line_no, raw_text)
    good = ~fail.bad
    crif = Crif(
        source=source,
        line=np.asarray(line_no, dtype=np.int64),
        portfolio=p_idx,
        portfolios=tuple(p_values),
        trade=trade,
        trades=tuple(t_values),
        product_class=product_class,
        risk_type=rt_safe,
        qualifier=qualifier,
        qualifiers=tuple(qualifiers),
        bucket=bucket,
        label1=label1,
        label2=label2,
        labels2=tuple(labels2),
        amount=amount,
        amount_currency=amount_currency,
        currencies=tuple(currencies),
        amount_usd=amount_usd,
        collect_regs=collect_regs,
        post_regs=post_regs,
        regulation_sets=tuple(regulation_sets),
        im_model=np.where(im_model < 0, 0, im_model).astype(np.int8),
        end_date=end_date,
        version=calibration.version,
    )
    if not good.all():
        crif = crif.take(good)
    return CrifLoad(crif=crif, failures=tuple(failures))
