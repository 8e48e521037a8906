"""The Alertmanager poller: reconciliation behind the webhook.

Every ``interval_seconds`` it reads ``GET {url}/api/v2/alerts?active=true&silenced=false&
inhibited=false``. An alert it has not seen becomes a firing notification (source
``alertmanager``); a known one that is gone, or whose ``endsAt`` is in the past, becomes a
resolved one. Fingerprint and startsAt are Alertmanager's own, the very values its webhook sends,
so whatever the webhook already delivered is a duplicate in the dispatcher's shared dedupe and is
not investigated twice. What this catches: alerts whose webhook never arrived (``max_alerts``
truncation, a receiver route that does not match, notifications lost while the daemon was down
and not repeated yet) and resolutions whose notice never came.

Caveat of the filter: an alert that gets silenced or inhibited leaves this list like a resolved
one and is reported resolved; if it comes back with the same startsAt it is a duplicate firing.

The loop (seeding, retries, backoff, queue-full handling) is ``Poller``'s.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from mcp_sentinel.dispatcher.lifecycle import IncidentKey
from mcp_sentinel.models import ZERO_TIME, IncidentNotification, NonEmpty, Source
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.watchers.base import Intake
from mcp_sentinel.watchers.http_client import get_json, validate_answer
from mcp_sentinel.watchers.poller import Poller, PollerConfig, Snapshot, utc_now
from mcp_sentinel.watchers.prometheus import group_for
from mcp_sentinel.watchers.settings import AlertmanagerWatcherSettings

ALERTS_PATH = "/api/v2/alerts"
ACTIVE_ONLY = {"active": "true", "silenced": "false", "inhibited": "false"}


class GettableAlert(BaseModel):
    """One alert of Alertmanager's ``/api/v2/alerts``. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # noqa: N815 - the wire spelling
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: NonEmpty


_ALERTS = TypeAdapter(list[GettableAlert])


def parse_alerts(body: object, where: str) -> list[GettableAlert]:
    """Validate an ``/api/v2/alerts`` answer; ``PollError`` naming the bad fields otherwise."""
    return validate_answer(_ALERTS, body, where, "an Alertmanager alerts list")


class AlertmanagerPoller(Poller):
    """Polls one Alertmanager. ``run()`` is started by ``WatcherSet``."""

    source: Source = "alertmanager"

    def __init__(
        self,
        settings: AlertmanagerWatcherSettings,
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

    async def fetch(self, session: aiohttp.ClientSession) -> Snapshot:
        endpoint = self._url + ALERTS_PATH
        body = await get_json(session, endpoint, params=ACTIVE_ONLY)
        alerts = parse_alerts(body, f"GET {endpoint}")
        now = self._clock()
        active: dict[IncidentKey, IncidentNotification] = {}
        ended: dict[IncidentKey, datetime] = {}
        for alert in alerts:
            key = (alert.fingerprint, alert.startsAt)
            # Alertmanager sets endsAt on active alerts too (when they stop being valid unless
            # renewed): only an endsAt already past means the alert is over.
            if alert.endsAt is not None and ZERO_TIME < alert.endsAt <= now:
                ended[key] = alert.endsAt
                continue
            active[key] = IncidentNotification(
                fingerprint=alert.fingerprint,
                starts_at=alert.startsAt,
                ends_at=None,
                status="firing",
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                generator_url=alert.generatorURL,
                group=group_for(alert.labels.get("alertname", ""), self._url),
                source=self.source,
                received_at=now,
            )
        return Snapshot(active=active, ended=ended)
