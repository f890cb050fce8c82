"""Edges for people: REST API, web pages, persistence, authentication and audit."""
