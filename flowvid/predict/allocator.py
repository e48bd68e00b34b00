"""Keep freed memory for reuse: glibc's malloc settings for a process that runs the model.

A forward pass on a CPU allocates and frees tensors of several to tens of MB, chunk after
chunk. By default, glibc's malloc serves each of them with a fresh ``mmap`` and returns it
to the system on free, and it trims the top of its heap back to the system. Each new tensor
then costs the kernel a page fault and a zeroed page for every 4 KiB. On 2 CPU cores this
took about 30 % of ``flowvid predict``'s time (BENCHMARKS.md, "`flowvid bench`").

:func:`keep_freed_memory` makes malloc serve such blocks from its heap and keep freed memory
there, so the next chunk reuses it. Peak memory is the same and stays constant in video
length. The process keeps its peak until it exits, which is how PyTorch's CUDA caching
allocator already behaves on a GPU. The command line calls it once at start. A program that
imports flowvid may call it too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # bytes: blocks below this come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # bytes of free heap top kept (the largest a C int can say)


def keep_freed_memory() -> bool:
    """Set malloc's mmap and trim thresholds high (glibc on Linux). Returns whether they were
    set: not on another platform or C library, and not when the user has set any
    ``MALLOC_*`` variable, whose settings are then left as they are."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
