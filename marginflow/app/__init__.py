"""The use cases, as plain functions: margin a book under a model, what-if, SIMM of a CRIF,
reproduce and explain a stored margin. The CLI and the REST API are thin shells over these
and hold no business logic. May import every layer below (core, pricing, scenarios, margin,
simm, engine, io, store, stream); nothing below imports it."""
