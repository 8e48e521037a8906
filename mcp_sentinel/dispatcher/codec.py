"""Notifications and dedupe keys as they are stored in the state database.

A notification is stored as a JSON object with the keys of ``IncidentNotification.as_dict()``
(the view the audit log holds) but ``runbook_url``, which is derived from the annotations; its
times are ISO 8601, UTC spelled ``Z`` or ``+00:00``. ``notification_from_json`` is its exact
inverse and raises ``ValueError`` for anything else, so a row this version cannot read is
reported, never half-loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic_core import PydanticSerializationError, TzInfo, to_json

from mcp_sentinel.models import AlertGroup, DedupeKey, IncidentNotification

#: The sources a stored notification may name (``models.Source``).
SOURCES = frozenset({"webhook", "prometheus", "alertmanager", "replay"})


# The fallback encoder: ASCII, so a stray surrogate in a label cannot make a row impossible to
# encode.
_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def notification_to_json(notification: IncidentNotification) -> str:
    (text,) = notifications_to_json([notification])
    return text


def notifications_to_json(notifications: Sequence[IncidentNotification]) -> list[str]:
    """``notification_to_json`` of each, for the notifications of one payload, which share
    their group and time of arrival: those parts are encoded once, not once per alert (the
    durable queues' intake does this for every alert of a storm).

    pydantic-core's encoder writes them: 2-3 µs per alert on the storm's alerts, against
    ~13 µs for the standard library's (whose ``isoformat`` of a pydantic datetime alone costs
    ~3 µs). It spells UTC as ``Z`` and writes UTF-8, both of which ``notification_from_json``
    reads. A payload it cannot take whole (a lone surrogate in a label, a time zone it would
    round) goes through the standard library's encoder instead.
    """
    if not all(_exact_times(notification) for notification in notifications):
        return [_ascii_text(notification) for notification in notifications]
    try:
        return _fast_texts(notifications)
    except PydanticSerializationError:
        return [_ascii_text(notification) for notification in notifications]


def _exact_times(notification: IncidentNotification) -> bool:
    """True when pydantic-core writes the notification's times exactly: it drops the seconds
    of a UTC offset, which only a ``timezone`` (not pydantic's parser, nor ``UTC``) can have."""
    ends_at = notification.ends_at
    return (
        _whole_minute_zone(notification.starts_at)
        and (ends_at is None or _whole_minute_zone(ends_at))
        and _whole_minute_zone(notification.received_at)
    )


def _whole_minute_zone(moment: datetime) -> bool:
    zone = moment.tzinfo
    # pydantic's parser takes offsets in whole minutes only (RFC 3339): checking the type
    # is what keeps this ~20x cheaper than asking for the offset.
    return zone is UTC or type(zone) is TzInfo


def _fast_texts(notifications: Sequence[IncidentNotification]) -> list[str]:
    groups: dict[int, bytes] = {}
    times: dict[datetime, bytes] = {}
    texts = []
    for notification in notifications:
        group = notification.group
        group_text = groups.get(id(group))
        if group_text is None:
            group_text = groups[id(group)] = to_json(
                {
                    "key": group.key,
                    "labels": group.labels,
                    "receiver": group.receiver,
                    "external_url": group.external_url,
                }
            )
        received = times.get(notification.received_at)
        if received is None:
            received = times[notification.received_at] = to_json(notification.received_at)
        head = to_json(
            {
                "fingerprint": notification.fingerprint,
                "status": notification.status,
                "starts_at": notification.starts_at,
                "ends_at": notification.ends_at,
                "labels": notification.labels,
                "annotations": notification.annotations,
                "generator_url": notification.generator_url,
            }
        )
        texts.append(
            b"".join(
                (
                    head[:-1],
                    b',"group":',
                    group_text,
                    b',"source":"',
                    notification.source.encode(),
                    b'","received_at":',
                    received,
                    b"}",
                )
            ).decode()
        )
    return texts


def _ascii_text(notification: IncidentNotification) -> str:
    """The same keys as encoding ``as_dict()`` without ``runbook_url`` (derived from the
    annotations), key for key."""
    data = notification.as_dict()
    del data["runbook_url"]
    return _encode(data)


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
        if status not in ("firing", "resolved") or source not in SOURCES:
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
