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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from marginflow.core.errors import MSG_END_DATE_RANGE, RowFailure, ValidationError
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
# Plausible Schedule maturities: beyond them a date is a typo (9999-12-31 as "no end"), and
# the ACT/ACT year fraction would step past year 9999.
END_DATE_RANGE = (np.datetime64("1900-01-01", "D"), np.datetime64("2199-12-31", "D"))
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


@dataclass(frozen=True, slots=True)
class CrifLoad:
    """A loader's answer: the valid rows and one failure per rejected row."""

    crif: Crif
    failures: tuple[RowFailure, ...]

    @property
    def rejected_lines(self) -> int:
        """Rejected input rows. Each has exactly one failure (its first bad field); counting
        distinct lines instead would merge rows whose line is not known (0) or shared (two
        records on one line, split by a lone CR)."""
        return len(self.failures)


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
        # unsafe: an integer beyond 2**53 (a uint64 up to 1.8e19) is rounded, not refused
        as_float = pc.cast(arr, pa.float64(), safe=False)
        values = np.asarray(as_float.to_numpy(zero_copy_only=False), dtype=float)
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

    Fields are checked in the order below; a row fails on its first bad field.
    """
    if "RiskType" not in columns:
        raise ValidationError("RiskType", MSG_MISSING_COLUMN.format(choices="RiskType, risk_type"))
    if "Amount" not in columns and "AmountUSD" not in columns:
        raise ValidationError(
            "Amount", MSG_MISSING_COLUMN.format(choices="Amount (+AmountCurrency) or AmountUSD")
        )
    rows = _Rows(columns, calibration)
    risk_type = _risk_types(rows)
    im_model = _im_models(rows, risk_type)
    schedule = im_model == IM_MODEL_SCHEDULE
    product_class = _product_classes(rows, risk_type, schedule)
    qualifier, qualifiers = _qualifiers(rows, risk_type)
    bucket = _buckets(rows, risk_type)
    label1 = _tenors(rows, risk_type)
    label2, labels2 = _subcurves(rows, risk_type)
    amounts = _amounts(rows, risk_type)
    collect_regs, post_regs, regulation_sets = _regulations(rows)
    end_date = _end_dates(rows, schedule)
    portfolio, portfolios = rows.encoded("PortfolioID")
    if "PortfolioID" not in columns:
        portfolios = [DEFAULT_PORTFOLIO]
    trade, trades = _trades(rows, schedule)

    line_no = lines if lines is not None else np.arange(2, rows.n + 2, dtype=np.int64)
    failures = rows.fail.to_list(source, line_no, raw or rows.raw_text)
    crif = Crif(
        source=source,
        line=np.asarray(line_no, dtype=np.int64),
        portfolio=portfolio,
        portfolios=tuple(portfolios),
        trade=trade,
        trades=tuple(trades),
        product_class=product_class,
        risk_type=risk_type,
        qualifier=qualifier,
        qualifiers=tuple(qualifiers),
        bucket=bucket,
        label1=label1,
        label2=label2,
        labels2=tuple(labels2),
        amount=amounts.amount,
        amount_currency=amounts.currency,
        currencies=tuple(amounts.currencies),
        amount_usd=amounts.amount_usd,
        collect_regs=collect_regs,
        post_regs=post_regs,
        regulation_sets=tuple(regulation_sets),
        im_model=np.where(im_model < 0, 0, im_model).astype(np.int8),
        end_date=end_date,
        version=calibration.version,
    )
    good = ~rows.fail.bad
    if not good.all():
        crif = crif.take(good)
    return CrifLoad(crif=crif, failures=tuple(failures))


class _Rows:
    """The raw columns of one validation pass, the calibration they are checked against,
    and the failures found so far."""

    def __init__(
        self, columns: Mapping[str, pa.Array | pa.ChunkedArray], calibration: Calibration
    ) -> None:
        self.columns = columns
        self.calibration = calibration
        self.n = len(columns["RiskType"])
        self.fail = _Failures(self.n)
        self._encoded: dict[str, tuple[I32, list[str]]] = {}

    def encoded(self, name: str) -> tuple[I32, list[str]]:
        """Column ``name`` dictionary-encoded (all '' when absent), encoded once."""
        if name not in self._encoded:
            self._encoded[name] = _encode(self.columns.get(name), self.n)
        return self._encoded[name]

    def raw_text(self, i: int) -> str:
        """Row ``i`` as ``name=value`` pairs (the input text when no ``raw`` is given)."""
        parts = []
        for name, col in self.columns.items():
            value = col[i].as_py()
            parts.append(f"{name}={'' if value is None else value}")
        return ", ".join(parts)


def _risk_types(rows: _Rows) -> I8:
    """Risk type codes; an unknown one fails and reads as PV (checked no further)."""
    idx, values = rows.encoded("RiskType")
    lut = np.array([RISK_TYPE_BY_NAME.get(v.lower(), -1) for v in values], dtype=np.int8)
    risk_type = lut[idx]
    rows.fail.add(
        risk_type < 0, "RiskType", lambda r: MSG_UNKNOWN_RISK_TYPE.format(value=values[idx[r]])
    )
    return np.where(risk_type < 0, RiskType.PV, risk_type).astype(np.int8)


def _im_models(rows: _Rows, risk_type: I8) -> I8:
    """IM model codes (SIMM, Schedule; -1 unknown); Schedule rows must be Notional or PV."""
    idx, values = rows.encoded("IMModel")

    def code(v: str) -> int:
        low = v.lower()
        if low == "" or low.startswith("simm"):
            return IM_MODEL_SIMM
        return IM_MODEL_SCHEDULE if low == "schedule" else -1

    im_model = np.array([code(v) for v in values], dtype=np.int8)[idx]
    rows.fail.add(im_model < 0, "IMModel", lambda r: MSG_IM_MODEL.format(value=values[idx[r]]))
    rt_idx, rt_values = rows.encoded("RiskType")
    rows.fail.add(
        (im_model == IM_MODEL_SCHEDULE)
        & (risk_type != RiskType.NOTIONAL)
        & (risk_type != RiskType.PV),
        "RiskType",
        lambda r: MSG_SCHEDULE_RISK_TYPE.format(value=rt_values[rt_idx[r]]),
    )
    return im_model


def _product_classes(rows: _Rows, risk_type: I8, schedule: NDArray[np.bool_]) -> I8:
    """Product class codes: a SIMM product class for sensitivities, a Schedule one for
    Schedule rows (parameters and notionals may leave it empty)."""
    idx, values = rows.encoded("ProductClass")
    lut = np.array(
        [PRODUCT_CLASS_BY_NAME.get(v.lower(), -1 if v == "" else -2) for v in values],
        dtype=np.int8,
    )
    product_class = lut[idx]
    sensitivity = risk_type < RiskType.PRODUCT_CLASS_MULTIPLIER
    rows.fail.add(
        sensitivity & ((product_class < 0) | (product_class > ProductClass.COMMODITY)),
        "ProductClass",
        lambda r: MSG_BAD_PRODUCT_CLASS.format(choices=_SIMM_CLASSES, value=values[idx[r]]),
    )
    rows.fail.add(
        schedule & ((product_class < 0) | (product_class == ProductClass.RATES_FX)),
        "ProductClass",
        lambda r: MSG_BAD_PRODUCT_CLASS.format(choices=_SCHEDULE_CLASSES, value=values[idx[r]]),
    )
    return product_class


_SIMM_CLASSES = ", ".join(PRODUCT_CLASS_NAMES[ProductClass(i)] for i in range(4))
_SCHEDULE_CLASSES = "Rates, FX, Credit, Equity, Commodity, Other"


def _qualifiers(rows: _Rows, risk_type: I8) -> tuple[I32, list[str]]:
    """Qualifier codes into the sorted distinct qualifiers; currencies (CNH read as CNY),
    currency pairs and product class names are checked and normalised."""
    idx, values = rows.encoded("Qualifier")

    def normal(rt: int, q: int) -> str | None:
        text = values[q]
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

    def reason(r: int) -> str:
        rt = RiskType(int(risk_type[r]))
        value = values[idx[r]]
        if rt == RiskType.FX_VOL:
            return MSG_NOT_PAIR.format(value=value)
        if rt == RiskType.PRODUCT_CLASS_MULTIPLIER:
            return MSG_BAD_PRODUCT_CLASS.format(choices=_SIMM_CLASSES, value=value)
        return MSG_NOT_CURRENCY.format(value=value)

    inv, norm = _pair_lut(risk_type, idx, normal)
    rows.fail.add(np.array([v is None for v in norm], dtype=bool)[inv], "Qualifier", reason)
    qualifiers = sorted({v for v in norm if v is not None})
    code_of = {v: i for i, v in enumerate(qualifiers)}
    codes = np.array([code_of[v] if v is not None else -1 for v in norm], dtype=np.int32)
    return codes[inv], qualifiers


def _buckets(rows: _Rows, risk_type: I8) -> I32:
    """Bucket index into the risk class's bucket list (-1 where there is none); an
    interest-rate bucket, when given, must be one of the calibration's."""
    cal = rows.calibration
    n_ir = cal.interest_rate.delta_rw.shape[0]
    idx, values = rows.encoded("Bucket")

    def normal(rt: int, b: int) -> int:
        text = values[b]
        if rt in BUCKETED:
            names = _bucket_list(cal, RiskType(rt))
            text = "Residual" if text.lower() == "residual" else text.lstrip("0") or text
            return names.index(text) if text in names else (-3 if text == "" else -2)
        if rt in (RiskType.IR_CURVE, RiskType.IR_VOL, RiskType.INFLATION_VOL) and text:
            return -1 if text.lstrip("0") in {str(i + 1) for i in range(n_ir)} else -2
        return -1

    inv, norm = _pair_lut(risk_type, idx, normal)
    bucket = np.array(norm, dtype=np.int32)[inv]

    def reason(r: int) -> str:
        rt = RiskType(int(risk_type[r]))
        if bucket[r] == -3:
            return MSG_BUCKET_MISSING.format(risk_type=RISK_TYPE_NAMES[rt])
        if rt in BUCKETED:
            choices = ", ".join(_bucket_list(cal, rt))
        else:
            choices = ", ".join(str(i + 1) for i in range(n_ir))
        return MSG_BUCKET_RANGE.format(
            value=values[idx[r]],
            version=cal.version,
            risk_type=RISK_TYPE_NAMES[rt],
            choices=choices,
        )

    rows.fail.add(bucket <= -2, "Bucket", reason)
    return np.where(bucket < 0, -1, bucket).astype(np.int32)


def _tenors(rows: _Rows, risk_type: I8) -> I8:
    """Label1 as an index into :data:`TENORS` (credit: the calibration's credit tenors
    only), -1 where the risk type has no tenor."""
    idx, values = rows.encoded("Label1")
    tenor_index = {t.lower(): i for i, t in enumerate(TENORS)}
    credit_ok = {t.lower() for t in rows.calibration.credit_tenors}

    def normal(rt: int, l1: int) -> int:
        low = values[l1].lower()
        if rt in TENOR_LABELLED:
            return tenor_index.get(low, -2)
        if rt in CREDIT_TENOR_LABELLED:
            return tenor_index[low] if low in credit_ok else -2
        return -1

    def reason(r: int) -> str:
        rt = RiskType(int(risk_type[r]))
        allowed = rows.calibration.credit_tenors if rt in CREDIT_TENOR_LABELLED else TENORS
        return MSG_TENOR.format(
            value=values[idx[r]], risk_type=RISK_TYPE_NAMES[rt], choices=", ".join(allowed)
        )

    inv, norm = _pair_lut(risk_type, idx, normal)
    label1 = np.array(norm, dtype=np.int8)[inv]
    rows.fail.add(label1 == -2, "Label1", reason)
    return label1


def _subcurves(rows: _Rows, risk_type: I8) -> tuple[I32, list[str]]:
    """Label2 codes: IR sub-curves are checked and normalised; other Label2 values
    (credit, non-qualifying group names) are kept as given."""
    idx, values = rows.encoded("Label2")
    allowed = rows.calibration.ir_subcurves
    subcurves = {s.lower(): s for s in allowed}

    def normal(rt: int, l2: int) -> str | None:
        text = values[l2]
        return subcurves.get(text.lower()) if rt == RiskType.IR_CURVE else text

    inv, norm = _pair_lut(risk_type, idx, normal)
    rows.fail.add(
        np.array([v is None for v in norm], dtype=bool)[inv],
        "Label2",
        lambda r: MSG_SUBCURVE.format(value=values[idx[r]], choices=", ".join(allowed)),
    )
    labels2 = sorted({v for v in norm if v is not None})
    code_of = {v: i for i, v in enumerate(labels2)}
    codes = np.array([code_of.get(v, -1) if v is not None else -1 for v in norm], dtype=np.int32)
    return codes[inv], labels2


@dataclass(frozen=True, slots=True)
class _Amounts:
    amount: F64
    amount_usd: F64
    currency: I32
    currencies: list[str]


def _amounts(rows: _Rows, risk_type: I8) -> _Amounts:
    """Amount and AmountUSD (NaN where absent), AmountCurrency codes; a row needs an amount
    it can be converted from, and a product class multiplier must not be negative."""
    amount = _checked_numbers(rows, "Amount")
    amount_usd = _checked_numbers(rows, "AmountUSD")
    idx, values = rows.encoded("AmountCurrency")
    normal = [_normal_currency(v) if v else "" for v in values]
    rows.fail.add(
        np.array([v is None for v in normal], dtype=bool)[idx],
        "AmountCurrency",
        lambda r: MSG_NOT_CURRENCY.format(value=values[idx[r]]),
    )
    currencies = sorted({v for v in normal if v})
    code_of = {v: i for i, v in enumerate(currencies)}
    currency = np.array([code_of.get(v or "", -1) for v in normal], dtype=np.int32)[idx]
    unitless = (risk_type == RiskType.PRODUCT_CLASS_MULTIPLIER) | (
        risk_type == RiskType.ADD_ON_NOTIONAL_FACTOR
    )
    has_ccy_amount = ~np.isnan(amount) & (currency >= 0)
    rows.fail.add(
        ~unitless & ~has_ccy_amount & np.isnan(amount_usd), "Amount", lambda r: MSG_NO_AMOUNT
    )
    rows.fail.add(unitless & np.isnan(amount), "Amount", lambda r: MSG_NO_AMOUNT)
    rows.fail.add(
        (risk_type == RiskType.PRODUCT_CLASS_MULTIPLIER) & (amount < 0),
        "Amount",
        lambda r: MSG_NEGATIVE_MULTIPLIER.format(value=float(amount[r])),
    )
    return _Amounts(amount, amount_usd, currency, currencies)


def _checked_numbers(rows: _Rows, name: str) -> F64:
    """Column ``name`` as numbers, NaN where empty; text that is not a number, an infinite
    value and one above :data:`MAX_ABS_AMOUNT` fail."""
    raw = rows.columns.get(name)
    values, bad = _numbers(raw, rows.n)
    rows.fail.add(
        bad,
        name,
        lambda r: MSG_NOT_NUMBER.format(value=raw[r].as_py() if raw is not None else ""),
    )
    rows.fail.add(np.isinf(values), name, lambda r: MSG_NOT_FINITE.format(value=float(values[r])))
    rows.fail.add(
        np.abs(values) > MAX_ABS_AMOUNT,
        name,
        lambda r: MSG_TOO_LARGE.format(limit=MAX_ABS_AMOUNT, value=float(values[r])),
    )
    return np.where(np.isfinite(values), values, np.nan)


def _regulations(rows: _Rows) -> tuple[I32, I32, list[frozenset[str]]]:
    """CollectRegulation and PostRegulation as codes into the distinct regulation sets
    (code 0: the empty set)."""
    sets: list[frozenset[str]] = [frozenset()]
    set_code: dict[frozenset[str], int] = {frozenset(): 0}

    def codes(name: str) -> I32:
        idx, values = rows.encoded(name)
        lut = []
        for v in values:
            s = _regulation_set(v)
            if s not in set_code:
                set_code[s] = len(sets)
                sets.append(s)
            lut.append(set_code[s])
        return np.array(lut, dtype=np.int32)[idx]

    collect = codes("CollectRegulation")
    return collect, codes("PostRegulation"), sets


def _end_dates(rows: _Rows, schedule: NDArray[np.bool_]) -> NDArray[np.datetime64]:
    """EndDate (NaT where absent or unreadable); required on Schedule rows."""
    idx, values = rows.encoded("EndDate")
    parsed = [_parse_date(v) if v else None for v in values]
    end_date = np.array(
        [np.datetime64("NaT", "D") if d is None else d for d in parsed], dtype="datetime64[D]"
    )[idx]
    empty = np.array([v == "" for v in values], dtype=bool)[idx]
    rows.fail.add(schedule & empty, "EndDate", lambda r: MSG_END_DATE_MISSING)
    rows.fail.add(
        schedule & np.isnat(end_date),
        "EndDate",
        lambda r: MSG_END_DATE.format(value=values[idx[r]]),
    )
    low, high = END_DATE_RANGE
    rows.fail.add(
        schedule & ((end_date < low) | (end_date > high)),
        "EndDate",
        lambda r: MSG_END_DATE_RANGE.format(value=values[idx[r]], low=low, high=high),
    )
    return end_date


def _trades(rows: _Rows, schedule: NDArray[np.bool_]) -> tuple[I32, list[str]]:
    """TradeID codes (-1 where empty); required on Schedule rows."""
    idx, values = rows.encoded("TradeID")
    empty = np.array([v == "" for v in values], dtype=bool)[idx]
    trade = np.where(empty, -1, idx).astype(np.int32)
    rows.fail.add(schedule & (trade < 0), "TradeID", lambda r: MSG_TRADE_REQUIRED)
    return trade, values
