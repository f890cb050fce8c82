"""marginflow's benchmarks (``python -m benchmarks``; each ``python -m benchmarks.<name>``).

Every benchmark process runs under the memory policy of marginflow's own programs
(:func:`marginflow.core.memory.keep_freed_memory`), so that its figures are the command
line's and the stream's."""

from marginflow.core.memory import keep_freed_memory

keep_freed_memory()
