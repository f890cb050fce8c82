"""Stress testing: named, versioned stress scenario sets and what the engine makes of them.

* :mod:`.scenarios`: the one model of a stress set (:class:`~.scenarios.StressSet`: market-wide
  and per-underlying shocks with their date ranges and sources, a content fingerprint), its
  TOML file form, hypothetical sets from the user scenario file, and the materialised
  :class:`~marginflow.scenarios.scenario_set.ScenarioSet` the engine revalues;
* :mod:`.historical`: the builders of the built-in sets (``historical``: the largest moves
  of the S&P 500 and NASDAQ series shipped with ``arch``, vol from the VIX or a calibrated
  proxy; ``published``: the shocks of ``margin-worked-examples.md`` §5);
* :mod:`.library`: the built-in sets as stored, one file per version in ``stress/sets``.

Layer: over ``io`` (files are read through its checks and the scenario-file reader) and
beside ``backtest``, under ``app``. May import core, scenarios and io; app and the shells
import it.
"""
