"""The end of a SQLite connection that lives on a thread of its own.

A ``sqlite3.Connection`` is used from the one thread that opened it: the state database's
writer and its checkpointer each keep one on a single-thread executor, and both close it the
same way (``close_on_thread``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


async def close_on_thread(executor: ThreadPoolExecutor, close: Callable[[], None]) -> None:
    """Run ``close`` on ``executor``'s thread after everything submitted before it (the thread
    is FIFO), then stop the thread, also when ``close`` raised. The loop never blocks on it."""
    try:
        await asyncio.wrap_future(executor.submit(close))
    finally:
        await asyncio.to_thread(executor.shutdown, True)
