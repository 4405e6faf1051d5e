"""Keep freed memory in the process instead of handing it back to the OS every iteration.

Each meta-iteration allocates and frees the same large buffers (episodes, activations, curvature
workspaces). glibc's malloc returns large blocks to the OS (``munmap``, heap trimming) as soon as
they are freed, so the next iteration faults every page in again: on the default job that was
1.4-4.3 M minor page faults and 2.7-7.0 s of system time per 150 iterations (this module off),
against 0.13 M and 0.5 s with it (docs/results.md). The settings raise glibc's thresholds so that
freed blocks stay mapped; they are glibc's own documented ``mallopt`` parameters, chosen at run
time where the C library is glibc, and do nothing elsewhere (musl, macOS, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit: blocks below it come from the heap
TRIM_THRESHOLD = 2**30  # keep up to 1 GiB of free heap top before trimming
TOP_PAD = 256 * 2**20  # grow the heap in 256 MiB steps
DISABLE_ENV = "DMRL_KEEP_FREED_MEMORY"  # 0: leave malloc as it is


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True where glibc took them."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl and others have no such symbol)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
