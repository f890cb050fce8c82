"""The SIMM vocabulary: risk types, product classes, risk classes and margin types, as small
integer codes (they index arrays in the vectorised calculator) with their CRIF spellings.

Risk class order follows the ISDA risk-class correlation table (interest rate, credit
qualifying, credit non-qualifying, equity, commodity, FX).
"""

from __future__ import annotations

from enum import IntEnum


class RiskType(IntEnum):
    """CRIF ``RiskType`` values. Sensitivities first, then SIMM parameters and Schedule data."""

    IR_CURVE = 0
    INFLATION = 1
    XCCY_BASIS = 2
    IR_VOL = 3
    INFLATION_VOL = 4
    CREDIT_Q = 5
    CREDIT_VOL = 6
    BASE_CORR = 7
    CREDIT_NON_Q = 8
    CREDIT_VOL_NON_Q = 9
    EQUITY = 10
    EQUITY_VOL = 11
    COMMODITY = 12
    COMMODITY_VOL = 13
    FX = 14
    FX_VOL = 15
    PRODUCT_CLASS_MULTIPLIER = 16
    ADD_ON_NOTIONAL_FACTOR = 17
    ADD_ON_FIXED_AMOUNT = 18
    NOTIONAL = 19
    PV = 20


RISK_TYPE_NAMES: dict[RiskType, str] = {
    RiskType.IR_CURVE: "Risk_IRCurve",
    RiskType.INFLATION: "Risk_Inflation",
    RiskType.XCCY_BASIS: "Risk_XCcyBasis",
    RiskType.IR_VOL: "Risk_IRVol",
    RiskType.INFLATION_VOL: "Risk_InflationVol",
    RiskType.CREDIT_Q: "Risk_CreditQ",
    RiskType.CREDIT_VOL: "Risk_CreditVol",
    RiskType.BASE_CORR: "Risk_BaseCorr",
    RiskType.CREDIT_NON_Q: "Risk_CreditNonQ",
    RiskType.CREDIT_VOL_NON_Q: "Risk_CreditVolNonQ",
    RiskType.EQUITY: "Risk_Equity",
    RiskType.EQUITY_VOL: "Risk_EquityVol",
    RiskType.COMMODITY: "Risk_Commodity",
    RiskType.COMMODITY_VOL: "Risk_CommodityVol",
    RiskType.FX: "Risk_FX",
    RiskType.FX_VOL: "Risk_FXVol",
    RiskType.PRODUCT_CLASS_MULTIPLIER: "Param_ProductClassMultiplier",
    RiskType.ADD_ON_NOTIONAL_FACTOR: "Param_AddOnNotionalFactor",
    RiskType.ADD_ON_FIXED_AMOUNT: "Param_AddOnFixedAmount",
    RiskType.NOTIONAL: "Notional",
    RiskType.PV: "PV",
}
RISK_TYPE_BY_NAME: dict[str, RiskType] = {v.lower(): k for k, v in RISK_TYPE_NAMES.items()}

N_SENSITIVITY_TYPES = 16
"""Risk types with codes below this are sensitivities (negated on the post side)."""


class ProductClass(IntEnum):
    """CRIF ``ProductClass``. The first four are SIMM's; the rest are Schedule-only
    (the regulatory grid splits rates and FX and has an 'Other' class)."""

    RATES_FX = 0
    CREDIT = 1
    EQUITY = 2
    COMMODITY = 3
    RATES = 4
    FX = 5
    OTHER = 6


PRODUCT_CLASS_NAMES: dict[ProductClass, str] = {
    ProductClass.RATES_FX: "RatesFX",
    ProductClass.CREDIT: "Credit",
    ProductClass.EQUITY: "Equity",
    ProductClass.COMMODITY: "Commodity",
    ProductClass.RATES: "Rates",
    ProductClass.FX: "FX",
    ProductClass.OTHER: "Other",
}
PRODUCT_CLASS_BY_NAME: dict[str, ProductClass] = {
    v.lower(): k for k, v in PRODUCT_CLASS_NAMES.items()
}
N_SIMM_PRODUCT_CLASSES = 4


class RiskClass(IntEnum):
    """SIMM risk classes in the order of ISDA's risk-class correlation table."""

    INTEREST_RATE = 0
    CREDIT_Q = 1
    CREDIT_NON_Q = 2
    EQUITY = 3
    COMMODITY = 4
    FX = 5


RISK_CLASS_NAMES: dict[RiskClass, str] = {
    RiskClass.INTEREST_RATE: "InterestRate",
    RiskClass.CREDIT_Q: "CreditQualifying",
    RiskClass.CREDIT_NON_Q: "CreditNonQualifying",
    RiskClass.EQUITY: "Equity",
    RiskClass.COMMODITY: "Commodity",
    RiskClass.FX: "FX",
}


class MarginType(IntEnum):
    DELTA = 0
    VEGA = 1
    CURVATURE = 2
    BASE_CORR = 3


MARGIN_TYPE_NAMES: dict[MarginType, str] = {
    MarginType.DELTA: "Delta",
    MarginType.VEGA: "Vega",
    MarginType.CURVATURE: "Curvature",
    MarginType.BASE_CORR: "BaseCorr",
}

RISK_CLASS_OF: dict[RiskType, RiskClass] = {
    RiskType.IR_CURVE: RiskClass.INTEREST_RATE,
    RiskType.INFLATION: RiskClass.INTEREST_RATE,
    RiskType.XCCY_BASIS: RiskClass.INTEREST_RATE,
    RiskType.IR_VOL: RiskClass.INTEREST_RATE,
    RiskType.INFLATION_VOL: RiskClass.INTEREST_RATE,
    RiskType.CREDIT_Q: RiskClass.CREDIT_Q,
    RiskType.CREDIT_VOL: RiskClass.CREDIT_Q,
    RiskType.BASE_CORR: RiskClass.CREDIT_Q,
    RiskType.CREDIT_NON_Q: RiskClass.CREDIT_NON_Q,
    RiskType.CREDIT_VOL_NON_Q: RiskClass.CREDIT_NON_Q,
    RiskType.EQUITY: RiskClass.EQUITY,
    RiskType.EQUITY_VOL: RiskClass.EQUITY,
    RiskType.COMMODITY: RiskClass.COMMODITY,
    RiskType.COMMODITY_VOL: RiskClass.COMMODITY,
    RiskType.FX: RiskClass.FX,
    RiskType.FX_VOL: RiskClass.FX,
}

VOL_RISK_TYPES = frozenset(
    {
        RiskType.IR_VOL,
        RiskType.INFLATION_VOL,
        RiskType.CREDIT_VOL,
        RiskType.CREDIT_VOL_NON_Q,
        RiskType.EQUITY_VOL,
        RiskType.COMMODITY_VOL,
        RiskType.FX_VOL,
    }
)
"""Vega risk types: each feeds both a vega and a curvature margin."""

CURRENCY_QUALIFIED = frozenset(
    {
        RiskType.IR_CURVE,
        RiskType.INFLATION,
        RiskType.XCCY_BASIS,
        RiskType.IR_VOL,
        RiskType.INFLATION_VOL,
        RiskType.FX,
    }
)
"""Risk types whose qualifier is an ISO currency code."""

TENOR_LABELLED = frozenset(
    {
        RiskType.IR_CURVE,
        RiskType.IR_VOL,
        RiskType.INFLATION_VOL,
        RiskType.EQUITY_VOL,
        RiskType.COMMODITY_VOL,
        RiskType.FX_VOL,
    }
)
"""Risk types whose Label1 is one of the twelve SIMM tenors (2w ... 30y)."""

CREDIT_TENOR_LABELLED = frozenset(
    {RiskType.CREDIT_Q, RiskType.CREDIT_NON_Q, RiskType.CREDIT_VOL, RiskType.CREDIT_VOL_NON_Q}
)
"""Risk types whose Label1 is one of the five credit tenors (1y, 2y, 3y, 5y, 10y)."""

BUCKETED = frozenset(
    {
        RiskType.CREDIT_Q,
        RiskType.CREDIT_VOL,
        RiskType.CREDIT_NON_Q,
        RiskType.CREDIT_VOL_NON_Q,
        RiskType.EQUITY,
        RiskType.EQUITY_VOL,
        RiskType.COMMODITY,
        RiskType.COMMODITY_VOL,
    }
)
"""Risk types whose CRIF Bucket is required and must be one of the version's buckets."""

# Regulations in the order ORE ranks them when two give the same margin (its enum order);
# names not listed rank after these, alphabetically.
REGULATION_ORDER: tuple[str, ...] = (
    "APRA",
    "CFTC",
    "ESA",
    "FINMA",
    "KFSC",
    "HKMA",
    "JFSA",
    "MAS",
    "OSFI",
    "RBI",
    "SEC",
    "SEC-unseg",
    "USPR",
    "NONREG",
    "BACEN",
    "SANT",
    "SFC",
    "UK",
    "AMFQ",
    "BANX",
    "OJK",
    "Included",
    "Unspecified",
)
UNSPECIFIED = "Unspecified"
EXCLUDED = "Excluded"
