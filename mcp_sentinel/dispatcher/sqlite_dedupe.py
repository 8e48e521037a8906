"""The durable dedupe state: ``SqliteDedupeStore``, a ``DedupeStore`` kept in the state database.

It keeps the unexpired keys in memory (``DedupeCache``), so ``seen`` never waits on the disk;
the database is the truth after a restart. Keys live in two places there:

- the keys of a stored webhook payload's incidents are the payload's (``sqlite_payloads``):
  the intake transaction of ``sqlite_queue`` writes no row of its own for them;
- every other key is a row of ``dedupe``: those ``remember_all`` is given, and those the
  queue writes with incidents that came without a payload body (the pollers').

``open`` loads both, in expiry order, after deleting what expired. Expiry is wall-clock time,
since a monotonic clock does not survive a restart. All statements run on the database's
thread (``sqlite_db``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from loguru import logger

from mcp_sentinel.dispatcher import sqlite_payloads
from mcp_sentinel.dispatcher.codec import key_from_row, key_to_row
from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.models import DedupeKey

# Expired dedupe rows (and finished payloads) are deleted inside an intake transaction at most
# this often.
_PURGE_EVERY_SECONDS = 60.0

DedupeRow = tuple[str, str, str, float]

INSERT_DEDUPE = (
    "INSERT INTO dedupe (fingerprint, starts_at, status, expires_at) VALUES (?, ?, ?, ?)"
)


class SqliteDedupeStore:
    """Implements ``DedupeStore`` on the state database. Owned by the app; call ``open``
    first."""

    def __init__(
        self, db: SqliteDatabase, ttl_seconds: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache = DedupeCache(ttl_seconds, clock=clock)
        self._last_purge = 0.0

    async def open(self) -> int:
        """Drop expired keys and load the others; returns how many were loaded."""
        now = self._clock()

        def load(
            connection: sqlite3.Connection,
        ) -> tuple[list[DedupeRow], list[tuple[str, float, str, bytes | None]]]:
            purge(connection, now)
            rows = connection.execute(
                "SELECT fingerprint, starts_at, status, expires_at FROM dedupe ORDER BY expires_at"
            ).fetchall()
            return rows, sqlite_payloads.load_keys(connection, now)

        rows, payloads = await self._db.transaction(load, what="load the dedupe keys")
        self._last_purge = now
        keys: list[tuple[float, DedupeKey]] = [
            (expires_at, key_from_row(fingerprint, starts_at, status))
            for fingerprint, starts_at, status, expires_at in rows
        ]
        for state, expires_at, stored, body in payloads:
            try:
                payload_keys = sqlite_payloads.keys_of(state, stored, body)
            except ValueError as exc:
                # The queue's open names the payload and keeps it as unreadable.
                logger.debug("dedupe keys of an unreadable payload skipped: {error}", error=exc)
                continue
            keys.extend((expires_at, key) for key in payload_keys)
        keys.sort(key=lambda item: item[0])  # the cache takes them in expiry order
        for expires_at, key in keys:
            self._cache.restore(key, expires_at)
        return len(keys)

    def __len__(self) -> int:
        return len(self._cache)

    def seen(self, key: Hashable) -> bool:
        return self._cache.seen(key)

    def fresh(self, keys: Sequence[Hashable]) -> list[bool]:
        return self._cache.fresh(keys)

    def remember_all(self, keys: Iterable[Hashable]) -> None:
        """Remember ``keys``; written by the database thread without waiting, in one
        transaction. A key the queue already wrote with its incident (the dispatcher's path)
        is not written twice."""
        cache = self._cache
        keys = list(keys)
        new = [key for key, is_new in zip(keys, cache.fresh(keys), strict=True) if is_new]
        if not new:
            return
        cache.remember_all(new)
        rows = []
        for key in new:
            expiry = cache.expiry_of(key)
            assert expiry is not None
            rows.append((*key_to_row(key), expiry))  # type: ignore[arg-type]

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(INSERT_DEDUPE, rows)

        self._db.submit(write, what=f"remember {len(rows)} dedupe key(s)")

    def purge(self) -> int:
        """The expired keys dropped from memory. Their rows go with the intake's periodic
        purge (``purge_due``): deleting them needs no transaction of its own."""
        return self._cache.purge()

    # -- used by SqliteQueueBackend inside its intake transaction --------------------------

    def new_keys(self, keys: Sequence[DedupeKey]) -> DedupeWrite:
        """The keys of ``keys`` not remembered yet, with the expiry they get when written."""
        return self.split_new(keys)[1]

    def split_new(self, keys: Sequence[DedupeKey]) -> tuple[list[bool], DedupeWrite]:
        """For each of ``keys`` whether it is new, and the new ones as ``new_keys`` gives them
        (a payload row stores the flags and derives the keys from its body)."""
        fresh = self._cache.fresh(keys)
        new = [key for key, is_new in zip(keys, fresh, strict=True) if is_new]
        return fresh, DedupeWrite(new, self._clock() + self._ttl)

    def purge_due(self) -> float | None:
        """The cut-off for deleting expired rows in this transaction, or None (not yet due)."""
        now = self._clock()
        if now - self._last_purge < _PURGE_EVERY_SECONDS:
            return None
        self._last_purge = now
        return now

    def committed(self, write: DedupeWrite) -> None:
        """The keys of ``write`` are in the database: mirror them."""
        self._cache.purge()
        self._cache.restore_all(write.keys, write.expiry)


@dataclass(frozen=True, slots=True)
class DedupeWrite:
    """Dedupe keys to write in an intake transaction, all with one expiry."""

    keys: list[DedupeKey]
    expiry: float

    def rows(self) -> list[DedupeRow]:
        return [(*key_to_row(key), self.expiry) for key in self.keys]


def purge(connection: sqlite3.Connection, before: float) -> None:
    """Delete the dedupe rows, and the finished payloads, whose keys expired by ``before``."""
    connection.execute("DELETE FROM dedupe WHERE expires_at <= ?", (before,))
    sqlite_payloads.purge_finished(connection, before)
