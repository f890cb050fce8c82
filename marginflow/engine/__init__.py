"""Incremental margin state: the instruments x scenarios P&L matrix, account positions and
margins, recomputing exactly what a change touches. May import everything below it."""
