"""Domain types at the bottom of the stack: the clearing book (members, accounts,
underlyings, dated instruments, positions, market and price history, :mod:`.book` and
:mod:`.history`), identifiers, struct-of-arrays option batches and the exception hierarchy.
Imports nothing from marginflow above it."""
