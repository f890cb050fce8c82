"""FX spot rates for converting CRIF amounts into the SIMM calculation currency.

Rates are held as USD per one unit of each currency (USD itself is 1). They come from the user
(``FxRates.of({"EUR": 1.08, ...})`` or a two-column file, read by
:func:`marginflow.io.fx_rates.read_fx_rates`) or, when a CRIF carries both
``Amount`` and ``AmountUSD``, can be implied from it (:func:`implied_from_crif`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from marginflow.core.errors import MSG_FX_USD, ValidationError
from marginflow.simm.crif import Crif
from marginflow.simm.currencies import ACCEPTED_CURRENCIES

MSG_NOT_CURRENCY = "is not an ISO currency code: {value!r}"
MSG_NO_RATE = "no FX rate for {ccy} (USD per {ccy}); give it with --fx-rates"
MSG_BAD_RATE = "FX rate for {ccy} must be a positive number, got {value!r}"
MSG_RATE_RANGE = (
    "FX rate for {ccy} must be between {low:g} and {high:g} USD per unit, got {value!r}"
)
# Plausible USD per unit of any currency: the weakest ISO currencies are ~1e-5 USD and the
# most valuable units (XAU, XPT) ~1e3-1e4 USD. A rate outside this range is a typo that
# would shrink every converted amount to ~0 (or blow it up) without a word.
RATE_RANGE = (1e-9, 1e9)


@dataclass(frozen=True, slots=True)
class FxRates:
    """USD value of one unit of each currency."""

    usd_per_unit: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, usd_per_unit: Mapping[str, float]) -> FxRates:
        """Validated rates: ``usd_per_unit[ccy]`` is the USD value of one unit of ``ccy``
        (EUR 1.08 means 1 EUR = 1.08 USD), within :data:`RATE_RANGE`; USD is always 1."""
        rates = {"USD": 1.0}
        for ccy, value in usd_per_unit.items():
            code = ccy.strip().upper()
            if code not in ACCEPTED_CURRENCIES:
                raise ValidationError("currency", MSG_NOT_CURRENCY.format(value=ccy))
            if code == "USD" and value != 1:  # one USD is one USD: any other rate is a mistake
                raise ValidationError("fx_rate", MSG_FX_USD.format(value=value))
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise ValidationError("fx_rate", MSG_BAD_RATE.format(ccy=code, value=value))
            low, high = RATE_RANGE
            if not low <= value <= high:
                raise ValidationError(
                    "fx_rate",
                    MSG_RATE_RANGE.format(ccy=code, low=low, high=high, value=value),
                )
            rates[code] = float(value)
        return cls(rates)

    def usd_per(self, ccy: str) -> float:
        """USD per one unit of ``ccy``; raises :class:`ValidationError` when unknown."""
        if ccy == "USD":
            return 1.0
        rate = self.usd_per_unit.get(ccy)
        if rate is None:
            raise ValidationError("fx_rate", MSG_NO_RATE.format(ccy=ccy))
        return rate

    def rate(self, base: str, quote: str) -> float:
        """Units of ``quote`` per one unit of ``base``."""
        return self.usd_per(base) / self.usd_per(quote)

    def merged(self, other: FxRates) -> FxRates:
        """These rates, completed by ``other`` for currencies not given here."""
        return FxRates({**other.usd_per_unit, **self.usd_per_unit})


def implied_from_crif(crif: Crif) -> FxRates:
    """Rates implied by rows that carry both Amount (in AmountCurrency) and AmountUSD:
    the median of AmountUSD / Amount per currency, over rows with non-zero amounts."""
    ok = (crif.amount_currency >= 0) & np.isfinite(crif.amount) & np.isfinite(crif.amount_usd)
    ok &= crif.amount != 0.0
    rates: dict[str, float] = {}
    if not ok.any():
        return FxRates({"USD": 1.0})
    codes = crif.amount_currency[ok]
    ratio = crif.amount_usd[ok] / crif.amount[ok]
    order = np.argsort(codes, kind="stable")
    codes, ratio = codes[order], ratio[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    for chunk_codes, chunk in zip(np.split(codes, bounds), np.split(ratio, bounds), strict=True):
        value = float(np.median(chunk))
        if value > 0:
            rates[crif.currencies[int(chunk_codes[0])]] = value
    rates["USD"] = 1.0
    return FxRates(rates)
