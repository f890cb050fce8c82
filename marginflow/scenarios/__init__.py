"""Scenario generation for margin models: filtered historical simulation, Monte Carlo,
user-supplied shock files. May import core, market and pricing."""
