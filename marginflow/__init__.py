"""marginflow: near-real-time initial margin, cleared and non-cleared.

Package map (imports point down the stack only)::

    core      the clearing book (members, accounts, dated instruments, market, history),
              identifiers, struct-of-arrays batches, errors
    pricing   vectorised option pricing: BSM, Black-76, American (ALO), Greeks, implied vol
    scenarios scenario generation: filtered historical, Monte Carlo, user files
    margin    clearing-house margin models: expected shortfall, SPAN-style, TIMS-style
    simm      ISDA SIMM and Schedule IM from CRIF sensitivities
    engine    incremental margin state: recompute exactly what changed; margin settings
    io        file loaders that return good rows and structured failures
    store     persistence with typed rows and migrations
    stream    the event log, schemas, stateful micro-batch workers, drift, file replay
    app       the use cases as plain functions: margin, what-if, SIMM, reproduce, explain
    service   REST API and web pages
    cli       the ``marginflow`` command-line tool
    sim       beside the stack: load generator, synthetic books and CRIFs, chaos, demo
"""

__version__ = "0.2.0"
