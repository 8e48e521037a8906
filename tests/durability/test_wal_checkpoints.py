"""The state database's WAL is checkpointed off the commit path: by its own connection and
thread, while writes go on, and what it copies is what a fresh reader sees."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_sentinel.dispatcher.sqlite_checkpoint import (
    BACKSTOP_PAGES,
    JOURNAL_SIZE_LIMIT,
    WalCheckpointer,
)
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from tests.helpers import wait_for


def create_notes(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")


def note(text: str) -> Callable[[sqlite3.Connection], None]:
    def write(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO notes (text) VALUES (?)", (text,))

    return write


async def test_commits_are_checkpointed_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SqliteDatabase(path, checkpoint_interval=0.02) as db:
        pragmas = await db.read(
            lambda c: (
                c.execute("PRAGMA wal_autocheckpoint").fetchone()[0],
                c.execute("PRAGMA journal_size_limit").fetchone()[0],
            )
        )
        # The writer's own checkpoint is only a backstop, far beyond SQLite's 1000 pages.
        assert pragmas == (BACKSTOP_PAGES, JOURNAL_SIZE_LIMIT)
        await db.transaction(create_notes, what="create")
        for n in range(50):
            await db.transaction(note(f"note {n}" * 100), what=f"note {n}")
        checkpointer = db.checkpointer

        def rows_in_the_database_file() -> int:
            # Read with the WAL left out: what the checkpoints copied, nothing else.
            copy = tmp_path / "copy.db"
            copy.write_bytes(path.read_bytes())
            with contextlib.closing(sqlite3.connect(copy)) as reader:
                tables = reader.execute("SELECT name FROM sqlite_master WHERE name = 'notes'")
                if tables.fetchone() is None:
                    return 0
                return int(reader.execute("SELECT count(*) FROM notes").fetchone()[0])

        await wait_for(lambda: rows_in_the_database_file() == 50, what="all 50 notes copied")
        assert checkpointer.last is not None and checkpointer.last.wal_frames > 0
        # An interval without a commit runs no checkpoint: once the one that may still be
        # reporting the last writes is done, the count stays.
        await asyncio.sleep(0.3)
        ran = checkpointer.checkpoints
        await asyncio.sleep(0.2)  # ten intervals
        assert checkpointer.checkpoints == ran


async def test_an_idle_database_is_not_checkpointed(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "state.db", checkpoint_interval=0.01) as db:
        ran = db.checkpointer.checkpoints
        await db.read(lambda c: c.execute("SELECT 1").fetchone())
        await asyncio.sleep(0.1)  # ten intervals
        assert db.checkpointer.checkpoints == ran


async def test_the_wal_starts_over_once_checkpointed(tmp_path: Path) -> None:
    """A complete checkpoint lets the writer reuse the WAL from its start: it holds about an
    interval's writes, not everything since the daemon started."""
    path = tmp_path / "state.db"
    wal = path.with_name(path.name + "-wal")
    async with SqliteDatabase(path, checkpoint_interval=3600) as db:
        await db.transaction(create_notes, what="create")
        for n in range(20):
            await db.transaction(note("x" * 20_000), what=f"note {n}")
        grown = wal.stat().st_size
        first = await db.checkpointer.run_once()
        assert first.complete and first.wal_frames > 20
        for n in range(3):
            await db.transaction(note("y"), what=f"small {n}")
        second = await db.checkpointer.run_once()
        assert second.complete
        assert second.wal_frames < 10, second  # the log started over: only the small writes
        assert wal.stat().st_size <= grown
    # Closed: the writer's close checkpointed the rest and removed the WAL.
    assert not wal.exists()
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM notes").fetchone() == (23,)


async def test_a_close_cancelled_midway_still_raises_and_stops_the_thread(tmp_path: Path) -> None:
    """A cancellation of the task that closes the checkpointer, arriving while the close waits
    for the checkpoint loop to end, reaches that task: it is not taken for the loop's own."""
    path = tmp_path / "state.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    checkpointer = WalCheckpointer(path, commits=lambda: 0, interval=3600)
    await checkpointer.__aenter__()
    closing = asyncio.create_task(checkpointer.__aexit__(None, None, None))
    await asyncio.sleep(0)  # the close has cancelled the loop and waits for its end
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert closing.cancelled()
    threads = [thread.name for thread in threading.enumerate()]
    assert not [name for name in threads if name.startswith("sentinel-sqlite-checkpoint")]
