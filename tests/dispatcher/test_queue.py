from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.dispatcher import Dispatcher
from mcp_sentinel.dispatcher.queue import MemoryQueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.dispatcher.sqlite_queue import SqliteQueueBackend
from mcp_sentinel.models import (
    DispatchOutcome,
    Incident,
    IncidentCard,
    IncidentNotification,
    PayloadOrigin,
    WebhookPayload,
)
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
    async def handle(
        self, incident: Incident, release_slot: Callable[[], None]
    ) -> None:  # pragma: no cover - no workers
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


async def test_the_durable_queue_orders_payload_incidents_and_rows_alike_across_a_restart(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    """Critical first, then arrival, whether an incident came in a webhook payload (one row per
    payload) or from a poller (a row each), in memory and as a restart loads them."""
    template = fixture_json("webhook_firing_group_3_alerts")
    for alert, severity in zip(template["alerts"], ["info", "critical", "warning"], strict=True):
        alert["labels"]["severity"] = severity
    body = json.dumps(template).encode()
    from_payload = WebhookPayload.model_validate_json(body).notifications()
    polled = [
        replace(n, fingerprint=f"polled-{n.fingerprint}", source="alertmanager")
        for n in from_payload
    ]
    path = tmp_path / "state.db"

    async def opened(db: SqliteDatabase) -> SqliteQueueBackend:
        queue = SqliteQueueBackend(db, capacity=10, cards=[CARD], default_card=None)
        await queue.open()
        return queue

    async with SqliteDatabase(path) as db:
        queue = await opened(db)
        assert await queue.put_all([Incident(polled[2], CARD)])  # warning, first to arrive
        payload = [Incident(n, CARD) for n in from_payload]
        assert await queue.put_all(payload, PayloadOrigin(body, [0, 1, 2]))
        assert await queue.put_all([Incident(polled[1], CARD)])  # critical, last to arrive
        expected = [
            (n.fingerprint, n.severity)
            for n in (from_payload[1], polled[1], polled[2], from_payload[2], from_payload[0])
        ]
        taken = [await queue.get() for _ in range(5)]
        assert [(i.notification.fingerprint, i.notification.severity) for i in taken] == expected
    async with SqliteDatabase(path) as db:
        queue = await opened(db)
        again = [await queue.get() for _ in range(5)]
        assert [i.incident_id for i in again] == [i.incident_id for i in taken]
