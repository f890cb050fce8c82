"""Clearing-house margin models over scenario P&L: expected shortfall with add-ons,
SPAN-style and TIMS-style grids. May import core, market, pricing and scenarios."""
