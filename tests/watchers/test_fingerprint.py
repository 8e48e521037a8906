"""The fingerprint computed from labels equals Alertmanager's, for every real alert we have."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mcp_sentinel.watchers.fingerprint import fingerprint, with_external_labels
from mcp_sentinel.watchers.prometheus import PrometheusAlertsResponse, PrometheusPoller
from mcp_sentinel.watchers.settings import PrometheusWatcherSettings
from tests.conftest import FIXTURES
from tests.watchers.alert_api import ClosedIntake, fresh_metrics

WEBHOOK_FIXTURES = sorted(
    path.stem for path in FIXTURES.glob("webhook_*.json") if path.stem != "webhook_request_headers"
)


def alerts_of(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_bytes())
    if isinstance(data, dict):
        return list(data["alerts"])
    if data and "alerts" in data[0]:  # /api/v2/alerts/groups: alerts per group
        return [alert for group in data for alert in group["alerts"]]
    return list(data)


@pytest.mark.parametrize(
    "name",
    [*WEBHOOK_FIXTURES, "alertmanager_api_v2_alerts", "alertmanager_api_v2_alerts_groups"],
)
def test_every_fixture_alert_has_the_fingerprint_alertmanager_gave_it(name: str) -> None:
    alerts = alerts_of(FIXTURES / f"{name}.json")
    assert alerts, f"{name} holds no alerts"
    for alert in alerts:
        assert fingerprint(alert["labels"]) == alert["fingerprint"], alert["labels"]


def test_the_fixture_set_is_the_expected_one() -> None:
    # Guards the parametrisation above against a renamed or emptied fixtures directory.
    assert len(WEBHOOK_FIXTURES) == 9
    total = sum(len(alerts_of(FIXTURES / f"{name}.json")) for name in WEBHOOK_FIXTURES)
    assert total >= 150


def test_empty_label_set_is_the_offset_basis() -> None:
    assert fingerprint({}) == "cbf29ce484222325"


def test_prometheus_alerts_get_alertmanagers_fingerprint_and_startsat() -> None:
    """The Prometheus API fixture and the Alertmanager API fixture are the same five alerts,
    captured from one setup: the poller's identity of each equals Alertmanager's."""
    prometheus = PrometheusAlertsResponse.model_validate_json(
        (FIXTURES / "prometheus_api_v1_alerts.json").read_bytes()
    )
    alertmanager = {
        alert["fingerprint"]: alert
        for alert in alerts_of(FIXTURES / "alertmanager_api_v2_alerts.json")
    }
    poller = PrometheusPoller(
        PrometheusWatcherSettings(url="http://127.0.0.1:9090"),
        intake=ClosedIntake(),  # notification() never dispatches
        metrics=fresh_metrics(),
    )
    assert len(prometheus.data.alerts) == len(alertmanager) == 5
    for alert in prometheus.data.alerts:
        notification = poller.notification(alert, received_at=datetime.now(UTC))
        expected = alertmanager[notification.fingerprint]
        assert notification.labels == expected["labels"]
        # activeAt has nanoseconds; Alertmanager keeps milliseconds.
        assert notification.starts_at == datetime.fromisoformat(expected["startsAt"])


def test_external_labels_change_the_fingerprint_as_prometheus_does() -> None:
    labels = {"alertname": "ProbeAlwaysFiring", "service": "checkout"}
    merged = with_external_labels(labels, {"cluster": "eu-1", "service": "ignored", "empty": ""})
    # The alert's own label wins; an empty external label is no label.
    assert merged == {**labels, "cluster": "eu-1"}
    assert fingerprint(merged) != fingerprint(labels)
    assert fingerprint(merged) == fingerprint({"cluster": "eu-1", **labels})
