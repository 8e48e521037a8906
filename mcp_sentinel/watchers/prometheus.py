"""The Prometheus poller: ``GET {url}/api/v1/alerts`` every ``interval_seconds``.

Firing alerts (and pending ones with ``include_pending``) become notifications with source
``prometheus``. Prometheus's API carries no fingerprint, so it is computed as Alertmanager does,
from the labels plus the configured ``external_labels`` (Prometheus adds its own external labels
before it sends an alert to Alertmanager; without the same labels here the fingerprints differ).
``startsAt`` is ``activeAt`` cut to the millisecond, which is what Alertmanager shows for a rule
without ``for:``. For a rule with ``for:``, Alertmanager's startsAt is the moment the alert began
to fire, which this API does not report: such alerts get another key than the webhook's and may
be investigated once from each source.

The rest (seeding, resolution by disappearance, retries, backoff) is ``Poller``'s; this module
only parses the answer. The group of such a notification is ``{}:{alertname="..."}`` with
receiver ``sentinel-poller`` and the Prometheus URL as its external URL.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from mcp_sentinel.models import AlertGroup, IncidentNotification, Source
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.watchers.base import Intake
from mcp_sentinel.watchers.fingerprint import fingerprint, with_external_labels
from mcp_sentinel.watchers.http_client import get_json, validate_answer
from mcp_sentinel.watchers.poller import (
    Poller,
    PollerConfig,
    Snapshot,
    truncate_to_milliseconds,
    utc_now,
)
from mcp_sentinel.watchers.settings import PrometheusWatcherSettings

ALERTS_PATH = "/api/v1/alerts"
POLLER_RECEIVER = "sentinel-poller"


class PrometheusAlert(BaseModel):
    """One alert of ``/api/v1/alerts``. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    state: str
    activeAt: datetime  # noqa: N815 - the wire spelling
    value: str = ""


class _AlertsData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    alerts: list[PrometheusAlert]


class PrometheusAlertsResponse(BaseModel):
    """``{"status": "success", "data": {"alerts": [...]}}``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["success"]
    data: _AlertsData


def group_for(alertname: str, external_url: str) -> AlertGroup:
    """The group a polled alert is reported in: one per alertname, as ``group_by: [alertname]``
    would make it (the value is quoted the way Alertmanager's group keys quote it)."""
    return AlertGroup(
        key=f"{{}}:{{alertname={json.dumps(alertname)}}}",
        labels={"alertname": alertname} if alertname else {},
        receiver=POLLER_RECEIVER,
        external_url=external_url,
    )


_RESPONSE = TypeAdapter(PrometheusAlertsResponse)


def parse_response(body: object, where: str) -> PrometheusAlertsResponse:
    """Validate an ``/api/v1/alerts`` answer; ``PollError`` naming the bad fields otherwise."""
    return validate_answer(_RESPONSE, body, where, "a Prometheus alerts list")


class PrometheusPoller(Poller):
    """Polls one Prometheus server. ``run()`` is started by ``WatcherSet``."""

    source: Source = "prometheus"

    def __init__(
        self,
        settings: PrometheusWatcherSettings,
        *,
        intake: Intake,
        metrics: SentinelMetrics,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            PollerConfig.of(settings),
            intake=intake,
            metrics=metrics,
            clock=clock,
            rng=rng,
        )
        self._url = settings.url
        self._include_pending = settings.include_pending
        self._external_labels = dict(settings.external_labels)

    async def fetch(self, session: aiohttp.ClientSession) -> Snapshot:
        endpoint = self._url + ALERTS_PATH
        body = await get_json(session, endpoint)
        response = parse_response(body, f"GET {endpoint}")
        now = self._clock()
        wanted = {"firing", "pending"} if self._include_pending else {"firing"}
        active = {}
        for alert in response.data.alerts:
            if alert.state not in wanted:
                continue
            notification = self.notification(alert, received_at=now)
            active[notification.key] = notification
        return Snapshot(active=active)

    def notification(
        self, alert: PrometheusAlert, *, received_at: datetime
    ) -> IncidentNotification:
        """The firing notification for one alert of the API."""
        labels = with_external_labels(alert.labels, self._external_labels)
        alertname = labels.get("alertname", "")
        return IncidentNotification(
            fingerprint=fingerprint(labels),
            starts_at=truncate_to_milliseconds(alert.activeAt),
            ends_at=None,
            status="firing",
            labels=labels,
            annotations=dict(alert.annotations),
            generator_url=self._graph_url(alertname),
            group=group_for(alertname, self._url),
            source=self.source,
            received_at=received_at,
        )

    def _graph_url(self, alertname: str) -> str:
        if not alertname:
            return ""
        query = urlencode(
            {"g0.expr": f"ALERTS{{alertname={json.dumps(alertname)}}}", "g0.tab": "1"}
        )
        return f"{self._url}/graph?{query}"
