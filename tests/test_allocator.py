"""The malloc arena cap and the heap trim, checked in fresh interpreters: eight threads that
allocate at once get an arena each without the cap, and share one with it (glibc's
``malloc_stats`` lists them on stderr); freed pages inside the heap leave the RSS only once
trimmed."""

from __future__ import annotations

import platform
import re
import subprocess
import sys

import pytest

from mcp_sentinel.allocator import DEFAULT_MAX_ARENAS, limit_malloc_arenas
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's"
)

# Eight threads each hold a block while all of them allocate, so each one wants an arena at the
# same moment; then glibc prints one "Arena N:" section per arena it made.
PROGRAM = """
import ctypes, sys, threading
from mcp_sentinel.allocator import DEFAULT_MAX_ARENAS, limit_malloc_arenas
if sys.argv[1] == "capped":
    assert limit_malloc_arenas()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()
    blocks = [libc.malloc(64 * 1024) for _ in range(64)]
    barrier.wait()
    for block in blocks:
        libc.free(block)
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc.malloc_stats()
"""


def run_fresh(program: str, mode: str) -> subprocess.CompletedProcess[str]:
    """``program`` in a fresh interpreter with ``mode`` as its argument, no MALLOC_* set."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", program, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )


def arenas(mode: str) -> int:
    done = run_fresh(PROGRAM, mode)
    return len(re.findall(r"^Arena \d+:", done.stderr, re.MULTILINE))


def test_the_cap_keeps_threads_to_one_arena() -> None:
    assert arenas("default") > 2  # otherwise this test could not tell the cap from its absence
    assert arenas("capped") == DEFAULT_MAX_ARENAS == 1


def test_an_operators_malloc_arena_max_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


# 64 MB in 64 KB blocks (under glibc's mmap threshold, so on the heap), all touched; all but
# the last are freed, and the last one keeps the heap's top from being trimmed by free().
TRIM_PROGRAM = """
import ctypes, re, sys
from mcp_sentinel.allocator import release_free_heap
def rss_mb():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(64 * 1024) for _ in range(1024)]
for block in blocks:
    ctypes.memset(block, 1, 64 * 1024)
for block in blocks[:-1]:
    libc.free(block)
freed = rss_mb()
if sys.argv[1] == "trim":
    assert release_free_heap()
print(freed - rss_mb())
"""


def released_mb(mode: str) -> float:
    return float(run_fresh(TRIM_PROGRAM, mode).stdout)


def test_the_trim_gives_freed_heap_pages_back() -> None:
    assert released_mb("keep") < 8  # free() alone keeps them resident
    assert released_mb("trim") > 48
