"""Test doubles for the pollers: a local alerts API server and a real dispatcher with a
recording handler.

``FakeAlertApi`` is a real aiohttp server on 127.0.0.1, port 0, answering Prometheus's
``GET /api/v1/alerts`` and Alertmanager's ``GET /api/v2/alerts`` from lists the test changes
while the poller runs. ``fail_with`` / ``answer_raw`` / ``hang`` make it misbehave; every
request is recorded (path, query, headers).

``dispatching(...)`` opens a real ``Dispatcher`` with a real ``MemoryQueueBackend`` and a
``RecordingHandler`` (a test double of the ``IncidentHandler`` seam); ``running(...)`` runs
pollers in a real ``WatcherSet``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.dispatcher import Dispatcher, DispatchResult
from mcp_sentinel.dispatcher.queue import MemoryQueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.models import DispatchOutcome, Incident, IncidentCard, IncidentNotification
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.watchers.base import Watcher
from mcp_sentinel.watchers.factory import WatcherSet
from mcp_sentinel.watchers.settings import WatchersSettings


@dataclass(frozen=True)
class SeenRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeAlertApi:
    """``async with FakeAlertApi() as api``: serves until the block ends."""

    def __init__(self) -> None:
        self.prometheus_alerts: list[dict[str, Any]] = []
        self.alertmanager_alerts: list[dict[str, Any]] = []
        self.requests: list[SeenRequest] = []
        self._failure: tuple[int, str] | None = None
        self._raw: str | None = None
        self._hang = asyncio.Event()
        self._hang.set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- what it answers -----------------------------------------------------------------

    def fail_with(self, status: int, body: str = "") -> None:
        self._failure = (status, body)

    def answer_raw(self, body: str) -> None:
        """Answer 200 with this body (garbage, for example) instead of the alerts."""
        self._raw = body

    def hang(self) -> None:
        """Hold every answer until ``heal()``."""
        self._hang.clear()

    def heal(self) -> None:
        self._failure = None
        self._raw = None
        self._hang.set()

    def requests_to(self, path: str) -> list[SeenRequest]:
        return [request for request in self.requests if request.path == path]

    # -- the server ------------------------------------------------------------------------

    async def _answer(self, request: web.Request, alerts: Any) -> web.Response:
        self.requests.append(
            SeenRequest(request.path, dict(request.query), dict(request.headers.items()))
        )
        await self._hang.wait()
        if self._failure is not None:
            status, body = self._failure
            return web.Response(status=status, text=body)
        if self._raw is not None:
            return web.Response(text=self._raw, content_type="application/json")
        return web.json_response(alerts)

    async def _prometheus(self, request: web.Request) -> web.Response:
        body = {"status": "success", "data": {"alerts": copy.deepcopy(self.prometheus_alerts)}}
        return await self._answer(request, body)

    async def _alertmanager(self, request: web.Request) -> web.Response:
        return await self._answer(request, copy.deepcopy(self.alertmanager_alerts))

    async def __aenter__(self) -> FakeAlertApi:
        app = web.Application()
        app.router.add_get("/api/v1/alerts", self._prometheus)
        app.router.add_get("/api/v2/alerts", self._alertmanager)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._hang.set()
        assert self._runner is not None
        await self._runner.cleanup()


class RecordingHandler:
    """The ``IncidentHandler`` seam, recording what reaches a worker. While ``gate`` is clear,
    the worker holds the incident it took (to keep the queue full)."""

    def __init__(self) -> None:
        self.taken: list[IncidentNotification] = []
        self.handled: list[IncidentNotification] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def handle(self, incident: Incident, release_slot: Callable[[], None]) -> None:
        self.taken.append(incident.notification)
        await self.gate.wait()
        self.handled.append(incident.notification)

    def keys(self) -> list[tuple[str, str, str]]:
        """(fingerprint, startsAt, status) of each handled notification, in order."""
        return [(n.fingerprint, n.starts_at.isoformat(), n.status) for n in self.handled]


class ClosedIntake:
    """The ``Intake`` seam, never accepting: for tests that build watchers without running
    them (or whose watchers never dispatch)."""

    accepting = False

    async def dispatch(
        self, notifications: Sequence[IncidentNotification], *, body: bytes | None = None
    ) -> DispatchResult:
        return DispatchResult(tuple(DispatchOutcome.REJECTED for _ in notifications))


CATCH_ALL = IncidentCard(resource="Everything", match=['alertname=~".+"'], prompt="p.md.j2")


@asynccontextmanager
async def dispatching(
    handler: RecordingHandler,
    metrics: SentinelMetrics,
    *,
    queue_size: int = 100,
    workers: int = 1,
) -> AsyncIterator[Dispatcher]:
    """A real dispatcher routing every alert with an alertname to one card."""
    async with Dispatcher(
        router=CardRouter([CATCH_ALL]),
        dedupe=DedupeCache(3600),
        queue=MemoryQueueBackend(queue_size),
        handler=handler,
        metrics=metrics,
        worker_concurrency=workers,
        drain_timeout=5,
    ) as dispatcher:
        yield dispatcher


def fresh_metrics() -> SentinelMetrics:
    return SentinelMetrics(CollectorRegistry())


@asynccontextmanager
async def running(
    dispatcher: Dispatcher, metrics: SentinelMetrics, *watchers: Watcher
) -> AsyncIterator[WatcherSet]:
    """Run ``watchers`` in a real ``WatcherSet`` while the block runs."""
    async with WatcherSet(
        WatchersSettings(), intake=dispatcher, metrics=metrics, watchers=list(watchers)
    ) as watcher_set:
        yield watcher_set


def sample(metrics: SentinelMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
