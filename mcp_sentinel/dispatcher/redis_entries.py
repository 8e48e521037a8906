"""Incidents as entries of the ``redis`` backend's stream, and back.

An entry's fields are ``incident_id``, ``card`` (the card's resource name), ``notification``
(``codec.notification_to_json``), ``enqueued_at`` (wall-clock seconds, so another replica can
tell how long it waited) and ``traceparent`` (empty when none): the order the ``INTAKE`` script
takes them in. ``decode_entry`` is the inverse; it never raises: what cannot be investigated
here (unreadable, or for a card this replica does not have and no default card) comes back as
``Unusable``, already logged, for the queue to set aside.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loguru import logger

from mcp_sentinel.dispatcher.codec import notification_from_json
from mcp_sentinel.models import Incident, IncidentCard

Entry = tuple[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Unusable:
    """An entry not to investigate; ``unreadable`` ones are kept for a human."""

    unreadable: bool


def incident_fields(incident: Incident, notification_text: str, enqueued_at: float) -> list[str]:
    """The values of the entry's fields, in the ``INTAKE`` script's order;
    ``notification_text`` is the notification as ``codec.notifications_to_json`` encodes it."""
    return [
        incident.incident_id,
        incident.card.resource,
        notification_text,
        repr(enqueued_at),
        incident.traceparent or "",
    ]


def first_entry(reply: Any) -> Entry:
    """The one entry of an ``XREADGROUP ... COUNT 1`` reply (RESP2, decoded)."""
    entry_id, fields = reply[0][1][0]
    return str(entry_id), dict(fields)


def decode_entry(
    entry_id: str,
    fields: Mapping[str, str],
    cards: Mapping[str, IncidentCard],
    default_card: IncidentCard | None,
) -> Incident | Unusable:
    """The entry's incident (its card found again by name, else the default card), keeping its
    incident id and the time it has waited; ``Unusable`` (logged) otherwise."""
    try:
        notification = notification_from_json(fields["notification"])
        incident_id = fields["incident_id"]
        card_name = fields["card"]
        enqueued_at = float(fields["enqueued_at"])
    except (KeyError, ValueError) as exc:
        logger.error(
            "queued entry {entry_id} cannot be read ({error}); set aside as unreadable",
            entry_id=entry_id,
            error=exc,
        )
        return Unusable(unreadable=True)
    card = cards.get(card_name) or default_card
    if card is None:
        logger.error(
            "unrouted alert {alertname} (incident {incident_id}): queued for card {card}, "
            "which this replica does not have, and no default card is configured; "
            "not investigated",
            alertname=notification.alertname or "<no alertname>",
            incident_id=incident_id,
            card=card_name,
        )
        return Unusable(unreadable=False)
    waited = max(0.0, time.time() - enqueued_at)
    traceparent = fields.get("traceparent") or None
    return Incident(notification, card, incident_id, time.monotonic() - waited, traceparent)
