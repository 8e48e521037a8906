"""Webhook payloads kept once, as they arrived: the ``payloads`` and ``payload_incidents``
tables of the state database, as ``sqlite_queue`` writes and reads them.

A webhook payload whose dispatch queues at least one incident is one row of ``payloads``,
written by the intake transaction: the body (the bytes that arrived), its ``source`` and
``received_at`` (shared by all its notifications), and its queued incidents, encoded once as
one JSON object of columns, ``{"position": [...], "incident_id": [...], "card": [...],
"priority": [...], "fresh": [...]}`` (the i-th incident is the i-th of each): ``position`` is
the index in the body's ``alerts`` of the incident's alert, ``fresh`` says its dedupe key was
new (the payload keeps it). Columns rather than an array per incident: building a small list
per alert cost as much as encoding them all. The dedupe keys are not rows of their own: they
are the fingerprint, ``startsAt`` and status of ``alerts[position]``, read from the body after
a restart, and they expire at ``keys_expire_at``. So intake writes one row per payload,
whatever its size: a row per alert (and its dedupe row) costs more than the alert's whole
dispatch in memory.

The payload's ``seq`` is the arrival number of its first incident and its incidents follow
(``seq`` plus their index in the columns), on the same number line as the ``incidents``
table, so the order of arrival holds across both. An incident of a payload is named by
(seq, position).

Per-incident changes happen at investigation rate and write one small row of
``payload_incidents`` (payload, position, state, claimed_by) each; no row means queued:

- a worker's ``get`` claims it (``claimed``): advisory, the next start releases every claim
  (so the claim's commit is not fsynced, see ``sqlite_db``);
- the sink outbox's ``completion``, in the outbox's own transaction, marks it ``done``, or
  ``task_done`` does when the outbox did not (``task_done`` then writes nothing more): from
  that commit on it is never investigated again;
- ``release`` deletes the claim (not fsynced either): it is queued again for the next start.

The ``state`` of a payload row:

- ``queued`` from intake while any of its incidents is not done;
- ``finished`` once the last is done (at the ``task_done`` of the last one the queue holds,
  not fsynced when the outbox completed that one, or at the start that finds none left to
  run): the body and the incidents are dropped and only
  the fresh dedupe keys stay, as ``[[fingerprint, startsAt, status], ...]`` in
  ``dedupe_keys``, until ``keys_expire_at``; the ``payload_incidents`` rows go. A payload
  with no unexpired key is deleted then instead. The intake's periodic purge deletes
  finished rows whose keys expired (a partial index finds them; intake never writes to it);
- ``unreadable``: the start found a body or incidents this version cannot read, or a worker
  found the body so when it took an incident (the queue reads a waiting incident's alert back
  from the body then: ``notifications_of``): kept as it is for a human, named in the log,
  counted at every start, never half-loaded.

Disk: a body stays only while an incident of its payload waits or runs (the queue's capacity
bounds those), whole even when one alert of it was new; what stays after, until the keys
expire, is about what the ``dedupe`` rows of the same keys would take.

The body is the last column: SQLite reads a row's columns in order, and whatever follows a
large value sits on its overflow pages, which every read of the row's other columns would
then walk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_json

from mcp_sentinel.dispatcher.codec import SOURCES, key_from_row, key_to_row
from mcp_sentinel.models import (
    DedupeKey,
    Incident,
    IncidentCard,
    IncidentNotification,
    PayloadOrigin,
    WebhookPayload,
)
from mcp_sentinel.watchers.webhook import describe_validation_error

INSERT_PAYLOAD = (
    "INSERT INTO payloads (seq, state, source, received_at, enqueued_at, keys_expire_at, "
    "incident_count, incidents, body) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)"
)
_CLAIM = (
    "INSERT INTO payload_incidents (payload, position, state, claimed_by) "
    "VALUES (?, ?, 'claimed', ?) "
    "ON CONFLICT (payload, position) DO UPDATE SET claimed_by = excluded.claimed_by "
    "WHERE state = 'claimed'"
)
_DONE = (
    "INSERT INTO payload_incidents (payload, position, state) VALUES (?, ?, 'done') "
    "ON CONFLICT (payload, position) DO UPDATE SET state = 'done', claimed_by = NULL"
)
_RELEASE = "DELETE FROM payload_incidents WHERE payload = ? AND position = ? AND state = 'claimed'"


def _json_text(value: Any) -> str:
    """pydantic-core's encoder (several times the standard library's speed), or the standard
    library's ASCII one for what it refuses (a lone surrogate in a string)."""
    try:
        return to_json(value).decode()
    except PydanticSerializationError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def shares_one_arrival(incidents: Sequence[Incident]) -> bool:
    """True when the incidents' notifications share their ``received_at`` and ``source``, as
    those of one webhook payload do: a payload row keeps one of each."""
    first = incidents[0].notification
    received_at, source = first.received_at, first.source
    for incident in incidents:
        notification = incident.notification
        # The webhook gives a payload's notifications the same datetime object: ``is`` first.
        if notification.source != source or (
            notification.received_at is not received_at and notification.received_at != received_at
        ):
            return False
    return True


@dataclass(frozen=True, slots=True)
class PayloadIncidents:
    """The queued incidents of one payload, by column (the i-th incident is the i-th of each);
    what the ``incidents`` column holds."""

    positions: Sequence[int]
    incident_ids: list[str]
    cards: list[str]
    priorities: Sequence[int]
    fresh: Sequence[bool]

    @classmethod
    def of(
        cls,
        incidents: Sequence[Incident],
        positions: Sequence[int],
        priorities: Sequence[int],
        fresh: Sequence[bool],
    ) -> PayloadIncidents:
        return cls(
            positions,
            [incident.incident_id for incident in incidents],
            [incident.card.resource for incident in incidents],
            priorities,
            fresh,
        )

    def to_text(self) -> str:
        return _json_text(
            {
                "position": self.positions,
                "incident_id": self.incident_ids,
                "card": self.cards,
                "priority": self.priorities,
                "fresh": self.fresh,
            }
        )

    @classmethod
    def from_text(cls, text: str) -> PayloadIncidents:
        """The inverse of ``to_text``; ``ValueError`` for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the incidents are not an object of columns")
        try:
            columns = (
                data["position"],
                data["incident_id"],
                data["card"],
                data["priority"],
                data["fresh"],
            )
        except KeyError as exc:
            raise ValueError(f"the incidents have no column {exc}") from None
        types = (int, str, str, int, bool)
        if not all(
            isinstance(column, list) and all(type(value) is kind for value in column)
            for column, kind in zip(columns, types, strict=True)
        ):
            raise ValueError("a column of the incidents is not an array of its type")
        if not columns[0] or len({len(column) for column in columns}) != 1:
            raise ValueError("the columns of the incidents are empty or of different lengths")
        return cls(*columns)


def payload_row(
    seq: int,
    origin: PayloadOrigin,
    incidents: Sequence[Incident],
    columns: PayloadIncidents,
    *,
    enqueued_at: float,
    keys_expire_at: float,
) -> tuple[object, ...]:
    """The values of ``INSERT_PAYLOAD`` for one payload (see the module docstring)."""
    first = incidents[0].notification
    return (
        seq,
        first.source,
        first.received_at.isoformat(),
        enqueued_at,
        keys_expire_at,
        len(incidents),
        columns.to_text(),
        origin.body,
    )


# -- per-incident changes, run on the database thread ---------------------------------------


def claim(connection: sqlite3.Connection, seq: int, position: int, owner: str) -> None:
    connection.execute(_CLAIM, (seq, position, owner))


def mark_done(connection: sqlite3.Connection, seq: int, position: int) -> None:
    connection.execute(_DONE, (seq, position))


def release_claim(connection: sqlite3.Connection, seq: int, position: int) -> None:
    connection.execute(_RELEASE, (seq, position))


def finish(
    connection: sqlite3.Connection,
    seq: int,
    keys: Sequence[DedupeKey],
    keys_expire_at: float,
    now: float,
) -> None:
    """Every incident of payload ``seq`` is done: keep only its unexpired dedupe keys."""
    if keys and keys_expire_at > now:
        connection.execute(
            "UPDATE payloads SET state = 'finished', incidents = '[]', body = NULL, "
            "dedupe_keys = ? WHERE seq = ?",
            (_json_text([key_to_row(key) for key in keys]), seq),
        )
    else:
        connection.execute("DELETE FROM payloads WHERE seq = ?", (seq,))
    connection.execute("DELETE FROM payload_incidents WHERE payload = ?", (seq,))


def purge_finished(connection: sqlite3.Connection, before: float) -> None:
    """Delete finished payloads whose dedupe keys expired by ``before``."""
    connection.execute(
        "DELETE FROM payloads WHERE state = 'finished' AND keys_expire_at <= ?", (before,)
    )


# -- what a start reads -----------------------------------------------------------------------


@dataclass(slots=True)
class OpenPayload:
    """A stored payload with incidents the queue holds, not all done yet. ``unfinished``
    counts the ones the queue still holds; ``keys`` are its fresh dedupe keys, which the
    payload row keeps once they are all done."""

    seq: int
    unfinished: int
    keys: list[DedupeKey]
    keys_expire_at: float


@dataclass(slots=True, eq=False)
class PayloadPlace:
    """An incident of a stored payload, as the durable queue holds it from its commit until it
    is finished: where it is stored (its payload and its alert's position in the body) and its
    ``Incident`` but for the notification, which the queue makes again from the body when a
    worker takes it (``notifications_of``)."""

    payload: OpenPayload
    position: int
    priority: int
    card: IncidentCard
    incident_id: str
    enqueued_monotonic: float
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class StoredPayload:
    """A ``queued`` payload row, as a start reads it; ``done``: the positions done already."""

    seq: int
    source: str
    received_at: str
    enqueued_at: float
    keys_expire_at: float
    incidents: str
    body: bytes
    done: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class StoredIncident:
    """One incident of a stored payload, read back: its place and what the row says of it."""

    seq: int  # its arrival number: the payload's seq plus its index
    position: int
    incident_id: str
    card: str
    priority: int
    notification: IncidentNotification


@dataclass(frozen=True, slots=True)
class ReadPayload:
    """A stored payload read whole: its incidents not done yet, and its fresh dedupe keys."""

    stored: StoredPayload
    waiting: list[StoredIncident]
    keys: list[DedupeKey]


def load_queued(connection: sqlite3.Connection) -> list[StoredPayload]:
    """On the database thread: every ``queued`` payload, in arrival order."""
    done: dict[int, set[int]] = {}
    for seq, position in connection.execute(
        "SELECT payload, position FROM payload_incidents WHERE state = 'done'"
    ):
        done.setdefault(seq, set()).add(position)
    rows = connection.execute(
        "SELECT seq, source, received_at, enqueued_at, keys_expire_at, incidents, body "
        "FROM payloads WHERE state = 'queued' ORDER BY seq"
    ).fetchall()
    return [
        StoredPayload(
            seq,
            source,
            received_at,
            enqueued_at,
            expiry,
            incidents,
            body,
            frozenset(done.get(seq, ())),
        )
        for seq, source, received_at, enqueued_at, expiry, incidents, body in rows
    ]


def _parsed(body: bytes) -> WebhookPayload:
    """``body`` parsed as the webhook parses it; ``ValueError`` with a one-line reason."""
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise ValueError(
            "the body is not an Alertmanager webhook payload this version reads ("
            + "; ".join(problems[:3])
            + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")
            + ")"
        ) from None


def notifications_of(
    source: str, received_at: str, body: bytes | None
) -> list[IncidentNotification]:
    """The notifications of a stored payload (its columns ``source``, ``received_at`` and
    ``body``), in the body's order, as the webhook made them; ``ValueError`` when they cannot
    be read."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    if body is None:
        raise ValueError("the body is gone")
    return _parsed(body).notifications(
        source=source,  # type: ignore[arg-type]  # checked against SOURCES above
        received_at=datetime.fromisoformat(received_at),
    )


def read_body(connection: sqlite3.Connection, seq: int) -> tuple[str, str, bytes | None] | None:
    """On the database thread: ``source``, ``received_at`` and ``body`` of payload ``seq``,
    or None when there is no such row."""
    row: tuple[str, str, bytes | None] | None = connection.execute(
        "SELECT source, received_at, body FROM payloads WHERE seq = ?", (seq,)
    ).fetchone()
    return row


def set_aside(connection: sqlite3.Connection, seq: int) -> None:
    """Payload ``seq`` cannot be read: keep it, as it is, for a human."""
    connection.execute("UPDATE payloads SET state = 'unreadable' WHERE seq = ?", (seq,))


def read_payload(stored: StoredPayload) -> ReadPayload:
    """Parse ``stored`` as the webhook did; ``ValueError`` when any of it cannot be read, so a
    payload is loaded whole or not at all."""
    columns = PayloadIncidents.from_text(stored.incidents)
    notifications = notifications_of(stored.source, stored.received_at, stored.body)
    waiting: list[StoredIncident] = []
    keys: list[DedupeKey] = []
    positions: set[int] = set()
    for index, (position, incident_id, card, priority, fresh) in enumerate(
        zip(
            columns.positions,
            columns.incident_ids,
            columns.cards,
            columns.priorities,
            columns.fresh,
            strict=True,
        )
    ):
        if not 0 <= position < len(notifications) or position in positions:
            raise ValueError(f"position {position} is not one alert of the payload")
        positions.add(position)
        notification = notifications[position]
        if fresh:
            keys.append(notification.dedupe_key)
        if position not in stored.done:
            waiting.append(
                StoredIncident(
                    stored.seq + index, position, incident_id, card, priority, notification
                )
            )
    return ReadPayload(stored, waiting, keys)


def load_keys(connection: sqlite3.Connection, now: float) -> list[tuple[str, float, str, Any]]:
    """On the database thread: (state, expiry, incidents or keys, body) of every payload whose
    dedupe keys are unexpired at ``now``, unreadable ones left out."""
    rows: list[tuple[str, float, str, Any]] = connection.execute(
        "SELECT state, keys_expire_at, CASE state WHEN 'finished' THEN dedupe_keys "
        "ELSE incidents END, body FROM payloads "
        "WHERE state IN ('queued', 'finished') AND keys_expire_at > ?",
        (now,),
    ).fetchall()
    return rows


def keys_of(state: str, incidents_or_keys: str, body: bytes | None) -> list[DedupeKey]:
    """The fresh dedupe keys of one row of ``load_keys``; ``ValueError`` when unreadable."""
    if state == "finished":
        data = json.loads(incidents_or_keys)
        if not isinstance(data, list) or not all(
            isinstance(row, list) and len(row) == 3 and all(isinstance(v, str) for v in row)
            for row in data
        ):
            raise ValueError("the dedupe keys are not an array of [fingerprint, startsAt, status]")
        return [key_from_row(*row) for row in data]
    columns = PayloadIncidents.from_text(incidents_or_keys)
    alerts = _parsed(body or b"").alerts
    keys: list[DedupeKey] = []
    for position, fresh in zip(columns.positions, columns.fresh, strict=True):
        if fresh:
            if not 0 <= position < len(alerts):
                raise ValueError(f"position {position} is not one alert of the payload")
            alert = alerts[position]
            keys.append((alert["fingerprint"], alert["startsAt"], alert["status"]))
    return keys
