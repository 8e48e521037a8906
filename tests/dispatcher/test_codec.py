"""How notifications are stored (the state database, Redis): the batch encoder writes the keys
and values of ``as_dict()``, and reading it back gives the same notification."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic_core import TzInfo

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


def with_times_read(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its ISO 8601 times read, so ``Z`` and ``+00:00`` compare equal."""
    times = ("starts_at", "ends_at", "received_at")
    return {
        key: datetime.fromisoformat(value) if key in times and value else value
        for key, value in data.items()
    }


def assert_stored_as_dict_view(text: str, notification: IncidentNotification) -> None:
    expected = notification.as_dict()
    del expected["runbook_url"]
    stored = json.loads(text)
    assert list(stored) == list(expected)
    assert with_times_read(stored) == with_times_read(expected)


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
    for text, notification in zip(texts, batch, strict=True):
        assert_stored_as_dict_view(text, notification)
    assert [notification_from_json(text) for text in texts] == batch
    # Read back, the times are the same instants with the same offsets.
    for notification in map(notification_from_json, texts):
        assert notification.starts_at.utcoffset() == timedelta(0)
        assert notification.received_at.utcoffset() == timedelta(0)


def odd_one(first: IncidentNotification, **changes: Any) -> IncidentNotification:
    """``first`` resolved, with text to escape, another group and another arrival time."""
    return replace(
        first,
        labels={**first.labels, "team": "caf\u00e9 \U0001f525", "quote": 'a"b\\c\n'},
        ends_at=datetime(2026, 11, 22, 4, 0, tzinfo=UTC),
        status="resolved",
        group=replace(first.group, key='{}:{team="caf\u00e9"}'),
        received_at=datetime(2026, 11, 22, 5, 0, 0, 123456, tzinfo=UTC),
        **changes,
    )


def test_odd_text_and_mixed_groups_and_times_in_one_batch(notifications: Notifications) -> None:
    (first,) = notifications("webhook_firing_single_alert")
    odd = odd_one(first)
    batch = [first, odd, first]
    texts = notifications_to_json(batch)
    for text, notification in zip(texts, batch, strict=True):
        assert_stored_as_dict_view(text, notification)
    assert [notification_from_json(text) for text in texts] == batch
    assert notification_to_json(odd) == texts[1]


def test_a_lone_surrogate_sends_the_payload_through_the_ascii_encoder(
    notifications: Notifications,
) -> None:
    (first,) = notifications("webhook_firing_single_alert")
    odd = odd_one(first, annotations={"summary": "\ud800 lone surrogate"})
    batch = [first, odd, first]
    texts = notifications_to_json(batch)
    assert texts == [as_dict_text(notification) for notification in batch]
    assert all(text.isascii() for text in texts)
    assert notification_from_json(texts[1]) == odd
    assert notification_to_json(odd) == texts[1]


def test_an_offset_with_seconds_is_kept_exactly(notifications: Notifications) -> None:
    """pydantic-core's encoder would drop the offset's seconds (moving the instant): such a
    payload goes through the standard library's encoder."""
    (first,) = notifications("webhook_firing_single_alert")
    zone = timezone(timedelta(hours=1, seconds=1))
    odd = replace(first, starts_at=datetime(2026, 11, 22, 4, 0, tzinfo=zone))
    (text,) = notifications_to_json([odd])
    assert text == as_dict_text(odd)
    read = notification_from_json(text)
    assert read == odd
    assert read.starts_at.utcoffset() == timedelta(hours=1, seconds=1)


def test_an_offset_as_pydantic_parses_it_is_kept(notifications: Notifications) -> None:
    (first,) = notifications("webhook_firing_single_alert")
    odd = replace(first, starts_at=datetime(2026, 11, 22, 4, 0, 0, 5, tzinfo=TzInfo(19_800)))
    (text,) = notifications_to_json([odd])
    assert json.loads(text)["starts_at"] == "2026-11-22T04:00:00.000005+05:30"
    read = notification_from_json(text)
    assert read == odd
    assert read.starts_at.utcoffset() == timedelta(hours=5, minutes=30)
