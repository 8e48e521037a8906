"""The whole daemon (with the fake model) against real Prometheus and Alertmanager binaries.

(a) A rule fires in Prometheus, Alertmanager delivers it to sentinel's webhook with a bearer
    token, the incident is investigated and audited; the rule stops firing (its file_sd target
    is removed) and the resolution arrives and is audited too.
(b) The Prometheus poller finds the alert Alertmanager holds, with Alertmanager's fingerprint and
    startsAt (external labels included): the webhook's and the Alertmanager poller's copies are
    duplicates in the shared dedupe, and the alert is investigated once.

Every wait has a deadline; nothing asserts on elapsed time.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from mcp_sentinel.watchers.fingerprint import fingerprint
from mcp_sentinel.watchers.prometheus import PrometheusAlertsResponse, PrometheusPoller
from mcp_sentinel.watchers.settings import PrometheusWatcherSettings
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.helpers import FINDING, TOKEN, audit_records, free_port, wait_for, write_config
from tests.integration.conftest import Stack, set_toggle

# Prometheus publishes discovery changes every 5 s; these deadlines leave room for several.
DEADLINE = 45.0


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def alertmanager_alerts(url: str, alertname: str) -> list[dict[str, Any]]:
    alerts = await get_json(f"{url}/api/v2/alerts?active=true&silenced=false&inhibited=false")
    return [alert for alert in alerts if alert["labels"].get("alertname") == alertname]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def counter(sentinel: Sentinel, name: str, **labels: str) -> float:
    return sentinel.registry.get_sample_value(name, labels) or 0.0


async def test_a_firing_rule_reaches_sentinel_through_alertmanager_and_resolves(
    stack: Stack, tmp_path: Path
) -> None:
    rule = {
        "alert": "SentinelToggle",
        "expr": 'up{job="sentinel-toggle"} == 1',
        "labels": {"service": "toggle-svc", "severity": "critical"},
        "annotations": {"summary": "The toggle target is up"},
    }
    async with FakeOpenAI([FinalJSON(FINDING)]) as model:
        settings = write_config(tmp_path, model_url=model.base_url)
        audit = settings.resolve(settings.sinks.audit.path)
        async with Sentinel(
            settings, registry=CollectorRegistry(), console_stream=io.StringIO()
        ) as sentinel:
            alertmanager = await stack.alertmanager(
                webhook_url=f"{sentinel.url}/webhook/alertmanager", token=TOKEN
            )
            prometheus = await stack.prometheus(
                alertmanager_url=alertmanager.url, rules=[rule], toggle_on=True
            )
            await wait_for(
                lambda: len(audit_records(audit)) == 1,
                within=DEADLINE,
                what="the investigation of the alert Alertmanager delivered",
            )
            (held,) = await alertmanager_alerts(alertmanager.url, "SentinelToggle")

            set_toggle(prometheus.workdir, None)  # the target goes, `up` goes: the rule resolves
            await wait_for(
                lambda: len(audit_records(audit)) == 2,
                within=DEADLINE,
                what="the resolution Alertmanager delivered",
            )
            accepted = counter(sentinel, "sentinel_webhook_requests_total", code="200")
            refused = counter(sentinel, "sentinel_webhook_requests_total", code="401")
    firing, resolved = audit_records(audit)
    assert firing["report"]["outcome"] == "completed"
    assert firing["report"]["finding"]["summary"] == FINDING["summary"]
    notification = firing["notification"]
    assert notification["source"] == "webhook" and notification["status"] == "firing"
    assert notification["labels"]["alertname"] == "SentinelToggle"
    assert notification["labels"]["toggle"] == "on"
    assert notification["group"]["receiver"] == "sentinel"
    assert notification["fingerprint"] == held["fingerprint"]
    assert moment(notification["starts_at"]) == moment(held["startsAt"])

    assert resolved["report"]["outcome"] == "resolved"
    assert resolved["notification"]["status"] == "resolved"
    assert resolved["notification"]["fingerprint"] == held["fingerprint"]
    assert resolved["notification"]["starts_at"] == notification["starts_at"]
    assert resolved["notification"]["ends_at"] is not None
    assert accepted >= 2 and refused == 0  # the bearer token from http_config was accepted
    assert len(model.requests) == 1  # a resolution is reported without the model


async def test_the_prometheus_poller_finds_alertmanagers_alert_with_its_fingerprint(
    stack: Stack, tmp_path: Path
) -> None:
    rule = {
        "alert": "SentinelAlways",
        "expr": "vector(1)",
        "labels": {"service": "checkout", "severity": "warning"},
        "annotations": {"summary": "Always firing"},
    }
    external = {"cluster": "it-east", "replica": "a"}
    prometheus_port, alertmanager_port = free_port(), free_port()
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    alertmanager_url = f"http://127.0.0.1:{alertmanager_port}"
    watchers = {
        # Both started before the binaries: they fail, back off and recover on their own.
        "prometheus": {
            "url": prometheus_url,
            "interval_seconds": 0.5,
            "investigate_existing": True,
            "external_labels": external,
        },
        "alertmanager": {
            "url": alertmanager_url,
            "interval_seconds": 0.5,
            "investigate_existing": True,
        },
    }
    async with FakeOpenAI([FinalJSON(FINDING) for _ in range(3)]) as model:
        settings = write_config(
            tmp_path, model_url=model.base_url, overrides={"watchers": watchers}
        )
        audit = settings.resolve(settings.sinks.audit.path)
        async with Sentinel(
            settings, registry=CollectorRegistry(), console_stream=io.StringIO()
        ) as sentinel:
            await stack.alertmanager(
                webhook_url=f"{sentinel.url}/webhook/alertmanager",
                token=TOKEN,
                port=alertmanager_port,
            )
            await stack.prometheus(
                alertmanager_url=alertmanager_url,
                rules=[rule],
                external_labels=external,
                port=prometheus_port,
            )

            def arrived(source: str) -> bool:
                name = "sentinel_alerts_received_total"
                return counter(sentinel, name, source=source, status="firing") >= 1

            await wait_for(
                lambda: all(arrived(s) for s in ("prometheus", "alertmanager", "webhook")),
                within=DEADLINE,
                what="the alert from both pollers and the webhook",
            )
            dispatcher = sentinel.dispatcher
            assert dispatcher is not None
            await wait_for(
                lambda: dispatcher.queue.depth() == 0 and dispatcher.queue.in_progress() == 0,
                within=DEADLINE,
                what="the investigation to finish",
            )
            (held,) = await alertmanager_alerts(alertmanager_url, "SentinelAlways")
            prometheus_view = PrometheusAlertsResponse.model_validate(
                await get_json(f"{prometheus_url}/api/v1/alerts")
            )
            duplicates = counter(sentinel, "sentinel_alerts_dispatched_total", outcome="duplicate")
            queued = counter(sentinel, "sentinel_alerts_dispatched_total", outcome="queued")

    # Investigated once: whichever source came first was queued, the other two were duplicates
    # of its (fingerprint, startsAt, status), which is therefore the same from all three.
    (record,) = audit_records(audit)
    assert record["report"]["outcome"] == "completed"
    assert queued == 1 and duplicates >= 2
    assert len(model.requests) == 1
    notification = record["notification"]
    assert notification["fingerprint"] == held["fingerprint"]
    assert moment(notification["starts_at"]) == moment(held["startsAt"])
    assert held["labels"]["cluster"] == "it-east"  # Prometheus added its external labels

    # The poller's computation on Prometheus's own answer, directly: equal to Alertmanager's
    # with the external labels, different without them.
    (alert,) = [a for a in prometheus_view.data.alerts if a.labels["alertname"] == "SentinelAlways"]
    poller = PrometheusPoller(
        PrometheusWatcherSettings(url=prometheus_url, external_labels=external),
        intake=dispatcher,
        metrics=sentinel.metrics,
    )
    polled = poller.notification(alert, received_at=datetime.now(UTC))
    assert polled.fingerprint == held["fingerprint"]
    assert polled.starts_at == moment(held["startsAt"])
    assert polled.labels == held["labels"]
    assert fingerprint(alert.labels) != held["fingerprint"]
