"""The memory policy of marginflow's own processes: freed memory is kept for reuse.

A margin run allocates and frees arrays of tens of MiB many times over: a day of a
back-test, a batch of the stream, a full re-margin. glibc gives a freed block of that size
back to the kernel (``munmap``, or trimming the heap's top), and the next allocation of the
same size faults fresh zeroed pages in again, and the unmapping stalls the process's other
threads (the kernel's threads of a parallel region) while their page tables are flushed.
Measured on a back-test of the large book's 1,000-account sample over 10 days, two runs
each, alternating: premium grids 22.6 → 17.0-18.2 s, the whole run 37.1-37.9 → 32.6-33.3 s
(``benchmarks/README.md``).

:func:`keep_freed_memory` asks glibc to keep what is freed instead: blocks up to 32 MiB
(glibc's largest mmap threshold) come from the heap, and the heap's free top is neither
trimmed below 2 GiB nor grown by less than 256 MiB. The resident size then stays near the
process's peak instead of following each allocation down and up. Blocks of 32 MiB and more
are still mapped and unmapped each time (switching mapping off altogether, ``M_MMAP_MAX =
0``, was slower: 33.0 s on the same run).

It is a process-wide setting, so only programs call it (the command line, stream workers,
back-test workers, the benchmarks), never a library import: a program embedding marginflow
keeps its own allocator settings. It does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap (glibc refuses more: HEAP_MAX_SIZE / 2)."""
TRIM_THRESHOLD = (1 << 31) - 1
"""Free memory at the heap's top kept before any is given back (mallopt takes an int)."""
TOP_PAD = 256 << 20
"""Extra heap asked of the kernel at each growth (address space; pages cost when touched)."""

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Keep freed memory for reuse in this process (see the module docstring). Returns
    whether the policy is in force: False where the C library is not glibc. Idempotent."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD),
    )
    accepted = [mallopt(param, value) == 1 for param, value in settings]  # each one tried
    return all(accepted)
