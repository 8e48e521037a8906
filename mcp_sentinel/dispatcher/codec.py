"""Notifications and dedupe keys as they are stored in the state database.

A notification is stored as the JSON of ``IncidentNotification.as_dict()`` (the same view the
audit log holds); ``notification_from_json`` is its exact inverse and raises ``ValueError``
for anything else, so a row this version cannot read is reported, never half-loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mcp_sentinel.models import AlertGroup, DedupeKey, IncidentNotification

_SOURCES = frozenset({"webhook", "prometheus", "alertmanager", "replay"})


# ASCII: a stray surrogate in a label must not make the row impossible to encode.
_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def notification_to_json(notification: IncidentNotification) -> str:
    (text,) = notifications_to_json([notification])
    return text


def notifications_to_json(notifications: Sequence[IncidentNotification]) -> list[str]:
    """``notification_to_json`` of each, for the notifications of one payload, which share
    their group and time of arrival: those parts are encoded once, not once per alert (the
    durable queue's intake does this for every alert of a storm)."""
    groups: dict[int, str] = {}
    times: dict[datetime, str] = {}
    texts = []
    for notification in notifications:
        group = notification.group
        group_text = groups.get(id(group))
        if group_text is None:
            group_text = groups[id(group)] = _encode(
                {
                    "key": group.key,
                    "labels": group.labels,
                    "receiver": group.receiver,
                    "external_url": group.external_url,
                }
            )
        received = times.get(notification.received_at)
        if received is None:
            received = times[notification.received_at] = notification.received_at.isoformat()
        ends_at = notification.ends_at
        head = _encode(
            {
                "fingerprint": notification.fingerprint,
                "status": notification.status,
                "starts_at": notification.starts_at.isoformat(),
                "ends_at": ends_at.isoformat() if ends_at else None,
                "labels": notification.labels,
                "annotations": notification.annotations,
                "generator_url": notification.generator_url,
            }
        )
        # The same text as encoding ``as_dict()`` without ``runbook_url`` (derived from the
        # annotations), key for key: ``notification_from_json`` reads either.
        texts.append(
            f'{head[:-1]},"group":{group_text},"source":"{notification.source}",'
            f'"received_at":"{received}"}}'
        )
    return texts


def _strings(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{what} is not a mapping of strings")
    return dict(value)


def notification_from_json(text: str) -> IncidentNotification:
    """The inverse of ``notification_to_json``; ``ValueError`` when ``text`` is not one."""
    try:
        data = json.loads(text)
        group = data["group"]
        status = data["status"]
        source = data["source"]
        if status not in ("firing", "resolved") or source not in _SOURCES:
            raise ValueError(f"unknown status {status!r} or source {source!r}")
        return IncidentNotification(
            fingerprint=str(data["fingerprint"]),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]) if data["ends_at"] else None,
            status=status,
            labels=_strings(data["labels"], "labels"),
            annotations=_strings(data["annotations"], "annotations"),
            generator_url=str(data["generator_url"]),
            group=AlertGroup(
                key=str(group["key"]),
                labels=_strings(group["labels"], "group labels"),
                receiver=str(group["receiver"]),
                external_url=str(group["external_url"]),
            ),
            source=source,
            received_at=datetime.fromisoformat(data["received_at"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a stored notification ({type(exc).__name__}: {exc})") from None


def key_to_row(key: DedupeKey) -> tuple[str, str, str]:
    fingerprint, starts_at, status = key
    return fingerprint, starts_at.isoformat(), status


def key_from_row(fingerprint: str, starts_at: str, status: str) -> DedupeKey:
    return fingerprint, datetime.fromisoformat(starts_at), status
