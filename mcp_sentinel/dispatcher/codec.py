"""Notifications and dedupe keys as they are stored in the state database.

A notification is stored as the JSON of ``IncidentNotification.as_dict()`` (the same view the
audit log holds); ``notification_from_json`` is its exact inverse and raises ``ValueError``
for anything else, so a row this version cannot read is reported, never half-loaded.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mcp_sentinel.models import AlertGroup, DedupeKey, IncidentNotification

_SOURCES = frozenset({"webhook", "prometheus", "alertmanager", "replay"})


def notification_to_json(notification: IncidentNotification) -> str:
    data = notification.as_dict()
    del data["runbook_url"]  # derived from the annotations
    # ASCII: a stray surrogate in a label must not make the row impossible to encode.
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


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
