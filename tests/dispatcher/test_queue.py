from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from prometheus_client import CollectorRegistry

from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.dispatcher import Dispatcher
from mcp_sentinel.dispatcher.queue import MemoryQueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.models import DispatchOutcome, Incident, IncidentCard, IncidentNotification
from mcp_sentinel.telemetry.metrics import SentinelMetrics

CARD = IncidentCard(resource="c", prompt="p")


def incident(notification: IncidentNotification, severity: str) -> Incident:
    labels = {**notification.labels, "severity": severity}
    return Incident(replace(notification, labels=labels), CARD)


async def test_put_all_is_all_or_nothing(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    queue = MemoryQueueBackend(capacity=4)
    assert await queue.put_all([incident(a, "warning") for a in alerts])
    assert not await queue.put_all([incident(a, "warning") for a in alerts])
    assert queue.depth() == 3
    assert await queue.put_all([incident(alerts[0], "info")])
    assert queue.depth() == 4


async def test_critical_first_then_arrival_order(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    a, b, c = notifications("webhook_firing_group_3_alerts")
    queue = MemoryQueueBackend(capacity=10)
    items = [incident(a, "info"), incident(b, "warning"), incident(c, "critical")]
    await queue.put_all(items)
    second_warning = incident(a, "warning")
    await queue.put_all([second_warning])
    taken = [await queue.get() for _ in range(4)]
    assert taken == [items[2], items[1], second_warning, items[0]]


async def test_join_waits_for_task_done(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    queue = MemoryQueueBackend(capacity=2)
    item = incident(alert, "critical")
    await queue.put_all([item])
    joined = asyncio.create_task(queue.join())
    taken = await queue.get()
    await asyncio.sleep(0)
    assert not joined.done() and queue.in_progress() == 1
    queue.task_done(taken)
    await asyncio.wait_for(joined, 1)
    assert queue.in_progress() == 0


async def test_waiting_workers_each_get_one_and_a_cancelled_one_loses_nothing(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    a, b, _ = notifications("webhook_firing_group_3_alerts")
    queue = MemoryQueueBackend(capacity=10)
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    getters[0].cancel()  # a worker stopped while it waited
    items = [incident(a, "warning"), incident(b, "warning")]
    assert await queue.put_all(items)
    taken = await asyncio.wait_for(asyncio.gather(*getters[1:]), 1)
    assert sorted(i.incident_id for i in taken) == sorted(i.incident_id for i in items)
    assert getters[0].cancelled() and queue.depth() == 0 and queue.in_progress() == 2


async def test_the_depth_gauge_is_the_queue_depth_when_scraped(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    registry = CollectorRegistry()
    queue = MemoryQueueBackend(capacity=10)
    async with Dispatcher(
        router=CardRouter([CARD], default_card="c"),
        dedupe=DedupeCache(60),
        queue=queue,
        handler=NoHandler(),
        metrics=SentinelMetrics(registry),
        worker_concurrency=0,
        drain_timeout=0,
    ) as dispatcher:
        assert registry.get_sample_value("sentinel_queue_depth") == 0
        assert (await dispatcher.dispatch(alerts)).count(DispatchOutcome.QUEUED) == 3
        assert registry.get_sample_value("sentinel_queue_depth") == 3
        await queue.get()
        assert registry.get_sample_value("sentinel_queue_depth") == 2


class NoHandler:
    async def handle(self, incident: Incident) -> None:  # pragma: no cover - no workers
        raise AssertionError("no worker runs")


def test_the_memory_queue_writes_without_suspending(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    """``writes_at_once`` is what lets the dispatcher skip tracking its writes in flight: the
    coroutine must finish on its first step, with no other task run in between."""
    alerts = notifications("webhook_firing_group_3_alerts")
    queue = MemoryQueueBackend(capacity=10)
    assert queue.writes_at_once
    write = queue.put_all([incident(a, "warning") for a in alerts])
    try:
        write.send(None)
    except StopIteration as finished:
        assert finished.value is True
    else:
        write.close()
        raise AssertionError("put_all suspended")
    assert queue.depth() == 3
