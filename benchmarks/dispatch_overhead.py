"""CPU time per alert from a parsed payload to a queued incident: routing, dedupe, queue.

No HTTP and no agent: a real ``Dispatcher`` with no workers (its handler never runs) and a queue
large enough for the run, fed 50-alert batches parsed beforehand from the real fixture (each
batch with fresh fingerprints). Each batch is dispatched as the webhook dispatches it: with
``body=`` the bytes it was parsed from (the sqlite queue stores those once per payload), in two
ways: one payload at a time (each durable write commits alone), and ``--in-flight`` payloads
at once, as the webhook's concurrent requests dispatch them under a storm (a durable queue
then commits the payloads that arrive during a commit together, and a payload checks the
writes under way for its keys). Timed with ``time.process_time`` around the dispatches only,
with the garbage collector set as the daemon sets it (``app.freeze_startup_heap``). For
the memory, the sqlite and (with ``redis-server`` installed, a local one on loopback) the redis
backend, as ``Sentinel`` builds them, and the duplicate-only case (the same batch again). With
redis, process time leaves out Redis's own CPU (another process): its wall time is the figure
to compare.

    uv run python benchmarks/dispatch_overhead.py [--batches 400] [--in-flight 16] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loguru import logger
from prometheus_client import CollectorRegistry

from benchmarks._common import (
    GROUP_50,
    MATCH_ALL_CARD,
    BenchRedis,
    emit,
    load_fixture,
    redis_available,
    stop_on_signals,
)
from mcp_sentinel.app import freeze_startup_heap
from mcp_sentinel.dispatcher.dispatcher import Dispatcher
from mcp_sentinel.dispatcher.lifecycle import IncidentTracker
from mcp_sentinel.dispatcher.redis_state import open_redis_state
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.dispatcher.state import open_state
from mcp_sentinel.models import DispatchOutcome, Incident, IncidentNotification, WebhookPayload
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from tests.helpers import write_config


class NeverRuns:
    async def handle(
        self, incident: Incident, release_slot: Callable[[], None]
    ) -> None:  # pragma: no cover - no workers
        raise AssertionError("no worker should run")


Batch = tuple[list[IncidentNotification], bytes]


def batches(count: int) -> list[Batch]:
    """Fresh 50-alert payloads: the notifications and the body they were parsed from."""
    data = load_fixture(GROUP_50)
    out = []
    for index in range(count):
        for alert in data["alerts"]:
            alert["fingerprint"] = alert["fingerprint"].split("-")[0] + f"-{index}"
        body = json.dumps(data).encode()
        payload = WebhookPayload.model_validate_json(body)
        out.append((list(payload.notifications()), body))
    return out


async def dispatch_all(dispatcher: Dispatcher, work: list[Batch], in_flight: int) -> int:
    """Dispatch every batch, ``in_flight`` at a time; the number of incidents queued."""
    if in_flight == 1:
        queued = 0
        for batch, body in work:
            result = await dispatcher.dispatch(batch, body=body)
            assert result.accepted
            queued += result.count(DispatchOutcome.QUEUED)
        return queued
    slots = asyncio.Semaphore(in_flight)

    async def one(batch: list[IncidentNotification], body: bytes) -> int:
        async with slots:
            result = await dispatcher.dispatch(batch, body=body)
        assert result.accepted
        return result.count(DispatchOutcome.QUEUED)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(batch, body)) for batch, body in work]
    return sum(task.result() for task in tasks)


@asynccontextmanager
async def dispatcher_for(backend: str) -> AsyncIterator[Dispatcher]:
    """A ``Dispatcher`` over ``backend``'s stores as ``Sentinel`` builds them, no workers."""
    with tempfile.TemporaryDirectory(prefix="sentinel-dispatch-") as tmp, ExitStack() as servers:
        extra: dict[str, Any] = {}
        if backend == "redis":
            extra["redis_url"] = servers.enter_context(BenchRedis(Path(tmp), core=None)).url
        settings = write_config(
            Path(tmp),
            overrides={
                "dispatcher": {"backend": backend, "queue_size": 1_000_000, **extra},
                "incident_cards": [MATCH_ALL_CARD],
            },
        )
        tracker = IncidentTracker(settings.dispatcher.dedupe_ttl_seconds)
        async with AsyncExitStack() as stack:
            state: Any
            if backend == "redis":
                state = await open_redis_state(settings, stack=stack)
            else:
                state = await open_state(settings, stack=stack, tracker=tracker)
            yield await stack.enter_async_context(
                Dispatcher(
                    router=CardRouter(settings.incident_cards, settings.dispatcher.default_card),
                    dedupe=state.dedupe,
                    queue=state.queue,
                    handler=NeverRuns(),
                    metrics=SentinelMetrics(CollectorRegistry()),
                    worker_concurrency=0,
                    drain_timeout=0,
                    tracker=tracker,
                    # As ``Sentinel`` passes them: the state's health is checked per payload,
                    # and with tracing off (the default) no caller's span is looked up.
                    health=(state.problem,),
                    traced=settings.telemetry.tracing.enabled,
                )
            )


async def measure(backend: str, work: list[Batch], in_flight: int = 1) -> dict[str, Any]:
    async with dispatcher_for(backend) as dispatcher:
        alerts = sum(len(batch) for batch, _ in work)
        cpu = time.process_time()
        wall = time.perf_counter()
        queued = await dispatch_all(dispatcher, work, in_flight)
        fresh_cpu = time.process_time() - cpu
        fresh_wall = time.perf_counter() - wall
        # Counted from the answers: the redis queue's depth is an estimate, refreshed from
        # Redis once a second, and may trail the last payloads.
        cpu = time.process_time()
        await dispatch_all(dispatcher, work, in_flight)
        dup_cpu = time.process_time() - cpu
    return {
        "backend": backend,
        "in_flight": in_flight,
        "alerts": alerts,
        "queued": queued,
        "fresh_us_per_alert": fresh_cpu / alerts * 1e6,
        "fresh_wall_us_per_alert": fresh_wall / alerts * 1e6,
        "duplicate_us_per_alert": dup_cpu / alerts * 1e6,
    }


def traced_bytes() -> int:
    """Bytes traced now, after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def memory_per_alert(backend: str, work: list[Batch]) -> dict[str, Any]:
    """What a queued alert holds in memory, traced apart from the timed runs (tracemalloc
    slows every allocation): every payload parsed from its body, dispatched and let go, as the
    webhook does it, so what stays is what the dispatcher and the queue hold (the incident,
    its id, its dedupe key, its place in the queue, and its notification where the queue
    keeps it; the first payload, which sizes the structures, left out). Beside it, what a
    parsed notification weighs (its labels, annotations, times and strings)."""
    bodies = [body for _, body in work]
    async with dispatcher_for(backend) as dispatcher:
        first, *rest = bodies
        await dispatch_body(dispatcher, first)
        tracemalloc.start()
        try:
            before = traced_bytes()
            for body in rest:
                await dispatch_body(dispatcher, body)
            held_bytes = traced_bytes() - before
            before = traced_bytes()
            kept = [WebhookPayload.model_validate_json(body).notifications() for body in rest]
            notification_bytes = traced_bytes() - before
        finally:
            tracemalloc.stop()
    alerts = sum(len(batch) for batch in kept)
    return {
        "backend": backend,
        "alerts": alerts,
        "held_bytes_per_alert": held_bytes / alerts,
        "notification_bytes_per_alert": notification_bytes / alerts,
    }


async def dispatch_body(dispatcher: Dispatcher, body: bytes) -> None:
    """``body`` parsed and dispatched as the webhook does it; nothing of it kept here."""
    notifications = WebhookPayload.model_validate_json(body).notifications()
    result = await dispatcher.dispatch(notifications, body=body)
    assert result.accepted and result.count(DispatchOutcome.QUEUED) == len(notifications)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=400, help="50-alert batches per backend")
    parser.add_argument(
        "--in-flight", type=int, default=16, help="payloads at once in the concurrent runs"
    )
    parser.add_argument("--quick", action="store_true", help="100 batches")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="INFO")  # as the daemon logs (INFO on stderr)
    count = 100 if args.quick else args.batches
    # The collector as the daemon runs it: the start-up heap frozen, its thresholds set.
    freeze_startup_heap()
    work = batches(count)
    rows = []
    backends = ("memory", "sqlite", *(["redis"] if redis_available() else []))
    for backend, in_flight in itertools.product(backends, (1, args.in_flight)):
        row = await measure(backend, work, in_flight)
        rows.append(row)
        print(
            f"{backend:>6}, {in_flight:>2} in flight: "
            f"{row['fresh_us_per_alert']:6.1f} µs CPU/alert fresh "
            f"({row['fresh_wall_us_per_alert']:.1f} µs wall), "
            f"{row['duplicate_us_per_alert']:6.1f} µs CPU/alert duplicate, "
            f"{row['queued']}/{row['alerts']} queued",
            flush=True,
        )
    memory = []
    for backend in backends:
        row = await memory_per_alert(backend, work[: min(len(work), 200)])
        memory.append(row)
        print(
            f"{backend:>6}: {row['held_bytes_per_alert']:5.0f} bytes held per queued alert "
            f"(a parsed notification: {row['notification_bytes_per_alert']:.0f}; "
            f"{row['alerts']} alerts, tracemalloc)",
            flush=True,
        )
    emit("dispatch_overhead", {"rows": rows, "memory": memory})


if __name__ == "__main__":
    stop_on_signals()
    asyncio.run(main())
