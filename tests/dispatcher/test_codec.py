"""How notifications are stored (the state database, Redis): the batch encoder writes exactly
what encoding ``as_dict()`` writes, and reading it back gives the same notification."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from mcp_sentinel.dispatcher.codec import (
    notification_from_json,
    notification_to_json,
    notifications_to_json,
)
from mcp_sentinel.models import IncidentNotification

Notifications = Callable[[str], list[IncidentNotification]]


def as_dict_text(notification: IncidentNotification) -> str:
    """The stored form, spelled the plain way: ``as_dict()`` minus the derived runbook URL."""
    data = notification.as_dict()
    del data["runbook_url"]
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


@pytest.mark.parametrize(
    "fixture",
    [
        "webhook_firing_single_alert",
        "webhook_mixed_group_45_firing_5_resolved",
        "webhook_resolved_group_50_alerts",
    ],
)
def test_a_payload_encodes_as_its_dict_view_and_reads_back_equal(
    notifications: Notifications, fixture: str
) -> None:
    batch = notifications(fixture)
    texts = notifications_to_json(batch)
    assert texts == [as_dict_text(notification) for notification in batch]
    assert [notification_from_json(text) for text in texts] == batch


def test_odd_text_and_mixed_groups_and_times_in_one_batch(notifications: Notifications) -> None:
    (first,) = notifications("webhook_firing_single_alert")
    odd = replace(
        first,
        labels={**first.labels, "team": "caf\u00e9 \U0001f525", "quote": 'a"b\\c\n'},
        annotations={"summary": "\ud800 lone surrogate"},
        ends_at=datetime(2026, 11, 22, 4, 0, tzinfo=UTC),
        status="resolved",
        group=replace(first.group, key='{}:{team="caf\u00e9"}'),
        received_at=datetime(2026, 11, 22, 5, 0, 0, 123456, tzinfo=UTC),
    )
    batch = [first, odd, first]
    texts = notifications_to_json(batch)
    assert texts == [as_dict_text(notification) for notification in batch]
    assert all(text.isascii() for text in texts)
    assert notification_from_json(texts[1]) == odd
    assert notification_to_json(odd) == texts[1]
