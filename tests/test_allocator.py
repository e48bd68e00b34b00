"""The command line keeps freed memory for reuse (glibc malloc): checked in fresh processes."""

import ctypes
import subprocess
import sys

import pytest

from flowvid.predict.allocator import keep_freed_memory

PROBE = """
import ctypes, sys
import numpy as np
from flowvid.predict.allocator import keep_freed_memory

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
kept = keep_freed_memory() if sys.argv[1] == "on" else None
block = np.ones(64 << 20, np.uint8)  # a 64 MiB block, as a chunk's tensors are
mapped = libc.mallinfo2().hblkhd  # bytes served by mmap of their own
del block
heap = libc.mallinfo2().arena  # bytes the heap still holds after the free
print(kept, mapped >= 64 << 20, heap >= 64 << 20)
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="glibc >= 2.33 only"
)
def test_large_blocks_come_from_the_heap_and_stay_there_after_free():
    def probe(mode: str) -> list[str]:
        env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* variable from the caller
        out = subprocess.run(
            [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    # by default glibc maps such a block on its own and gives it back on free
    assert probe("off") == ["None", "True", "False"]
    assert probe("on") == ["True", "False", "True"]


def test_the_users_own_malloc_settings_are_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert keep_freed_memory() is False
