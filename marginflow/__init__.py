"""marginflow: near-real-time initial margin, cleared and non-cleared.

Package map (imports point down the stack only)::

    core      identifiers, instruments, accounts, struct-of-arrays batches, errors
    market    spot, dividends, rate curves, implied-volatility surfaces
    pricing   vectorised option pricing: BSM, Black-76, American (ALO), Greeks, implied vol
    scenarios scenario generation: filtered historical, Monte Carlo, user files
    margin    clearing-house margin models: expected shortfall, SPAN-style, TIMS-style
    simm      ISDA SIMM and Schedule IM from CRIF sensitivities
    engine    incremental margin state: recompute exactly what changed
    stream    the event log, schemas, stateful micro-batch workers, drift
    service   REST API, web pages, persistence
    io        file loaders that return good rows and structured failures
    cli       the ``marginflow`` command-line tool
"""

__version__ = "0.1.0"
