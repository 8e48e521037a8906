"""The Prometheus poller against a local alerts API that changes while it polls, feeding a real
dispatcher with a real in-memory queue."""

from __future__ import annotations

import base64
import copy
import json
import random
from datetime import datetime
from typing import Any

import pytest

from mcp_sentinel.watchers.fingerprint import fingerprint
from mcp_sentinel.watchers.http_client import Backoff
from mcp_sentinel.watchers.prometheus import PrometheusPoller
from mcp_sentinel.watchers.settings import PrometheusWatcherSettings
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

PATH = "/api/v1/alerts"
FIXTURE_ALERTS: list[dict[str, Any]] = json.loads(
    (FIXTURES / "prometheus_api_v1_alerts.json").read_bytes()
)["data"]["alerts"]
AM_FINGERPRINTS = {
    alert["fingerprint"]
    for alert in json.loads((FIXTURES / "alertmanager_api_v2_alerts.json").read_bytes())
}


def alerts(count: int) -> list[dict[str, Any]]:
    return copy.deepcopy(FIXTURE_ALERTS[:count])


def extra_alert(instance: str, active_at: str = "2026-11-22T03:40:00.123456789Z") -> dict[str, Any]:
    alert = copy.deepcopy(FIXTURE_ALERTS[1])
    alert["labels"]["instance"] = instance
    alert["activeAt"] = active_at
    return alert


def poller_for(
    api: FakeAlertApi, dispatcher: Any, metrics: Any, **settings: Any
) -> PrometheusPoller:
    values: dict[str, Any] = {"url": api.url, "interval_seconds": 0.02, "timeout_seconds": 2}
    values.update(settings)
    return PrometheusPoller(
        PrometheusWatcherSettings.model_validate(values),
        intake=dispatcher,
        metrics=metrics,
        rng=random.Random(7),
    )


async def test_first_poll_seeds_without_dispatching_then_new_alerts_are_dispatched(
    logs: LogLines,
) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.prometheus_alerts = alerts(2)
        poller = poller_for(api, dispatcher, metrics)
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: poller.status.polls_ok >= 3, what="three polls")
            assert poller.status.seeded and poller.status.known == 2
            assert poller.status.dispatched == 0 and handler.taken == []
            assert logs.matching("2 alert(s) already active at start-up recorded, not investigated")

            new = extra_alert("app-09:8080")
            api.prometheus_alerts.append(new)
            await wait_for(lambda: len(handler.handled) == 1, what="the new alert")
            (notification,) = handler.handled
    assert notification.fingerprint == fingerprint(new["labels"])
    assert notification.status == "firing" and notification.source == "prometheus"
    assert notification.starts_at == datetime.fromisoformat("2026-11-22T03:40:00.123+00:00")
    assert notification.group.key == '{}:{alertname="ProbeMultiInstance"}'
    assert notification.group.receiver == "sentinel-poller"
    assert notification.group.external_url == api.url
    assert notification.generator_url == (
        f"{api.url}/graph?g0.expr=ALERTS%7Balertname%3D%22ProbeMultiInstance%22%7D&g0.tab=1"
    )
    assert sample(metrics, "sentinel_alerts_received_total", source="prometheus", status="firing")
    assert poller.status.known == 3


async def test_investigate_existing_dispatches_what_already_fires() -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.prometheus_alerts = alerts(5)
        poller = poller_for(api, dispatcher, metrics, investigate_existing=True)
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: len(handler.handled) == 5, what="the five firing alerts")
            await wait_for(lambda: poller.status.polls_ok >= 3, what="more polls")
    # Alertmanager's own fingerprints for the same five alerts; later polls added nothing.
    assert {n.fingerprint for n in handler.handled} == AM_FINGERPRINTS
    assert poller.status.dispatched == 5
    received = sample(
        metrics, "sentinel_alerts_received_total", source="prometheus", status="firing"
    )
    assert received == 5


async def test_disappearance_is_a_resolution_and_a_refire_is_new() -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.prometheus_alerts = alerts(2)
        poller = poller_for(api, dispatcher, metrics, investigate_existing=True)
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: len(handler.handled) == 2, what="two firing alerts")
            gone = api.prometheus_alerts.pop(0)
            await wait_for(lambda: len(handler.handled) == 3, what="the resolution")
            resolved = handler.handled[2]
            firing = next(n for n in handler.handled[:2] if n.key == resolved.key)

            # The same labels fire again later: a new startsAt, so a new incident.
            api.prometheus_alerts.append({**gone, "activeAt": "2026-11-22T05:00:00Z"})
            await wait_for(lambda: len(handler.handled) == 4, what="the re-fire")
            refire = handler.handled[3]
    assert resolved.status == "resolved"
    assert resolved.fingerprint == fingerprint(gone["labels"])
    assert resolved.starts_at == firing.starts_at
    assert resolved.ends_at is not None and resolved.ends_at >= resolved.received_at
    assert (refire.status, refire.fingerprint) == ("firing", resolved.fingerprint)
    assert refire.starts_at != resolved.starts_at
    assert sample(metrics, "sentinel_alerts_received_total", source="prometheus", status="resolved")


async def test_pending_alerts_only_with_include_pending() -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    pending = {**extra_alert("app-07:8080"), "state": "pending"}
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.prometheus_alerts = [pending]
        ignoring = poller_for(api, dispatcher, metrics, investigate_existing=True)
        async with running(dispatcher, metrics, ignoring):
            await wait_for(lambda: ignoring.status.polls_ok >= 3, what="three polls")
        assert ignoring.status.known == 0 and ignoring.status.dispatched == 0

        including = poller_for(
            api, dispatcher, metrics, investigate_existing=True, include_pending=True
        )
        async with running(dispatcher, metrics, including):
            await wait_for(lambda: len(handler.handled) == 1, what="the pending alert")
            # It turns firing: same labels, same activeAt, so the same incident, not a new one.
            api.prometheus_alerts = [{**pending, "state": "firing"}]
            polls = including.status.polls_ok
            await wait_for(lambda: including.status.polls_ok >= polls + 3, what="more polls")
        assert including.status.dispatched == 1 and including.status.known == 1


async def test_errors_back_off_are_logged_once_and_recovery_is_logged(logs: LogLines) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.prometheus_alerts = alerts(1)
        api.fail_with(503, '{"status":"error","errorType":"unavailable","error":"starting"}')
        poller = poller_for(api, dispatcher, metrics)
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: poller.status.failure_streak >= 4, what="four failures")
            assert poller.status.last_error is not None
            assert "HTTP 503" in poller.status.last_error and "starting" in poller.status.last_error
            assert not poller.status.seeded

            api.heal()
            await wait_for(lambda: poller.status.polls_ok >= 2, what="the recovery")
            assert poller.status.failure_streak == 0 and poller.status.last_error is None
            # Seeding waits for the first good poll: the alert firing all along is recorded.
            assert poller.status.seeded and poller.status.known == 1

            api.fail_with(500, "again")
            failures = poller.status.polls_failed
            await wait_for(lambda: poller.status.polls_failed >= failures + 2, what="a new streak")
            api.heal()
            await wait_for(lambda: poller.status.failure_streak == 0, what="the second recovery")
    warnings = logs.matching("retrying with backoff")
    assert len(warnings) == 2, warnings  # one per streak, not one per failed poll
    assert warnings[0].startswith("WARNING") and "HTTP 503" in warnings[0]
    assert "HTTP 500" in warnings[1]
    assert len(logs.matching("prometheus poller: recovered after")) == 2
    assert poller.status.dispatched == 0 and handler.taken == []


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(1, 8, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(7)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.failures == 7
    backoff.reset()
    assert backoff.failures == 0 and backoff.next_delay() <= 1
    with pytest.raises(ValueError):
        Backoff(2, 1)


async def test_queue_full_keeps_transitions_and_retries_them_next_poll(logs: LogLines) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    handler.gate.clear()  # the worker holds the first incident: the queue (size 1) fills up
    async with (
        FakeAlertApi() as api,
        dispatching(handler, metrics, queue_size=1, workers=1) as dispatcher,
    ):
        api.prometheus_alerts = alerts(4)
        poller = poller_for(api, dispatcher, metrics, investigate_existing=True)
        async with running(dispatcher, metrics, poller):
            await wait_for(
                lambda: (
                    sample(metrics, "sentinel_alerts_dispatched_total", outcome="rejected") >= 3
                ),
                what="refused dispatches on several polls",
            )
            assert poller.status.owed >= 2
            assert poller.status.dispatched + poller.status.owed == 4

            handler.gate.set()
            await wait_for(lambda: len(handler.handled) == 4, what="every alert, in the end")
            await wait_for(lambda: poller.status.owed == 0, what="nothing owed")
    assert len({n.fingerprint for n in handler.handled}) == 4
    assert (
        sample(metrics, "sentinel_alerts_received_total", source="prometheus", status="firing") == 4
    )
    assert len(logs.matching("the queue cannot take alerts now")) == 1
    assert logs.matching("prometheus poller: the queue takes alerts again")


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"type": "bearer", "token": "prom-token-41"}, "Bearer prom-token-41"),
        (
            {"type": "basic", "username": "reader", "password": "pw-77"},
            "Basic " + base64.b64encode(b"reader:pw-77").decode(),
        ),
        ({"type": "none"}, None),
    ],
)
async def test_credentials_are_sent_and_never_logged(
    auth: dict[str, str], expected: str | None, logs: LogLines
) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.fail_with(401, "unauthorized")
        poller = poller_for(api, dispatcher, metrics, auth=auth)
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: poller.status.polls_failed >= 2, what="two polls")
    request = api.requests_to(PATH)[0]
    assert request.headers.get("Authorization") == expected
    assert request.headers["User-Agent"].startswith("mcp-sentinel/")
    assert logs.matching("HTTP 401")
    for secret in ("prom-token-41", "pw-77", "cmVhZGVyOnB3LTc3"):
        assert not logs.matching(secret)


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        ("<html>gateway</html>", "answered a body that is not JSON"),
        ('{"status": "success", "data": {}}', "data.alerts: Field required"),
        (
            '{"status": "success", "data": {"alerts": [{"labels": {"alertname": "X"},'
            ' "state": "firing", "activeAt": "yesterday"}]}}',
            "data.alerts[0].activeAt: Input should be a valid datetime",
        ),
        ("[1, 2]", "payload: Input should be a valid dictionary"),
    ],
)
async def test_a_garbage_answer_is_logged_and_survived(
    garbage: str, message: str, logs: LogLines
) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.prometheus_alerts = alerts(1)
        api.answer_raw(garbage)
        poller = poller_for(api, dispatcher, metrics, investigate_existing=True)
        async with running(dispatcher, metrics, poller):
            await wait_for(lambda: poller.status.polls_failed >= 2, what="two bad polls")
            assert poller.status.last_error is not None and message in poller.status.last_error
            api.heal()
            await wait_for(lambda: len(handler.handled) == 1, what="the alert after recovery")
    (warning,) = logs.matching("retrying with backoff")
    assert message in warning and f"GET {api.url}{PATH}" in warning


async def test_a_hanging_server_times_out_and_cancellation_is_clean(logs: LogLines) -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        api.hang()
        poller = poller_for(api, dispatcher, metrics, timeout_seconds=0.1)
        async with running(dispatcher, metrics, poller) as watcher_set:
            await wait_for(lambda: poller.status.polls_failed >= 1, what="a timeout")
            assert poller.status.last_error == f"GET {api.url}{PATH} timed out"
            # Leave while the next request hangs: the task is cancelled, the session closed.
            await wait_for(lambda: len(api.requests) >= 2, what="the next request")
        (task,) = watcher_set.tasks
        assert task.done() and task.cancelled()
