"""What a start finds of an earlier process in the durable queue's tables, and makes of it.

Recovery (``open``, before the workers start): incidents ``claimed`` by an earlier process were
cut off mid-investigation, so they are queued again (counted as resumed); every queued incident
of either table, not done, is then loaded in priority and arrival order, keeping its incident
id. An incident whose card is no longer configured goes to the default card or, without one,
is logged as unrouted and finished; a row this version cannot read (a notification, or a
payload's body or incidents) is kept as ``unreadable``, never half-loaded, and named in the log;
the unreadable rows are counted at every start. A payload none of whose incidents is left to
run is finished then.

``recover`` does that (on ``SqliteQueueBackend.open``) and answers what the queue then holds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass

from loguru import logger

from mcp_sentinel.dispatcher import sqlite_payloads
from mcp_sentinel.dispatcher.codec import notification_from_json
from mcp_sentinel.dispatcher.lifecycle import IncidentKey
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.dispatcher.sqlite_payloads import (
    OpenPayload,
    PayloadIncidents,
    PayloadPlace,
    StoredPayload,
)
from mcp_sentinel.models import Incident, IncidentCard, IncidentNotification


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a start found of an earlier process (``SqliteQueueBackend.open`` answers it)."""

    resumed: int  # claimed incidents: cut off mid-investigation, queued again
    queued: int  # incidents loaded (the resumed ones included)
    rerouted: int  # incidents whose card is gone, given to the default card
    unrouted: int  # incidents whose card is gone, with no default card: logged and finished
    unreadable: int  # rows (incidents or payloads) this version cannot read, kept for a human


@dataclass(frozen=True, slots=True)
class _Found:
    """What the recovery transaction read."""

    resumed: int
    rows: list[tuple[int, str, int, str, str, float]]
    payloads: list[StoredPayload]
    unreadable: int
    last_seq: int


@dataclass(slots=True)
class _Unloadable:
    """What the recovery could not queue, to settle in one transaction."""

    broken_rows: list[int]
    unrouted_rows: list[int]
    broken_payloads: list[int]
    unrouted_places: list[tuple[int, int]]
    finished: list[OpenPayload]

    def __bool__(self) -> bool:
        return bool(
            self.broken_rows
            or self.unrouted_rows
            or self.broken_payloads
            or self.unrouted_places
            or self.finished
        )


@dataclass(frozen=True, slots=True)
class Recovered:
    """What the queue holds after ``recover``: what waits, in priority and arrival order, with
    its priorities (an incident of a payload as its place, as the queue holds a new one; an
    incident of a row whole); where each is stored (its seq in ``incidents``, or its place in
    its payload); the keys of the resolved alerts among them, for the incident tracker; the
    next free seq; and the counts for the log and the caller."""

    waiting: list[Incident | PayloadPlace]
    priorities: list[int]
    resolved: list[IncidentKey]
    rows: dict[str, int]
    next_seq: int
    recovery: Recovery


async def recover(
    db: SqliteDatabase,
    *,
    cards: Mapping[str, IncidentCard],
    default_card: IncidentCard | None,
    now: float,
) -> Recovered:
    """Release earlier claims and load what waits; see the module docstring. ``cards`` are
    the configured incident cards by name; ``now`` is the wall clock's time."""
    found = await db.transaction(_load_queue, what="load the queue")
    monotonic_now = time.monotonic()
    loaded: list[tuple[int, int, Incident | PayloadPlace]] = []  # (priority, seq, what waits)
    resolved: list[IncidentKey] = []
    rows: dict[str, int] = {}
    unloadable = _Unloadable([], [], [], [], [])
    rerouted = 0

    def card_again(
        card_name: str, notification: IncidentNotification, incident_id: str
    ) -> IncidentCard | None:
        nonlocal rerouted
        card, moved = _card_again(cards, default_card, card_name, notification, incident_id)
        rerouted += moved
        return card

    for seq, incident_id, priority, card_name, stored, enqueued_at in found.rows:
        try:
            notification = notification_from_json(stored)
        except ValueError as exc:
            logger.error(
                "queued incident {incident_id} cannot be read ({error}); kept in {path} "
                "as unreadable",
                incident_id=incident_id,
                error=exc,
                path=db.path,
            )
            unloadable.broken_rows.append(seq)
            continue
        card = card_again(card_name, notification, incident_id)
        if card is None:
            unloadable.unrouted_rows.append(seq)
            continue
        waited = max(0.0, now - float(enqueued_at))
        loaded.append(
            (priority, seq, Incident(notification, card, incident_id, monotonic_now - waited))
        )
        rows[incident_id] = seq
        if notification.status == "resolved":
            resolved.append(notification.key)
    for payload_row in found.payloads:
        try:
            read = sqlite_payloads.read_payload(payload_row)
        except ValueError as exc:
            logger.error(
                "queued payload {seq} cannot be read ({error}); its incidents ({ids}) are "
                "kept in {path} as unreadable",
                seq=payload_row.seq,
                error=exc,
                ids=_some_ids(payload_row.incidents),
                path=db.path,
            )
            unloadable.broken_payloads.append(payload_row.seq)
            continue
        payload = OpenPayload(payload_row.seq, 0, read.keys, payload_row.keys_expire_at)
        enqueued_monotonic = monotonic_now - max(0.0, now - float(payload_row.enqueued_at))
        for item in read.waiting:
            card = card_again(item.card, item.notification, item.incident_id)
            if card is None:
                unloadable.unrouted_places.append((payload.seq, item.position))
                continue
            place = PayloadPlace(
                payload, item.position, item.priority, card, item.incident_id, enqueued_monotonic
            )
            loaded.append((item.priority, item.seq, place))
            payload.unfinished += 1
            if item.notification.status == "resolved":
                resolved.append(item.notification.key)
        if payload.unfinished == 0:
            unloadable.finished.append(payload)
    if unloadable:
        await db.transaction(
            lambda connection: _settle_unloadable(connection, unloadable, now),
            what="set aside unloadable incidents",
        )
    loaded.sort(key=lambda item: (item[0], item[1]))
    waiting = [incident for _, _, incident in loaded]
    broken = len(unloadable.broken_rows) + len(unloadable.broken_payloads)
    unrouted = len(unloadable.unrouted_rows) + len(unloadable.unrouted_places)
    if found.resumed or waiting or found.unreadable or broken:
        logger.info(
            "queue recovered from {path}: {queued} incident(s) to investigate ({resumed} cut "
            "off mid-investigation); {unreadable} unreadable row(s) kept",
            path=db.path,
            queued=len(waiting),
            resumed=found.resumed,
            unreadable=found.unreadable + broken,
        )
    return Recovered(
        waiting,
        [priority for priority, _, _ in loaded],
        resolved,
        rows,
        found.last_seq + 1,
        Recovery(found.resumed, len(waiting), rerouted, unrouted, found.unreadable),
    )


def _card_again(
    cards: Mapping[str, IncidentCard],
    default_card: IncidentCard | None,
    card_name: str,
    notification: IncidentNotification,
    incident_id: str,
) -> tuple[IncidentCard | None, bool]:
    """The card a stored incident goes to now, and whether it is not the one it was queued
    for; None (logged as unrouted) when its card is gone and there is no default card."""
    card = cards.get(card_name)
    if card is not None:
        return card, False
    if default_card is None:
        logger.error(
            "unrouted alert {alertname} (fingerprint {fingerprint}, incident "
            "{incident_id}): queued for card {card}, which is no longer configured, "
            "and no default card is configured; not investigated",
            alertname=notification.alertname or "<no alertname>",
            fingerprint=notification.fingerprint,
            incident_id=incident_id,
            card=card_name,
        )
        return None, False
    logger.warning(
        "incident {incident_id} was queued for card {card}, which is no longer "
        "configured: the default card {default} takes it",
        incident_id=incident_id,
        card=card_name,
        default=default_card.resource,
    )
    return default_card, True


def _some_ids(incidents: str, shown: int = 5) -> str:
    """The first incident ids of a payload's stored incidents, for a log line; the text itself
    when it cannot be read."""
    try:
        ids = PayloadIncidents.from_text(incidents).incident_ids
    except ValueError:
        return repr(incidents[:200])
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


def _load_queue(connection: sqlite3.Connection) -> _Found:
    """On the database thread: release earlier claims and read what waits."""
    resumed = connection.execute(
        "UPDATE incidents SET state = 'queued', claimed_by = NULL WHERE state = 'claimed'"
    ).rowcount
    resumed += connection.execute("DELETE FROM payload_incidents WHERE state = 'claimed'").rowcount
    rows = connection.execute(
        "SELECT seq, incident_id, priority, card, notification, enqueued_at FROM incidents "
        "WHERE state = 'queued'"
    ).fetchall()
    (unreadable,) = connection.execute(
        "SELECT (SELECT count(*) FROM incidents WHERE state = 'unreadable') "
        "+ (SELECT count(*) FROM payloads WHERE state = 'unreadable')"
    ).fetchone()
    (last_seq,) = connection.execute(
        "SELECT max((SELECT coalesce(max(seq), 0) FROM incidents), "
        "(SELECT coalesce(max(seq + incident_count - 1), 0) FROM payloads))"
    ).fetchone()
    return _Found(resumed, rows, sqlite_payloads.load_queued(connection), unreadable, last_seq)


def _settle_unloadable(connection: sqlite3.Connection, unloadable: _Unloadable, now: float) -> None:
    connection.executemany(
        "UPDATE incidents SET state = 'unreadable' WHERE seq = ?",
        [(seq,) for seq in unloadable.broken_rows],
    )
    connection.executemany(
        "DELETE FROM incidents WHERE seq = ?", [(seq,) for seq in unloadable.unrouted_rows]
    )
    connection.executemany(
        "UPDATE payloads SET state = 'unreadable' WHERE seq = ?",
        [(seq,) for seq in unloadable.broken_payloads],
    )
    for seq, position in unloadable.unrouted_places:
        sqlite_payloads.mark_done(connection, seq, position)
    for payload in unloadable.finished:
        sqlite_payloads.finish(connection, payload.seq, payload.keys, payload.keys_expire_at, now)
