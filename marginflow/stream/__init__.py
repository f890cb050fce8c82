"""The event log (embedded and Kafka), versioned event schemas, stateful micro-batch
workers with a documented commit protocol, and drift monitoring."""
