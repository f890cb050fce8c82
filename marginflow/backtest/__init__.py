"""Margin back-testing: each day's margin against the P&L realised over its margin period
of risk, and the statistics a risk committee reads off the breaches (:mod:`.statistics`:
Kupiec, Christoffersen, the Basel traffic light). May import core, pricing, scenarios,
margin, simm, engine and io; app and the shells import it."""
