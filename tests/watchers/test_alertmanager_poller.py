"""The Alertmanager poller as reconciliation behind the webhook: against a local API serving the
real ``/api/v2/alerts`` shape, feeding a real dispatcher whose dedupe the webhook shares."""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mcp_sentinel.models import WebhookPayload
from mcp_sentinel.watchers.alertmanager import AlertmanagerPoller
from mcp_sentinel.watchers.settings import AlertmanagerWatcherSettings
from tests.conftest import FIXTURES
from tests.helpers import wait_for
from tests.watchers.alert_api import (
    FakeAlertApi,
    RecordingHandler,
    dispatching,
    fresh_metrics,
    running,
    sample,
)
from tests.watchers.conftest import LogLines

PATH = "/api/v2/alerts"
API_ALERTS: list[dict[str, Any]] = json.loads(
    (FIXTURES / "alertmanager_api_v2_alerts.json").read_bytes()
)
# The fixture was captured at 03:34:38; its alerts are valid until 03:34:58.
NOW = datetime(2026, 11, 22, 3, 34, 40, tzinfo=UTC)


def api_alert(fp: str) -> dict[str, Any]:
    return copy.deepcopy(next(a for a in API_ALERTS if a["fingerprint"] == fp))


def poller_for(
    api: FakeAlertApi, dispatcher: Any, metrics: Any, **settings: Any
) -> AlertmanagerPoller:
    values: dict[str, Any] = {"url": api.url, "interval_seconds": 0.02, "timeout_seconds": 2}
    values.update(settings)
    return AlertmanagerPoller(
        AlertmanagerWatcherSettings.model_validate(values),
        intake=dispatcher,
        metrics=metrics,
        clock=lambda: NOW,
        rng=random.Random(11),
    )


async def test_missed_webhooks_are_caught_and_delivered_ones_are_duplicates(
    fixture_bytes: Callable[[str], bytes],
) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        poller = poller_for(api, dispatcher, metrics)
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: poller.status.seeded, what="the seeding poll (empty)")
            # The webhook delivers one alert; Alertmanager then lists it with four others
            # whose notifications never arrived.
            webhook = WebhookPayload.model_validate_json(
                fixture_bytes("webhook_firing_single_alert")
            )
            result = await dispatcher.dispatch(webhook.notifications())
            assert result.accepted
            api.alertmanager_alerts = copy.deepcopy(API_ALERTS)
            await wait_for(lambda: len(handler.handled) == 5, what="five incidents")
            await wait_for(lambda: poller.status.dispatched == 5, what="five dispatched")
    assert sample(metrics, "sentinel_alerts_dispatched_total", outcome="duplicate") == 1
    by_source = sorted((n.source, n.fingerprint) for n in handler.handled)
    assert by_source[0] == ("alertmanager", "380a61fdbfb74d43")
    assert ("webhook", "8d746f6f305121f8") in by_source
    assert ("alertmanager", "8d746f6f305121f8") not in by_source  # not investigated twice
    polled = next(n for n in handler.handled if n.fingerprint == "380a61fdbfb74d43")
    assert polled.status == "firing" and polled.ends_at is None
    assert polled.starts_at == datetime.fromisoformat("2026-11-22T03:33:26.362+00:00")
    assert polled.labels["alertname"] == "ProbeToggle"
    assert polled.generator_url.startswith("http://127.0.0.1:19090/graph?")
    assert polled.group.receiver == "sentinel-poller" and polled.group.external_url == api.url
    assert (
        sample(metrics, "sentinel_alerts_received_total", source="alertmanager", status="firing")
        == 5
    )


async def test_resolutions_by_disappearance_and_by_past_endsat(
    fixture_json: Callable[[str], Any],
) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.alertmanager_alerts = [api_alert("380a61fdbfb74d43"), api_alert("8d746f6f305121f8")]
        poller = poller_for(api, dispatcher, metrics)  # seeds: both recorded, none dispatched
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: poller.status.known == 2, what="the seeding poll")
            assert poller.status.dispatched == 0

            # The toggle alert vanishes; its webhook resolution arrives too (either order).
            api.alertmanager_alerts = [api_alert("8d746f6f305121f8")]
            await wait_for(lambda: len(handler.handled) == 1, what="the first resolution")
            resolved_webhook = fixture_json("webhook_resolved_single_alert")
            resolved_webhook["alerts"][0]["startsAt"] = "2026-11-22T03:33:26.362Z"
            payload = WebhookPayload.model_validate(resolved_webhook)
            result = await dispatcher.dispatch(payload.notifications())
            assert result.accepted

            # The other one is still listed but with an end time already past.
            ended = api_alert("8d746f6f305121f8")
            ended["endsAt"] = "2026-11-22T03:34:30.000Z"
            api.alertmanager_alerts = [ended]
            await wait_for(lambda: len(handler.handled) == 2, what="the second resolution")
            await wait_for(lambda: poller.status.known == 0, what="nothing left")
    vanished, past = handler.handled
    assert (vanished.fingerprint, vanished.status) == ("380a61fdbfb74d43", "resolved")
    assert vanished.starts_at == datetime.fromisoformat("2026-11-22T03:33:26.362+00:00")
    assert vanished.ends_at == NOW
    assert (past.fingerprint, past.status) == ("8d746f6f305121f8", "resolved")
    assert past.ends_at == datetime.fromisoformat("2026-11-22T03:34:30+00:00")
    # The webhook's resolution of the same incident was a duplicate.
    assert sample(metrics, "sentinel_alerts_dispatched_total", outcome="duplicate") == 1


async def test_investigate_existing_the_filtered_query_and_basic_auth() -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.alertmanager_alerts = copy.deepcopy(API_ALERTS)
        poller = poller_for(
            api,
            dispatcher,
            metrics,
            investigate_existing=True,
            auth={"type": "basic", "username": "am", "password": "s3cret"},
        )
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: len(handler.handled) == 5, what="the five existing alerts")
    request = api.requests_to(PATH)[0]
    assert request.query == {"active": "true", "silenced": "false", "inhibited": "false"}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"am:s3cret").decode()


async def test_a_garbage_answer_is_logged_and_survived(logs: LogLines) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    broken = api_alert("8d746f6f305121f8")
    del broken["fingerprint"]
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.answer_raw(json.dumps([broken]))
        poller = poller_for(api, dispatcher, metrics, investigate_existing=True)
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: poller.status.polls_failed >= 2, what="two bad polls")
            api.answer_raw('{"alerts": []}')
            polls = poller.status.polls_failed
            await wait_for(lambda: poller.status.polls_failed > polls, what="another bad poll")
            assert poller.status.last_error is not None
            assert "payload: Input should be a valid list" in poller.status.last_error
            api.heal()
            api.alertmanager_alerts = [api_alert("8d746f6f305121f8")]
            await wait_for(lambda: len(handler.handled) == 1, what="the alert after recovery")
    (warning,) = logs.matching("retrying with backoff")
    assert "not an Alertmanager alerts list: [0].fingerprint: Field required" in warning
    assert logs.matching("alertmanager poller: recovered after")
