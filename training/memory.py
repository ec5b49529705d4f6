"""Handing memory the job has freed back to the system between its stages.

A night's stages each build large transient arrays and tables (the loaded files, the gate's holdout and fit, the
lists' batches). Freed, they stay with the process: Arrow's pool keeps its pages for reuse, and glibc's allocator
keeps the top of each arena it grew. The peak of the job plus Redis is what a shop must provision, so after each
stage both are asked to return what is free: on the generated 10M-event shop, right after loading, Arrow's pool
held 800 MB it no longer used and glibc 250 MB more. No library wraps ``malloc_trim``; it is one ctypes call,
skipped where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import pyarrow as pa

try:
    _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
    _trim = None


def give_back() -> None:
    """Return the free pages of Arrow's memory pool and of the C allocator to the system."""
    pa.default_memory_pool().release_unused()
    if _trim is not None:
        _trim(0)
