"""Domain types at the bottom of the stack: identifiers, instruments, accounts,
struct-of-arrays batches and the exception hierarchy. Imports nothing from marginflow."""
