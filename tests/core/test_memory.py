"""The memory policy of marginflow's programs (marginflow.core.memory)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from marginflow.core.memory import keep_freed_memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")

# A child process allocates, fills and frees a 16 MiB array, then does it again, and prints
# how many pages the second time faulted in (the kernel's count, not a timing).
_CHILD = """
import resource, sys
import numpy as np
from marginflow.core.memory import keep_freed_memory
if sys.argv[1] == "policy":
    assert keep_freed_memory()
a = np.empty(2 << 20); a.fill(1.0); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.empty(2 << 20); a.fill(1.0); del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@glibc
def test_freed_memory_is_reused_without_faulting_pages_in_again() -> None:
    # 16 MiB is 4,096 pages. glibc's default gives such a block back when it is freed, so
    # the next one faults fresh pages (hundreds: the kernel maps several per fault); with
    # the policy the heap keeps it and the second array faults none.
    assert _faults("default") >= 100
    assert _faults("policy") <= 8


@glibc
def test_the_policy_is_in_force_and_idempotent() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
