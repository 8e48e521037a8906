"""The webhook sink against a real local receiver: the body, the signature scheme, retries."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Callable

from mcp_sentinel.models import IncidentNotification
from mcp_sentinel.sinks.settings import WebhookSinkSettings
from mcp_sentinel.sinks.webhook import WebhookSink
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers import FINDING
from tests.sinks.support import RecordingSleep, firing_record, policy, resolved_record

Notifications = Callable[[str], list[IncidentNotification]]
SECRET = "whsec-test-3b8f1a"


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """The receiver's check, exactly as the module docstring tells receivers to do it."""
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(f"sha256={expected.hexdigest()}", header)


async def test_posts_the_record_signed_over_timestamp_and_exact_body(
    notifications: Notifications,
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    record = firing_record(alert)
    async with WebhookReceiver() as receiver:
        settings = WebhookSinkSettings(
            url=receiver.url, hmac_secret=SECRET, headers={"X-Team": "sre"}
        )
        async with WebhookSink(settings, retry=policy(), clock=lambda: 1_763_700_000.7) as sink:
            await sink.deliver(record)
            await sink.deliver(resolved_record(alert))
    first, second = receiver.received
    assert first.headers["content-type"] == "application/json; charset=utf-8"
    assert first.headers["x-team"] == "sre"
    assert first.headers["x-sentinel-timestamp"] == "1763700000"
    assert verify(SECRET, "1763700000", first.body, first.headers["x-sentinel-signature"])
    assert not verify(SECRET, "1763700001", first.body, first.headers["x-sentinel-signature"])
    body = json.loads(first.body)
    assert body["schema"] == "mcp_sentinel.incident.v1"
    assert body["incident_id"] == record.incident.incident_id and body["card"] == "Checkout"
    assert body["notification"]["fingerprint"] == "8d746f6f305121f8"
    assert body["report"]["finding"]["summary"] == FINDING["summary"]
    assert "prompt" not in body
    resolution = json.loads(second.body)
    assert resolution["report"]["outcome"] == "resolved"
    assert resolution["notification"]["starts_at"] == body["notification"]["starts_at"]


async def test_each_attempt_is_signed_afresh_and_unsigned_without_a_secret(
    notifications: Notifications,
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    ticks = itertools.count(1_763_700_000)
    sleep = RecordingSleep()
    async with WebhookReceiver() as receiver:
        receiver.fail_next(2, 503, retry_after="4")
        settings = WebhookSinkSettings(url=receiver.url, hmac_secret=SECRET)
        async with WebhookSink(settings, retry=policy(sleep), clock=lambda: next(ticks)) as sink:
            await sink.deliver(firing_record(alert))
        async with WebhookSink(WebhookSinkSettings(url=receiver.url), retry=policy()) as plain:
            await plain.deliver(firing_record(alert))
    signed, unsigned = receiver.received
    assert receiver.attempts == 4 and sleep.waits == [4.0, 4.0]
    assert signed.headers["x-sentinel-timestamp"] == "1763700002"  # the third attempt's
    assert verify(SECRET, "1763700002", signed.body, signed.headers["x-sentinel-signature"])
    assert "x-sentinel-signature" not in unsigned.headers
    assert "x-sentinel-timestamp" not in unsigned.headers
