"""One entry point for pricing a batch: European or American per option."""

from __future__ import annotations

import numpy as np

from marginflow.core.batch import FloatArray, OptionBatch
from marginflow.pricing.american import american_price
from marginflow.pricing.black_scholes import european_price
from marginflow.pricing.greeks import Greeks, greeks
from marginflow.pricing.implied_vol import ImpliedVolResult, IVStatus, implied_vol

__all__ = ["Greeks", "IVStatus", "ImpliedVolResult", "greeks", "implied_vol", "price"]


def price(batch: OptionBatch) -> FloatArray:
    """Price per unit of underlying: BSM for European options, ALO for American ones."""
    if not batch.is_american.any():
        return european_price(batch)
    if batch.is_american.all():
        return american_price(batch)
    out = np.empty(len(batch))
    am = batch.is_american
    out[~am] = european_price(batch.take(~am))
    out[am] = american_price(batch.take(am))
    return out
