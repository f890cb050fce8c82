"""File loaders and writers. Loaders return the good rows and a list of structured
failures (file, line, field, reason) instead of stopping at the first bad row."""
