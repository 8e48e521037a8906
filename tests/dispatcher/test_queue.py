from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from mcp_sentinel.dispatcher.queue import MemoryQueueBackend
from mcp_sentinel.models import Incident, IncidentCard, IncidentNotification

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
