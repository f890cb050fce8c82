"""The event log (embedded and Kafka), versioned event schemas, stateful micro-batch
workers with a documented commit protocol, and drift monitoring. See ``docs/stream.md``.

Modules, bottom up (each imports only those above it, plus ``core`` and ``engine``)::

    events          versioned event schemas (msgspec Structs with domain checks)
    codec           validating decode -> event or Rejection; dead letters with raw bytes
    topics          the platform's topics, partitioning by key hash
    log/            one Log interface; embedded (segment files) and Kafka implementations
    snapshots       per-partition state snapshots with the offsets they reflect
    worker          the micro-batch loop and its commit protocol (numbered docstring)
    position_keeper trades -> account positions
    risk_calculator positions + market data -> account margins (incremental engine)
    aggregator      account margins -> member partials
    simm_worker     CRIF submissions -> SIMM results (marginflow.simm's calculator)
    sink            SQLite / PostgreSQL upserts keyed by version; risk-parameter audit
    pipeline        the workers in one process; the embedded demo
    loadgen         generated trades and price moves (and ``loadgen_main``)
    reconcile       published results against a batch recompute
    drift           lag and drift per consumer group; Prometheus gauges
    broker          start/stop the local Kafka-protocol broker
    runner          one worker per process (``python -m marginflow.stream.runner``)
    supervisor      keeps a cluster's workers running: restarts with backoff, gives up
    cluster_dir     a cluster directory between runs: resume, refuse, or clear (--fresh)
    cluster         ``marginflow cluster up/status/down``: broker, supervisor, workers
    chaos           SIGKILL supervisor for crash tests and the soak
"""
