from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.dispatcher import Dispatcher
from mcp_sentinel.dispatcher.queue import MemoryQueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.models import DispatchOutcome, Incident, IncidentCard, IncidentNotification
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from tests.helpers import wait_for

CARD = IncidentCard(resource="c", prompt="p")


class NoHandler:
    async def handle(
        self, incident: Incident, release_slot: Callable[[], None]
    ) -> None:  # pragma: no cover - no workers
        raise AssertionError("no worker should run")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_expired_keys_are_dropped_without_another_alert(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    clock = Clock()
    dedupe = DedupeCache(30, clock=clock)
    alerts = notifications("webhook_firing_group_3_alerts")
    async with Dispatcher(
        router=CardRouter([CARD], default_card="c"),
        dedupe=dedupe,
        queue=MemoryQueueBackend(capacity=10),
        handler=NoHandler(),
        metrics=SentinelMetrics(CollectorRegistry()),
        worker_concurrency=0,
        drain_timeout=0,
        dedupe_purge_interval=0.01,
    ) as dispatcher:
        assert (await dispatcher.dispatch(alerts)).count(DispatchOutcome.QUEUED) == 3
        await asyncio.sleep(0.05)
        assert len(dedupe) == 3, "purged before the TTL passed"
        clock.now += 31
        await wait_for(lambda: len(dedupe) == 0, within=5, what="the expired keys purged")
        assert dispatcher.dedupe_entries == 0


def test_the_purge_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dedupe_purge_interval"):
        Dispatcher(
            router=CardRouter([CARD], default_card="c"),
            dedupe=DedupeCache(30),
            queue=MemoryQueueBackend(capacity=10),
            handler=NoHandler(),
            metrics=SentinelMetrics(CollectorRegistry()),
            worker_concurrency=0,
            drain_timeout=0,
            dedupe_purge_interval=0,
        )
