"""The durable queue: ``SqliteQueueBackend``, a ``QueueBackend`` kept in the state database.

It keeps the waiting incidents in memory in priority order, so ``get`` and ``depth`` never
wait on the disk; the database is the truth after a restart. All its statements run on the
database's thread (``sqlite_db``). An accepted batch is stored in one of two ways:

- a webhook payload (``put_all`` given its ``PayloadOrigin``) is one row of ``payloads``: the
  body as it arrived, its queued incidents encoded once, the expiry of their dedupe keys,
  which are read back from the body. Its incidents' claims and completions are rows of
  ``payload_incidents``. The layout and the life of those rows: ``sqlite_payloads``;
- a batch without a body (the pollers, replay) is a row of ``incidents`` per incident, with
  its notification as JSON (``codec``), and a ``dedupe`` row per new key.

Either way ``put_all`` writes the batch (and, when the queue was given the dedupe store, its
dedupe keys) in one transaction and answers True only after the commit; the memory mirror is
updated once the commit is done. A row of ``incidents`` lives like this:

- ``put_all`` inserts the rows as ``queued``;
- ``get`` claims the row (``claimed``, ``claimed_by`` this process);
- ``task_done`` deletes it; ``release`` puts it back to ``queued`` for the next start. The sink
  outbox deletes it first, in the same transaction that stores the incident's deliveries
  (``completion``, run by ``sinks.outbox``, which then tells the queue, ``completed``): from
  that commit on, the incident is delivered, never investigated again, and ``task_done``
  writes nothing more for it. An incident of a payload goes the same way, with its row of
  ``payload_incidents`` (``claimed``, then ``done``; ``release`` deletes the claim).

Claims, releases and the tidying of a payload whose last incident the outbox completed are
submitted with ``durable=False``: their commits are not fsynced (``sqlite_db``), as the next
start mends their loss, so an investigated incident costs one fsync, the outbox's.

The queue assigns each incident its ``seq`` (the arrival order, after the highest one found at
``open``; a payload's incidents take consecutive ones, the first is the payload row's key) and
keeps where each incident it holds is stored in memory, so every later statement finds its row
by its primary key: neither table has an index on the incident id. Nothing of a payload's body
is kept in memory after its write, nor its notifications: an incident of a payload waits as its
place (``PayloadPlace``), and ``get`` makes its notification again from the stored body (one
read and parse per payload for its consecutive incidents), so a deep queue holds less than half
of what it would with the incidents whole. A body that cannot be read then (a damaged file) is
kept as ``unreadable`` and named in the log, and ``get`` goes on to the next incident; a read
that fails is tried again, with backoff, by the worker that needs it.

Recovery (``open``, before the workers start): ``sqlite_recovery``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger

from mcp_sentinel.dispatcher import sqlite_payloads, sqlite_recovery
from mcp_sentinel.dispatcher.codec import notifications_to_json
from mcp_sentinel.dispatcher.lifecycle import IncidentKey
from mcp_sentinel.dispatcher.queue import Unfinished, WaitingIncidents, priority_of
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase, StorageError
from mcp_sentinel.dispatcher.sqlite_dedupe import INSERT_DEDUPE, SqliteDedupeStore, purge
from mcp_sentinel.dispatcher.sqlite_payloads import OpenPayload, PayloadIncidents, PayloadPlace
from mcp_sentinel.dispatcher.sqlite_recovery import Recovery
from mcp_sentinel.models import (
    Incident,
    IncidentCard,
    IncidentNotification,
    PayloadOrigin,
)

Statement = Callable[[sqlite3.Connection], None]

# How long a worker waits before it tries a failed read of a stored payload again: doubling
# from the first to the last.
_READ_RETRY_FIRST_SECONDS = 0.1
_READ_RETRY_MAX_SECONDS = 10.0


class SqliteQueueBackend:
    """Implements ``QueueBackend`` on the state database. Owned by the app; call ``open``
    before the workers start. ``cards`` are the configured incident cards, by which stored
    incidents find their card again.

    With ``dedupe`` (the store on the same database), ``put_all`` also stores the incidents'
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
        # An incident of an ``incidents`` row waits whole; a payload's, as its place.
        self._waiting: WaitingIncidents[Incident | PayloadPlace] = WaitingIncidents()
        self._reserved = 0  # slots of put_all calls still committing
        self._unfinished = Unfinished()
        # Where each incident the queue holds is stored: its seq in ``incidents``, from
        # put_all to task_done/release; a payload's incident is its place, which waits in
        # ``_waiting`` and is kept here only once a worker took it, until task_done/release.
        # Not a dict of every waiting place: inserting a payload's 50 places into a dict as
        # deep as the queue cost ~24 µs per payload in a storm, on the event loop.
        self._rows: dict[str, int] = {}
        self._taken: dict[str, PayloadPlace] = {}
        # Taken incidents of payloads whose completion the outbox's transaction committed:
        # ``task_done`` writes nothing more for them (but the last one's ``finish``).
        self._completed: set[str] = set()
        # The notifications of the payload whose incident ``get`` made last: its next
        # incidents, which usually follow, need no read. None in place of them once the
        # payload's body could not be read: its next incidents are set aside without another
        # read, and the payload only once.
        self._last_read: tuple[OpenPayload, list[IncidentNotification] | None] | None = None
        self._next_seq = 1  # set by open, from the rows an earlier process left
        # The keys of the resolved alerts ``open`` loaded: the incident tracker learns them
        # before the workers start, so a firing one queued ahead of its resolution is not
        # investigated. Keys only: the incidents themselves wait in the queue.
        self.recovered_resolved: list[IncidentKey] = []

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
        """Release earlier claims and load what waits (``sqlite_recovery``)."""
        recovered = await sqlite_recovery.recover(
            self._db, cards=self._cards, default_card=self._default_card, now=self._clock()
        )
        self._next_seq = recovered.next_seq
        self._rows.update(recovered.rows)
        self._unfinished.add(len(recovered.waiting))
        self._waiting.push_all(recovered.waiting, recovered.priorities)
        self.recovered_resolved = recovered.resolved
        return recovered.recovery

    # -- the queue -------------------------------------------------------------------------

    async def put_all(
        self, incidents: Sequence[Incident], origin: PayloadOrigin | None = None
    ) -> bool:
        """Commit every incident (and its dedupe key) in one transaction, or none; False when
        the queue is full or the database refuses the write (the database logs why). With
        ``origin`` the batch is stored as its payload's row; see the module docstring."""
        waiting = len(self._waiting) + self._reserved
        if waiting + len(incidents) > self._capacity:
            return False
        if not incidents:
            return True
        if origin is not None and sqlite_payloads.shares_one_arrival(incidents):
            write, committed = self._payload_write(incidents, origin)
        else:
            write, committed = self._rows_write(incidents)
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

    def _payload_write(
        self, incidents: Sequence[Incident], origin: PayloadOrigin
    ) -> tuple[Statement, Callable[[Any], None]]:
        """The payload's one row, and the mirror of it once committed."""
        now = self._clock()
        seq = self._next_seq
        self._next_seq += len(incidents)  # a failed write leaves a gap, which is harmless
        priorities = [priority_of(incident) for incident in incidents]
        dedupe = self._dedupe
        if dedupe is not None:
            notifications = [incident.notification for incident in incidents]
            # ``dedupe_key`` spelled out: the property call costs more than the tuple, per alert.
            fresh, dedupe_write = dedupe.split_new(
                [(n.fingerprint, n.starts_at, n.status) for n in notifications]
            )
            keys, expiry, purge_before = dedupe_write.keys, dedupe_write.expiry, dedupe.purge_due()
        else:
            fresh, dedupe_write = [False] * len(incidents), None
            keys, expiry, purge_before = [], 0.0, None
        positions = origin.positions
        columns = PayloadIncidents.of(incidents, positions, priorities, fresh)
        row = sqlite_payloads.payload_row(
            seq, origin, incidents, columns, enqueued_at=now, keys_expire_at=expiry
        )

        def write(connection: sqlite3.Connection) -> None:
            connection.execute(sqlite_payloads.INSERT_PAYLOAD, row)
            if purge_before is not None:
                purge(connection, purge_before)

        def committed(_: None) -> None:
            payload = OpenPayload(seq, len(incidents), keys, expiry)
            places = [
                PayloadPlace(
                    payload,
                    position,
                    priority,
                    incident.card,
                    incident.incident_id,
                    incident.enqueued_monotonic,
                    incident.traceparent,
                )
                for incident, position, priority in zip(
                    incidents, positions, priorities, strict=True
                )
            ]
            self._unfinished.add(len(incidents))
            self._waiting.push_all(places, priorities)
            if dedupe is not None and dedupe_write is not None:
                dedupe.committed(dedupe_write)

        return write, committed

    def _rows_write(self, incidents: Sequence[Incident]) -> tuple[Statement, Callable[[Any], None]]:
        """A row per incident and per new dedupe key, and the mirror of them once committed."""
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
                connection.executemany(INSERT_DEDUPE, dedupe_rows)
            if purge_before is not None:
                purge(connection, purge_before)

        def committed(_: None) -> None:
            for seq, incident in enumerate(incidents, first_seq):
                self._rows[incident.incident_id] = seq
            self._unfinished.add(len(incidents))
            self._waiting.push_all(incidents, priorities)
            if dedupe is not None and dedupe_write is not None:
                dedupe.committed(dedupe_write)

        return write, committed

    async def get(self) -> Incident:
        place: PayloadPlace | None = None
        while True:
            waiting = await self._waiting.get()
            if isinstance(waiting, Incident):
                incident = waiting
                break
            try:
                made = await self._incident_at(waiting)
            except BaseException:
                # Cancelled while it read the body: the incident keeps its turn.
                self._waiting.push_front(waiting, waiting.priority)
                raise
            if made is not None:
                incident, place = made, waiting
                self._taken[incident.incident_id] = place
                break
        owner = self._owner
        claim: Statement
        if place is not None:
            seq, position = place.payload.seq, place.position

            def claim(connection: sqlite3.Connection) -> None:
                sqlite_payloads.claim(connection, seq, position, owner)

        else:
            row = self._rows[incident.incident_id]

            def claim(connection: sqlite3.Connection) -> None:
                connection.execute(
                    "UPDATE incidents SET state = 'claimed', claimed_by = ? WHERE seq = ?",
                    (owner, row),
                )

        # Not awaited, nor fsynced: a claim only says who is working on it; the next start
        # releases every claim anyway, and the thread keeps it ahead of this incident's
        # completion.
        self._db.submit(claim, what="claim an incident", durable=False)
        return incident

    async def _incident_at(self, place: PayloadPlace) -> Incident | None:
        """The incident at ``place``, its notification made again from its payload's body;
        None when the body cannot be read (then logged, set aside and no longer held)."""
        payload = place.payload
        last = self._last_read
        if last is not None and last[0] is payload:
            notifications = last[1]
            if notifications is None:
                self._drop_unreadable(place)
                return None
        else:
            row = await self._read_body(place)
            try:
                if row is None:
                    raise ValueError("its row is gone")
                notifications = sqlite_payloads.notifications_of(*row)
                if not 0 <= place.position < len(notifications):
                    raise ValueError(f"position {place.position} is not one alert of the payload")
            except ValueError as exc:
                self._set_aside(place, exc)
                self._last_read = (payload, None)
                return None
            self._last_read = (payload, notifications)
        return Incident(
            notifications[place.position],
            place.card,
            place.incident_id,
            place.enqueued_monotonic,
            place.traceparent,
        )

    async def _read_body(self, place: PayloadPlace) -> tuple[str, str, bytes | None] | None:
        """The stored body of ``place``'s payload, the read tried again until it succeeds:
        without it the worker has nothing to investigate."""
        seq, delay = place.payload.seq, _READ_RETRY_FIRST_SECONDS
        while True:
            try:
                return await self._db.read(
                    lambda connection: sqlite_payloads.read_body(connection, seq)
                )
            except StorageError as exc:
                logger.error(
                    "cannot read the stored alert of incident {incident_id} ({error}); trying "
                    "again in {delay:g}s",
                    incident_id=place.incident_id,
                    error=exc,
                    delay=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _READ_RETRY_MAX_SECONDS)

    def _set_aside(self, place: PayloadPlace, error: ValueError) -> None:
        """``place``'s payload cannot be read any more: kept as ``unreadable``, and its
        incident no longer held. Its payload is never finished by this process then (its
        count of unfinished incidents keeps this one), so the row stays as it is."""
        seq = place.payload.seq
        logger.error(
            "queued incident {incident_id} cannot be read ({error}); its payload {seq} is kept "
            "in {path} as unreadable",
            incident_id=place.incident_id,
            error=error,
            seq=seq,
            path=self._db.path,
        )
        self._unfinished.finish()
        self._db.submit(
            lambda connection: sqlite_payloads.set_aside(connection, seq),
            what="set aside an unreadable payload",
        )

    def _drop_unreadable(self, place: PayloadPlace) -> None:
        """Another incident of the payload ``_set_aside`` just kept as unreadable: named in
        the log and no longer held, with no second read or statement."""
        logger.error(
            "queued incident {incident_id} is in unreadable payload {seq}; kept in {path}",
            incident_id=place.incident_id,
            seq=place.payload.seq,
            path=self._db.path,
        )
        self._unfinished.finish()

    def task_done(self, incident: Incident) -> None:
        self._unfinished.finish()
        place = self._taken.pop(incident.incident_id, None)
        if place is not None:
            payload, position = place.payload, place.position
            completed = incident.incident_id in self._completed
            self._completed.discard(incident.incident_id)
            payload.unfinished -= 1
            if payload.unfinished == 0:
                if self._last_read is not None and self._last_read[0] is payload:
                    self._last_read = None
                # Not fsynced when the outbox committed the incident's completion: a finish
                # lost in a crash of the machine is made again by the next start.
                self._db.submit(
                    self._finish_statement(payload),
                    what="complete an incident",
                    durable=not completed,
                )
            elif not completed:
                self._db.submit(_done_statement(payload.seq, position), what="complete an incident")
            return
        seq = self._rows.pop(incident.incident_id, None)
        if seq is None:  # not one of this queue's rows: nothing stored to delete
            return
        self._db.submit(
            lambda connection: connection.execute("DELETE FROM incidents WHERE seq = ?", (seq,)),
            what="complete an incident",
        )

    def _finish_statement(self, payload: OpenPayload) -> Statement:
        """The last incident of ``payload`` is done: the row keeps only its dedupe keys."""
        seq, keys, expiry, now = payload.seq, payload.keys, payload.keys_expire_at, self._clock()
        return lambda connection: sqlite_payloads.finish(connection, seq, keys, expiry, now)

    def release(self, incident: Incident) -> None:
        # Not fsynced: a release lost in a crash of the machine leaves a claim, which the
        # next start releases.
        self._unfinished.finish()
        self._completed.discard(incident.incident_id)
        place = self._taken.pop(incident.incident_id, None)
        if place is not None:
            seq, position = place.payload.seq, place.position
            self._db.submit(
                lambda connection: sqlite_payloads.release_claim(connection, seq, position),
                what="release an incident",
                durable=False,
            )
            return
        row = self._rows.pop(incident.incident_id, None)
        if row is None:
            return
        self._db.submit(
            lambda connection: connection.execute(
                "UPDATE incidents SET state = 'queued', claimed_by = NULL WHERE seq = ?", (row,)
            ),
            what="release an incident",
            durable=False,
        )

    def completion(self, incident: Incident) -> Statement:
        """The statement that completes ``incident`` (deletes its row, or marks its place in
        its payload done), for another transaction on this database to run (the sink
        outbox's, which stores the incident's deliveries with it). For an incident this queue
        does not hold (finished, or never queued here) it does nothing."""
        place = self._taken.get(incident.incident_id)
        if place is not None:
            return _done_statement(place.payload.seq, place.position)
        seq = self._rows.get(incident.incident_id)

        def complete(connection: sqlite3.Connection) -> None:
            if seq is not None:
                connection.execute("DELETE FROM incidents WHERE seq = ?", (seq,))

        return complete

    def completed(self, incident: Incident) -> None:
        """The transaction that ran ``completion(incident)`` committed (the outbox's): the
        incident is done on disk, so ``task_done`` writes no completion of its own for it; a
        row of ``incidents`` is gone, so ``task_done`` and ``release`` find nothing to write."""
        if incident.incident_id in self._taken:
            self._completed.add(incident.incident_id)
        else:
            self._rows.pop(incident.incident_id, None)

    async def join(self) -> None:
        await self._unfinished.wait_idle()


def _done_statement(seq: int, position: int) -> Statement:
    return lambda connection: sqlite_payloads.mark_done(connection, seq, position)
