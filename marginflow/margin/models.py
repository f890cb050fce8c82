"""Registry of named, configurable margin models.

==========  ================================================================================
``es``      expected shortfall over scenario P&L (filtered historical, Monte Carlo or user
            scenarios) with anti-procyclicality and concentration add-ons
            (:class:`~marginflow.margin.es_model.ExpectedShortfallModel`)
``span``    SPAN-style 16-scenario risk arrays per contract (:mod:`marginflow.margin.span`)
``pm``      customer portfolio margin, TIMS family (:mod:`marginflow.margin.portfolio_margin`)
==========  ================================================================================

Parameters arrive as ``key=value`` strings (the CLI's ``--param``) and are validated by the
model, naming an unknown key or a value that does not read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from marginflow.core.errors import ConfigurationError

MODELS: Mapping[str, str] = {
    "es": "expected shortfall over scenario P&L, with APC and concentration add-ons",
    "span": "SPAN-style scenario grid (16 risk scenarios per contract)",
    "pm": "customer portfolio margin, TIMS family (valuation points across a price range)",
}


def check_model(name: str) -> str:
    if name not in MODELS:
        raise ConfigurationError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return name


def parse_params(items: Iterable[str]) -> dict[str, str]:
    """``["confidence=0.995", "apc=buffer"]`` → a dict; names the item that is not k=v."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"parameter {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out
