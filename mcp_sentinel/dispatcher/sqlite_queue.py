"""The durable queue and dedupe state: ``SqliteQueueBackend`` and ``SqliteDedupeStore``.

Both keep a mirror in memory (the waiting incidents in priority order; the unexpired dedupe
keys), so ``get``, ``depth`` and ``seen`` never wait on the disk; the database is the truth
after a restart. All their statements run on the database's thread (``sqlite_db``).

A row of ``incidents`` lives like this:

- ``put_all`` inserts the rows as ``queued`` in one transaction, together with their dedupe
  rows when the queue was given the dedupe store, and answers True only after the commit;
- ``get`` claims the row (``claimed``, ``claimed_by`` this process);
- ``task_done`` deletes it; ``release`` puts it back to ``queued`` for the next start. The sink
  outbox deletes it too, in the same transaction that stores the incident's deliveries
  (``completion``, run by ``sinks.outbox``): from that commit on, the incident is delivered,
  never investigated again.

The queue assigns each row its ``seq`` (the arrival order, after the highest one found at
``open``) and keeps incident id -> seq in memory while it holds the incident, so every later
statement finds the row by its primary key: the table has no index on the incident id.

Recovery (``open``, before the workers start): rows ``claimed`` by an earlier process were cut
off mid-investigation, so they go back to ``queued``; every ``queued`` row is then loaded in
priority and arrival order, keeping its incident id. A row whose card is no longer configured
goes to the default card or, without one, is logged as unrouted and deleted; a row this version
cannot read is kept as ``unreadable`` and named in the log at every start.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from loguru import logger

from mcp_sentinel.dispatcher.codec import (
    key_from_row,
    key_to_row,
    notification_from_json,
    notifications_to_json,
)
from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.queue import Unfinished, WaitingIncidents, priority_of
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase, StorageError
from mcp_sentinel.models import DedupeKey, Incident, IncidentCard, PayloadOrigin

# Expired dedupe rows are deleted inside an intake transaction at most this often.
_PURGE_EVERY_SECONDS = 60.0

DedupeRow = tuple[str, str, str, float]


class SqliteDedupeStore:
    """Implements ``DedupeStore`` on the ``dedupe`` table. Expiry is wall-clock time, since
    a monotonic clock does not survive a restart. Owned by the app; call ``open`` first."""

    def __init__(
        self, db: SqliteDatabase, ttl_seconds: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache = DedupeCache(ttl_seconds, clock=clock)
        self._last_purge = 0.0

    async def open(self) -> int:
        """Drop expired rows and load the others; returns how many were loaded."""
        now = self._clock()

        def load(connection: sqlite3.Connection) -> list[tuple[str, str, str, float]]:
            connection.execute("DELETE FROM dedupe WHERE expires_at <= ?", (now,))
            return connection.execute(
                "SELECT fingerprint, starts_at, status, expires_at FROM dedupe ORDER BY expires_at"
            ).fetchall()

        rows = await self._db.transaction(load, what="load the dedupe keys")
        self._last_purge = now
        for fingerprint, starts_at, status, expires_at in rows:
            self._cache.restore(key_from_row(fingerprint, starts_at, status), expires_at)
        return len(rows)

    def __len__(self) -> int:
        return len(self._cache)

    def seen(self, key: Hashable) -> bool:
        return self._cache.seen(key)

    def remember_all(self, keys: Iterable[Hashable]) -> None:
        """Remember ``keys``; written by the database thread without waiting, in one
        transaction. A key the queue already wrote with its incident (the dispatcher's path)
        is not written twice."""
        cache = self._cache
        new = [key for key in keys if not cache.seen(key)]
        if not new:
            return
        cache.remember_all(new)
        rows = []
        for key in new:
            expiry = cache.expiry_of(key)
            assert expiry is not None
            rows.append((*key_to_row(key), expiry))  # type: ignore[arg-type]

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(_INSERT_DEDUPE, rows)

        self._db.submit(write, what=f"remember {len(rows)} dedupe key(s)")

    # -- used by SqliteQueueBackend inside its intake transaction --------------------------

    def new_keys(self, keys: Sequence[DedupeKey]) -> DedupeWrite:
        """The keys of ``keys`` not remembered yet, with the expiry they get when written."""
        return DedupeWrite(
            [key for key in keys if not self._cache.seen(key)], self._clock() + self._ttl
        )

    def purge_due(self) -> float | None:
        """The cut-off for deleting expired rows in this transaction, or None (not yet due)."""
        now = self._clock()
        if now - self._last_purge < _PURGE_EVERY_SECONDS:
            return None
        self._last_purge = now
        return now

    def committed(self, write: DedupeWrite) -> None:
        """The rows of ``write`` are in the database: mirror them."""
        self._cache.purge()
        for key in write.keys:
            self._cache.restore(key, write.expiry)


@dataclass(frozen=True, slots=True)
class DedupeWrite:
    """Dedupe keys to write in an intake transaction, all with one expiry."""

    keys: list[DedupeKey]
    expiry: float

    def rows(self) -> list[DedupeRow]:
        return [(*key_to_row(key), self.expiry) for key in self.keys]


_INSERT_DEDUPE = (
    "INSERT INTO dedupe (fingerprint, starts_at, status, expires_at) VALUES (?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``SqliteQueueBackend.open`` found from an earlier process."""

    resumed: int  # claimed rows: cut off mid-investigation, queued again
    queued: int  # rows loaded (the resumed ones included)
    rerouted: int  # rows whose card is gone, given to the default card
    unrouted: int  # rows whose card is gone, with no default card: logged and deleted
    unreadable: int  # rows this version cannot read, kept for a human


class SqliteQueueBackend:
    """Implements ``QueueBackend`` on the ``incidents`` table. Owned by the app; call ``open``
    before the workers start. ``cards`` are the configured incident cards, by which stored
    incidents find their card again.

    With ``dedupe`` (the store on the same database), ``put_all`` also writes the incidents'
    dedupe keys in its transaction, so a payload is taken and remembered in one commit.
    """

    writes_at_once = False  # put_all awaits its commit

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        capacity: int,
        cards: Sequence[IncidentCard],
        default_card: IncidentCard | None,
        dedupe: SqliteDedupeStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._db = db
        self._capacity = capacity
        self._cards = {card.resource: card for card in cards}
        self._default_card = default_card
        self._dedupe = dedupe
        self._clock = clock
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._waiting = WaitingIncidents()
        self._reserved = 0  # slots of put_all calls still committing
        self._unfinished = Unfinished()
        self._rows: dict[str, int] = {}  # incident id -> seq, from put_all to task_done/release
        self._next_seq = 1  # set by open, from the rows an earlier process left
        self.recovered: list[Incident] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def database(self) -> SqliteDatabase:
        return self._db

    def depth(self) -> int:
        return len(self._waiting)

    def in_progress(self) -> int:
        return self._unfinished.count - len(self._waiting)

    # -- recovery --------------------------------------------------------------------------

    async def open(self) -> Recovery:
        """Release earlier claims and load what waits; see the module docstring."""

        def load(
            connection: sqlite3.Connection,
        ) -> tuple[int, list[tuple[int, str, str, str, float]], int, int]:
            resumed = connection.execute(
                "UPDATE incidents SET state = 'queued', claimed_by = NULL WHERE state = 'claimed'"
            ).rowcount
            rows = connection.execute(
                "SELECT seq, incident_id, card, notification, enqueued_at FROM incidents "
                "WHERE state = 'queued' ORDER BY priority, seq"
            ).fetchall()
            (unreadable,) = connection.execute(
                "SELECT count(*) FROM incidents WHERE state = 'unreadable'"
            ).fetchone()
            (last_seq,) = connection.execute(
                "SELECT coalesce(max(seq), 0) FROM incidents"
            ).fetchone()
            return resumed, rows, unreadable, last_seq

        resumed, rows, unreadable, last_seq = await self._db.transaction(
            load, what="load the queue"
        )
        self._next_seq = last_seq + 1
        now, monotonic_now = self._clock(), time.monotonic()
        incidents: list[Incident] = []
        broken: list[int] = []
        unrouted: list[int] = []
        rerouted = 0
        for seq, incident_id, card_name, stored, enqueued_at in rows:
            try:
                notification = notification_from_json(stored)
            except ValueError as exc:
                logger.error(
                    "queued incident {incident_id} cannot be read ({error}); kept in {path} "
                    "as unreadable",
                    incident_id=incident_id,
                    error=exc,
                    path=self._db.path,
                )
                broken.append(seq)
                continue
            card = self._cards.get(card_name)
            if card is None:
                card = self._default_card
                if card is None:
                    logger.error(
                        "unrouted alert {alertname} (fingerprint {fingerprint}, incident "
                        "{incident_id}): queued for card {card}, which is no longer configured, "
                        "and no default card is configured; not investigated",
                        alertname=notification.alertname or "<no alertname>",
                        fingerprint=notification.fingerprint,
                        incident_id=incident_id,
                        card=card_name,
                    )
                    unrouted.append(seq)
                    continue
                logger.warning(
                    "incident {incident_id} was queued for card {card}, which is no longer "
                    "configured: the default card {default} takes it",
                    incident_id=incident_id,
                    card=card_name,
                    default=card.resource,
                )
                rerouted += 1
            waited = max(0.0, now - float(enqueued_at))
            incidents.append(Incident(notification, card, incident_id, monotonic_now - waited))
            self._rows[incident_id] = seq
        if broken or unrouted:
            await self._db.transaction(
                lambda connection: _settle_unloadable(connection, broken, unrouted),
                what="set aside unloadable incidents",
            )
        self._unfinished.add(len(incidents))
        self._waiting.push_all(incidents)
        self.recovered = incidents
        recovery = Recovery(resumed, len(incidents), rerouted, len(unrouted), unreadable)
        if resumed or incidents or unreadable or broken:
            logger.info(
                "queue recovered from {path}: {queued} incident(s) to investigate ({resumed} cut "
                "off mid-investigation); {unreadable} unreadable row(s) kept",
                path=self._db.path,
                queued=len(incidents),
                resumed=resumed,
                unreadable=unreadable + len(broken),
            )
        return recovery

    # -- the queue -------------------------------------------------------------------------

    async def put_all(
        self, incidents: Sequence[Incident], origin: PayloadOrigin | None = None
    ) -> bool:
        """Commit every incident (and its dedupe key) in one transaction, or none; False when
        the queue is full or the database refuses the write (the database logs why)."""
        waiting = len(self._waiting) + self._reserved
        if waiting + len(incidents) > self._capacity:
            return False
        if not incidents:
            return True
        now = self._clock()
        texts = notifications_to_json([incident.notification for incident in incidents])
        first_seq = self._next_seq
        self._next_seq += len(incidents)  # a failed write leaves a gap, which is harmless
        priorities = [priority_of(incident) for incident in incidents]
        rows = [
            (seq, incident.incident_id, priority, incident.card.resource, text, now)
            for seq, incident, priority, text in zip(
                range(first_seq, self._next_seq), incidents, priorities, texts, strict=True
            )
        ]
        dedupe = self._dedupe
        dedupe_write = (
            dedupe.new_keys([incident.notification.dedupe_key for incident in incidents])
            if dedupe is not None
            else None
        )
        dedupe_rows = dedupe_write.rows() if dedupe_write is not None else []
        purge_before = dedupe.purge_due() if dedupe is not None else None

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "INSERT INTO incidents (seq, incident_id, priority, card, notification, state, "
                "enqueued_at) VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                rows,
            )
            if dedupe_rows:
                connection.executemany(_INSERT_DEDUPE, dedupe_rows)
            if purge_before is not None:
                connection.execute("DELETE FROM dedupe WHERE expires_at <= ?", (purge_before,))

        def committed(_: None) -> None:
            for seq, incident in enumerate(incidents, first_seq):
                self._rows[incident.incident_id] = seq
            self._unfinished.add(len(incidents))
            self._waiting.push_all(incidents, priorities)
            if dedupe is not None and dedupe_write is not None:
                dedupe.committed(dedupe_write)

        self._reserved += len(incidents)
        try:
            await self._db.transaction(
                write, what=f"queue {len(incidents)} incident(s)", on_commit=committed
            )
        except StorageError:
            return False
        finally:
            self._reserved -= len(incidents)
        return True

    async def get(self) -> Incident:
        incident = await self._waiting.get()
        seq, owner = self._rows[incident.incident_id], self._owner

        def claim(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE incidents SET state = 'claimed', claimed_by = ? WHERE seq = ?",
                (owner, seq),
            )

        # Not awaited: a claim only says who is working on it; the next start releases every
        # claim anyway, and the thread keeps it ahead of this incident's completion.
        self._db.submit(claim, what="claim an incident")
        return incident

    def task_done(self, incident: Incident) -> None:
        self._unfinished.finish()
        seq = self._rows.pop(incident.incident_id, None)
        if seq is None:  # not one of this queue's rows: nothing stored to delete
            return
        self._db.submit(
            lambda connection: connection.execute("DELETE FROM incidents WHERE seq = ?", (seq,)),
            what="complete an incident",
        )

    def release(self, incident: Incident) -> None:
        self._unfinished.finish()
        seq = self._rows.pop(incident.incident_id, None)
        if seq is None:
            return
        self._db.submit(
            lambda connection: connection.execute(
                "UPDATE incidents SET state = 'queued', claimed_by = NULL WHERE seq = ?", (seq,)
            ),
            what="release an incident",
        )

    def completion(self, incident: Incident) -> Callable[[sqlite3.Connection], None]:
        """The statement that deletes ``incident``'s row, for another transaction on this
        database to run (the sink outbox's, which stores the incident's deliveries with it).
        For an incident this queue does not hold (finished, or never queued here) it does
        nothing."""
        seq = self._rows.get(incident.incident_id)

        def complete(connection: sqlite3.Connection) -> None:
            if seq is not None:
                connection.execute("DELETE FROM incidents WHERE seq = ?", (seq,))

        return complete

    async def join(self) -> None:
        await self._unfinished.wait_idle()


def _settle_unloadable(
    connection: sqlite3.Connection, broken: Sequence[int], unrouted: Sequence[int]
) -> None:
    connection.executemany(
        "UPDATE incidents SET state = 'unreadable' WHERE seq = ?", [(seq,) for seq in broken]
    )
    connection.executemany("DELETE FROM incidents WHERE seq = ?", [(seq,) for seq in unrouted])
