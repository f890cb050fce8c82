"""ISO 4217 currency codes, for validating CRIF qualifiers and amount currencies.

The list holds the active alphabetic codes plus a few recently withdrawn ones still seen in
historical files (HRK, SLL, ZWL). ``CNH`` (offshore renminbi) is not an ISO code but is the
market's name for a traded currency; it is accepted, and SIMM treats it as ``CNY`` where the
risk factor is a currency (the ISDA CRIF convention, followed by ORE as well).
"""

from __future__ import annotations

ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
    DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS
    INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR
    PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS
    SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW
    UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA
    YER ZAR ZMW ZWG ZWL
    """.split()  # noqa: SIM905 (a block of codes reads like the ISO table)
)

ACCEPTED_CURRENCIES: frozenset[str] = ISO_4217 | {"CNH"}
"""Codes accepted in a CRIF: ISO 4217 plus CNH."""

CURRENCY_ALIASES: dict[str, str] = {"CNH": "CNY"}
"""Currency-qualified risk factors are normalised through this map (CNH risk is CNY risk)."""


def is_currency(code: str) -> bool:
    """True when ``code`` (upper case, three letters) is an accepted currency code."""
    return code in ACCEPTED_CURRENCIES
