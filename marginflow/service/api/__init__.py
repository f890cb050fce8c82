"""The REST API, versioned under ``/api/v1``: one router per area. Handlers parse, call the
use case (``marginflow.app``) or the query scope, and shape the answer; no business logic
lives here."""
