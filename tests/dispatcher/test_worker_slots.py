"""Investigation slots: ``worker_concurrency`` incidents investigated at once, and a worker
that gave its slot back (its report is being delivered) lets the next incident start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry

from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.dispatcher import Dispatcher
from mcp_sentinel.dispatcher.queue import MemoryQueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.models import DispatchOutcome, Incident, IncidentCard, IncidentNotification
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from tests.helpers import wait_for

CARD = IncidentCard(resource="c", prompt="p")


class StagedHandler:
    """Each incident: ``investigating`` until ``investigated`` is set, then (having released
    its slot, when ``releases``) ``delivering`` until ``delivered`` is set."""

    def __init__(self, *, releases: int = 1) -> None:
        self.releases = releases
        self.investigated = asyncio.Event()
        self.delivered = asyncio.Event()
        self.investigating: set[str] = set()
        self.delivering: set[str] = set()
        self.most_investigating = 0
        self.finished: list[str] = []

    async def handle(self, incident: Incident, release_slot: Callable[[], None]) -> None:
        name = incident.notification.fingerprint
        self.investigating.add(name)
        self.most_investigating = max(self.most_investigating, len(self.investigating))
        await self.investigated.wait()
        self.investigating.discard(name)
        for _ in range(self.releases):
            release_slot()
        self.delivering.add(name)
        await self.delivered.wait()
        self.delivering.discard(name)
        self.finished.append(name)


@asynccontextmanager
async def dispatcher_with(handler: StagedHandler, slots: int) -> AsyncIterator[Dispatcher]:
    async with Dispatcher(
        router=CardRouter([CARD], default_card="c"),
        dedupe=DedupeCache(300),
        queue=MemoryQueueBackend(capacity=100),
        handler=handler,
        metrics=SentinelMetrics(CollectorRegistry()),
        worker_concurrency=slots,
        drain_timeout=5,
    ) as dispatcher:
        yield dispatcher


async def queue_all(dispatcher: Dispatcher, alerts: list[IncidentNotification]) -> None:
    result = await dispatcher.dispatch(alerts)
    assert result.count(DispatchOutcome.QUEUED) == len(alerts)


async def test_no_more_than_worker_concurrency_investigations_run_at_once(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    handler = StagedHandler()
    async with dispatcher_with(handler, slots=2) as dispatcher:
        await queue_all(dispatcher, notifications("webhook_firing_group_50_alerts")[:6])
        await wait_for(lambda: len(handler.investigating) == 2, what="two investigations")
        await asyncio.sleep(0.05)  # room for a third worker to (wrongly) start one
        assert len(handler.investigating) == 2
        assert dispatcher.queue.depth() == 4
        handler.investigated.set()
        handler.delivered.set()
        await asyncio.wait_for(dispatcher.queue.join(), 5)
    assert len(handler.finished) == 6
    assert handler.most_investigating == 2


async def test_the_next_incident_starts_while_the_last_report_is_delivered(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    handler = StagedHandler()
    first, second, third = notifications("webhook_firing_group_3_alerts")
    async with dispatcher_with(handler, slots=1) as dispatcher:
        await queue_all(dispatcher, [first])
        await wait_for(lambda: first.fingerprint in handler.investigating, what="first taken")
        handler.investigated.set()
        await wait_for(lambda: first.fingerprint in handler.delivering, what="first delivering")
        await queue_all(dispatcher, [second, third])
        # The slot the first one gave back went to the second, which is investigated (and,
        # with ``investigated`` set, delivered) while the first is still being delivered.
        await wait_for(lambda: second.fingerprint in handler.delivering, what="second taken")
        assert first.fingerprint in handler.delivering
        await asyncio.sleep(0.05)
        # Two worker tasks per slot: both are delivering, so the third waits in the queue.
        assert third.fingerprint not in handler.investigating | handler.delivering
        assert dispatcher.queue.depth() == 1
        assert dispatcher.queue.in_progress() == 2, "finished before its delivery was"
        handler.delivered.set()
        await asyncio.wait_for(dispatcher.queue.join(), 5)
    assert sorted(handler.finished) == sorted(a.fingerprint for a in (first, second, third))


async def test_a_slot_released_twice_is_given_back_once(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    handler = StagedHandler(releases=2)
    handler.delivered.set()
    async with dispatcher_with(handler, slots=1) as dispatcher:
        await queue_all(dispatcher, notifications("webhook_firing_group_50_alerts")[:5])
        await wait_for(lambda: len(handler.investigating) == 1, what="one investigation")
        for _ in range(4):
            handler.investigated.set()
            await asyncio.sleep(0)
            handler.investigated.clear()
            await wait_for(
                lambda: len(handler.investigating) == 1 or not dispatcher.queue.depth(),
                what="the next investigation",
            )
            await asyncio.sleep(0.02)
            assert len(handler.investigating) <= 1, "a second release gave out an extra slot"
        handler.investigated.set()
        await asyncio.wait_for(dispatcher.queue.join(), 5)
    assert handler.most_investigating == 1
    assert len(handler.finished) == 5
