"""The sinks' outbox: deliveries kept in the state database until their sink takes them.

With the SQLite backend, ``SinkDispatcher`` gives every finished incident's record to
``SqliteOutbox.add`` before delivering it anywhere. That one transaction stores a row per sink
(the record as ``deadletter.record_to_json`` writes it) and deletes the incident's row from the
queue (the statement ``SqliteQueueBackend.completion`` gives): from that commit on, the incident
counts as investigated and only its deliveries are left. A delivery that returns deletes its row
(``acknowledge``); a crash before that delivers the row again after the next start
(``pending``).

That is at-least-once. It is exactly-once where the sink can tell a repeat:

- webhook: every attempt carries ``Idempotency-Key`` and ``X-Sentinel-Delivery-Id``, the same
  value for every attempt and after every restart (``sinks.webhook.delivery_id``); a receiver
  that remembers the ids it processed drops repeats.
- Slack: neither ``chat.postMessage``/``chat.update`` nor incoming webhooks accept an
  idempotency key. The bot sink edits the incident's message while it remembers it (in
  memory), so a repeat in the same process updates the message; a repeat after a restart, or
  through an incoming webhook, posts a second message.
- Jira: creating an issue takes no idempotency key either; the sink finds the fingerprint's
  issue (its map file, else a JQL search on the ``sentinel-fp-<fingerprint>`` label), so a
  repeat becomes one more comment on the same issue, never a second issue.
- audit: a crash between the record's fsync and its acknowledgement appends it once more
  after the restart (same incident id and report; the hash chain stays valid).

The window for a repeat is the time between a sink's answer and the commit of the delete.

Every method runs its statements on the database's thread; ``acknowledge`` and
``note_failure`` do not wait for them, and their commits are not fsynced (a lost
acknowledgement only means a repeat; a lost failure note, one attempt not counted).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.models import Incident, IncidentCard
from mcp_sentinel.sinks.base import IncidentRecord, canonical_json, canonical_object
from mcp_sentinel.sinks.deadletter import record_from_json


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One delivery waiting in the outbox, as read back at start-up."""

    id: int
    sink: str
    data: dict[str, Any] | None  # None: the stored record is not JSON
    attempts: int

    def record(self) -> IncidentRecord:
        """The record to deliver; ``ValueError`` (or ``KeyError``) when unreadable."""
        if self.data is None:
            raise ValueError("the stored record is not JSON")
        return record_from_json(self.data)


def stored_record(record: IncidentRecord) -> str:
    """The row's ``record``: ``deadletter.record_to_json(record)`` as canonical JSON, built from
    the record's own encoding (``IncidentRecord.json_fields``, which the audit log uses too)."""
    return canonical_object(
        {**record.json_fields(), "card_config": _card_json(record.incident.card)}
    )


@functools.lru_cache(maxsize=64)
def _card_json(card: IncidentCard) -> str:
    """A card's config as canonical JSON: cards are few and frozen, records many."""
    return canonical_json(card.model_dump(mode="json"))


def delivery_key(sink: str, record: IncidentRecord) -> str:
    """One delivery's identity: a record (incident and outcome) to one sink."""
    return f"{sink}:{record.incident.incident_id}:{record.report.outcome.value}"


class Outbox(Protocol):
    """Deliveries kept until their sink takes them: ``SqliteOutbox`` below, or
    ``redis_sink_state.RedisOutbox`` (shared by replicas, under leases)."""

    #: How often ``pending`` is asked again while running (None: at start only). A shared
    #: outbox answers there the deliveries of replicas that died.
    takeover_interval: float | None

    async def add(self, record: IncidentRecord, sinks: Sequence[str]) -> dict[str, int]: ...

    async def pending(self) -> list[OutboxEntry]: ...

    def acknowledge(self, entry_id: int) -> None: ...

    def note_failure(self, entry_id: int, error: str) -> None: ...


class QueuedRows(Protocol):
    """The queue whose rows the outbox completes (``dispatcher.sqlite_queue``)."""

    def completion(self, incident: Incident) -> Callable[[sqlite3.Connection], None]:
        """The statement that deletes ``incident``'s row, to run in the outbox's transaction."""
        ...

    def completed(self, incident: Incident) -> None:
        """The transaction that ran ``completion(incident)`` committed: the queue need not
        write the incident's completion again at its ``task_done``."""
        ...


class SqliteOutbox:
    """Implements ``Outbox`` on the ``outbox`` table. Shared by the ``SinkDispatcher`` (its
    only user) and owned, with the database, by the app. ``queue`` is the queue on the same
    database whose incidents' rows ``add`` deletes; without one, ``add`` stores deliveries
    only."""

    takeover_interval: float | None = None

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        queue: QueuedRows | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._queue = queue
        self._clock = clock

    async def add(self, record: IncidentRecord, sinks: Sequence[str]) -> dict[str, int]:
        """Store ``record`` for each of ``sinks`` and complete its incident in the queue, in one
        transaction. Returns sink -> row id for the rows added (a sink that already has this
        delivery pending is left out). Raises ``StorageError`` when the write fails."""
        stored = stored_record(record)
        incident_id = record.incident.incident_id
        keys = {sink: delivery_key(sink, record) for sink in sinks}
        now = self._clock()
        queue = self._queue
        complete = queue.completion(record.incident) if queue is not None else None

        def write(connection: sqlite3.Connection) -> dict[str, int]:
            added: dict[str, int] = {}
            for sink, key in keys.items():
                cursor = connection.execute(
                    "INSERT OR IGNORE INTO outbox (delivery_id, sink, record, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (key, sink, stored, now),
                )
                if cursor.rowcount == 1 and cursor.lastrowid is not None:
                    added[sink] = cursor.lastrowid
            if complete is not None:
                complete(connection)
            return added

        def committed(_: dict[str, int]) -> None:
            if queue is not None:
                queue.completed(record.incident)

        return await self._db.transaction(
            write, what=f"store the deliveries of incident {incident_id}", on_commit=committed
        )

    async def pending(self) -> list[OutboxEntry]:
        """Every delivery not acknowledged yet, oldest first (per sink, the order they came)."""

        def read(connection: sqlite3.Connection) -> list[tuple[int, str, str, int]]:
            return connection.execute(
                "SELECT id, sink, record, attempts FROM outbox ORDER BY id"
            ).fetchall()

        entries = []
        for entry_id, sink, stored, attempts in await self._db.read(read):
            try:
                data = json.loads(stored)
            except ValueError:
                data = None
            entries.append(OutboxEntry(entry_id, sink, data, attempts))
        return entries

    def acknowledge(self, entry_id: int) -> None:
        """The sink took it (or it went to the dead letters): delete the row."""
        # Not fsynced (see ``sqlite_db``): lost in a crash of the machine, it is one repeat.
        self._db.submit(
            lambda connection: connection.execute("DELETE FROM outbox WHERE id = ?", (entry_id,)),
            what="acknowledge a delivery",
            durable=False,
        )

    def note_failure(self, entry_id: int, error: str) -> None:
        """Count a failed attempt and keep its (safe) error, for whoever reads the table."""
        self._db.submit(
            lambda connection: connection.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, entry_id),
            ),
            what="note a failed delivery",
            durable=False,
        )
