"""Checkpoints of the state database's write-ahead log, off the commit path.

SQLite's automatic checkpoint runs inside the commit that takes the WAL past
``wal_autocheckpoint`` pages, on the committing thread: that commit, and every write waiting to
share the next one, waits while the checkpoint copies the pages into the database file and
fsyncs it. Under an alert storm that is a stall of the whole intake every second or so, and it
shows in the accept latency's p99 (measured with ``benchmarks/ingest.py``'s load, durable
queue, 16 connections, at the same requests/s: 1-alert payloads p99 18.5-19.5 ms with the
automatic checkpoint, 13.0-14.7 ms with this one; 50-alert payloads 58-60 ms, 48-54 ms).

``WalCheckpointer`` runs a PASSIVE checkpoint from a connection of its own, on a thread of its
own, every ``interval`` seconds in which something was committed. A PASSIVE checkpoint never
blocks the writer, and once one has copied the whole WAL the writer starts the log over, so the
WAL holds about an interval's writes. Small and often beats large and rare: checkpoints of 2 s
of 50-alert payloads (some 30 MB) took the p99 to 136-162 ms, by the I/O they flush at once.
The writer keeps its automatic checkpoint as a backstop, at ``BACKSTOP_PAGES``, for when these
fall behind; ``JOURNAL_SIZE_LIMIT`` bounds what the WAL file keeps on disk once it starts over.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from loguru import logger

from mcp_sentinel.dispatcher.sqlite_thread import close_on_thread

#: The writer's own automatic checkpoint, past this many WAL pages (SQLite's default: 1000).
BACKSTOP_PAGES = 10_000
#: Bytes the WAL file keeps once it starts over (``PRAGMA journal_size_limit``).
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint's outcome, as ``PRAGMA wal_checkpoint`` reports it."""

    wal_frames: int  # frames in the WAL when it ran
    copied_frames: int  # of those, the ones now in the database file

    @property
    def complete(self) -> bool:
        return self.copied_frames == self.wal_frames


class WalCheckpointer:
    """Checkpoints ``path``'s WAL in the background while it is entered (an async context
    manager). ``commits`` tells how many transactions the writer has committed so far: an
    interval without one is skipped. A failed checkpoint is logged, once until one succeeds,
    and tried again next interval; it loses nothing (the WAL keeps what it has not copied)."""

    def __init__(
        self,
        path: Path,
        *,
        commits: Callable[[], int],
        interval: float = 0.1,
        busy_timeout: float = 5.0,
    ) -> None:
        self._path = path
        self._commits = commits
        self._interval = interval
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: Checkpoints run since entering, and the last one's outcome (read by tests).
        self.checkpoints = 0
        self.last: Checkpoint | None = None

    async def __aenter__(self) -> WalCheckpointer:
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sentinel-sqlite-checkpoint"
        )
        try:
            await asyncio.wrap_future(self._executor.submit(self._connect))
        except BaseException:
            executor, self._executor = self._executor, None
            await close_on_thread(executor, self._close)
            raise
        self._task = asyncio.create_task(self._run(), name="sentinel-sqlite-checkpoint")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        executor, self._executor = self._executor, None
        try:
            if task is not None:
                task.cancel()
                # Waited for with ``asyncio.wait``, which does not raise the task's own
                # CancelledError: awaited and suppressed, that one could not be told from a
                # cancellation of this caller, which would then be lost.
                await asyncio.wait([task])
                if not task.cancelled():
                    task.result()  # it failed by itself: the caller sees why
        finally:
            # Also when this caller was cancelled meanwhile: the thread and its connection
            # are not left behind.
            if executor is not None:
                await close_on_thread(executor, self._close)  # after a checkpoint still running

    def _connect(self) -> None:
        # Opened and used on the checkpoint thread only; the writer created the schema.
        self._connection = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None
        )

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _checkpoint(self) -> Checkpoint:
        assert self._connection is not None
        _busy, wal_frames, copied_frames = self._connection.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        return Checkpoint(int(wal_frames), int(copied_frames))

    async def run_once(self) -> Checkpoint:
        """One checkpoint now, on the checkpoint thread."""
        if self._executor is None:
            raise RuntimeError("the checkpointer is not running")
        checkpoint = await asyncio.wrap_future(self._executor.submit(self._checkpoint))
        self.checkpoints += 1
        self.last = checkpoint
        return checkpoint

    async def _run(self) -> None:
        seen = self._commits()
        while True:
            await asyncio.sleep(self._interval)
            commits = self._commits()
            if commits == seen:
                continue
            seen = commits
            try:
                await self.run_once()
            except sqlite3.Error as exc:
                if not self._failing:
                    logger.warning(
                        "cannot checkpoint the state database {path}: {error}; its WAL grows "
                        "until a checkpoint succeeds",
                        path=self._path,
                        error=exc,
                    )
                self._failing = True
            else:
                if self._failing:
                    logger.info("state database {path}: checkpoints resumed", path=self._path)
                self._failing = False
