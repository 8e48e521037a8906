"""The C allocator's per-thread arenas, capped for a long-lived daemon.

glibc gives each thread that allocates while another one does an arena of its own, up to eight
per core. The daemon's threads (the state database's, the audit log's writes, the agent's
loading) each took one, and the memory freed in an arena stays with it. Peak RSS under the storm
of ``benchmarks/storm.py``: 150.5 MB as glibc has it, 147.2 MB with two arenas and 145.0 MB with
one (``MALLOC_ARENA_MAX`` set, the same run otherwise). One arena cost nothing measurable: the
state database's intake, the one place two threads allocate at once, took 82-90 µs of CPU per
alert either way (``benchmarks/dispatch_overhead.py``'s case, run twice each): the event loop
does nearly all of the work, and the threads rarely allocate at the same moment.
"""

from __future__ import annotations

import ctypes
import os
import platform

from loguru import logger

#: ``M_ARENA_MAX`` of glibc's ``mallopt``.
_M_ARENA_MAX = -8
DEFAULT_MAX_ARENAS = 1


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc, else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def limit_malloc_arenas(max_arenas: int = DEFAULT_MAX_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``max_arenas`` for the threads started from now on.

    Does nothing (and returns False) where the C library is not glibc, or when the
    ``MALLOC_ARENA_MAX`` environment variable is set: an operator's own setting wins. Returns
    True once the cap is in place. Call it before the daemon starts its threads.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or (libc := _glibc()) is None:
        return False
    try:
        applied = bool(libc.mallopt(_M_ARENA_MAX, max_arenas))
    except AttributeError:
        applied = False
    if not applied:
        logger.debug("malloc arenas not capped: mallopt is not available")
    return applied


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the kernel (glibc's ``malloc_trim``).

    Start-up imports and then frees a lot (module compilation, schema building): glibc keeps
    those pages mapped, so they stay in the daemon's resident set while it idles. Measured
    after ``gc.freeze`` with the agent's modules loaded: 126.8 MB resident before the trim,
    120.6 MB after. A storm's peak does not move with it (``benchmarks/storm.py``: it fills
    the same pages again). Returns False where the C library is not glibc or has no
    ``malloc_trim``; True once it ran.
    """
    if (libc := _glibc()) is None:
        return False
    try:
        libc.malloc_trim(0)
    except AttributeError:
        return False
    return True
