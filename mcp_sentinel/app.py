"""The one place where the daemon's objects are built and wired, and its lifecycle.

``Sentinel`` is an async context manager. Entering builds everything in dependency order on an
``AsyncExitStack``: the state, sinks, the dispatcher and its workers, then the HTTP server
(last, so nothing is accepted before it can be kept). The agent (the SDK, the model client and
the MCP connections) is built in the background once the server is up (``agent.deferred``);
workers wait for it while accepted alerts wait in the queue. Leaving stops intake first
(``/readyz`` turns 503 and the webhook answers 503 while the HTTP server still runs), drains
the queue within ``dispatcher.drain_timeout_seconds``, then closes everything in reverse order.

``run_until_stopped`` is what ``sentinel run`` calls: it serves until SIGTERM or SIGINT; a second
signal during the drain stops at once.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from loguru import logger
from opentelemetry.sdk.trace import SpanProcessor
from prometheus_client import CollectorRegistry

from mcp_sentinel.agent.deferred import DeferredInvestigator
from mcp_sentinel.allocator import limit_malloc_arenas, release_free_heap
from mcp_sentinel.config import SentinelSettings
from mcp_sentinel.dispatcher.dispatcher import Dispatcher
from mcp_sentinel.dispatcher.lifecycle import IncidentTracker
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.dispatcher.state import IntakeState, open_state
from mcp_sentinel.http_server import HttpServer, build_app
from mcp_sentinel.investigation import IncidentInvestigator, InvestigationHandler
from mcp_sentinel.prompts import PromptRenderer, PromptRepository
from mcp_sentinel.sinks.factory import open_sinks
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.telemetry.tracing import Tracing
from mcp_sentinel.watchers.auth import RequestAuthenticator
from mcp_sentinel.watchers.factory import WatcherSet
from mcp_sentinel.watchers.webhook import AlertmanagerWebhook

if TYPE_CHECKING:
    from mcp_sentinel.dispatcher.redis_state import RedisIntakeState


class Sentinel:
    """The running daemon. Attributes are set while the context is open."""

    def __init__(
        self,
        settings: SentinelSettings,
        *,
        registry: CollectorRegistry | None = None,
        console_stream: TextIO | None = None,
        span_processor: SpanProcessor | None = None,
    ) -> None:
        """``span_processor`` replaces the OTLP export (tests record spans in memory)."""
        self.settings = settings
        self._span_processor = span_processor
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = SentinelMetrics(self.registry)
        self._console_stream = console_stream
        self._stack = AsyncExitStack()
        self.dispatcher: Dispatcher | None = None
        self.investigator: DeferredInvestigator | None = None
        self.http: HttpServer | None = None

    @property
    def url(self) -> str:
        assert self.http is not None, "the daemon is not running"
        return self.http.url

    async def __aenter__(self) -> Sentinel:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        settings = self.settings
        stack = self._stack
        limit_malloc_arenas()  # before the daemon's own threads start
        # First in, last out: spans of the shutdown itself are still exported.
        tracing = await stack.enter_async_context(
            Tracing(settings.telemetry.tracing, span_processor=self._span_processor)
        )
        tracer = tracing.tracer
        renderer = PromptRenderer(PromptRepository(settings.base_dir))

        async def build_core(core_stack: AsyncExitStack) -> IncidentInvestigator:
            from mcp_sentinel.wiring import open_investigation_core  # noqa: PLC0415

            core = await open_investigation_core(
                settings,
                metrics=self.metrics,
                stack=core_stack,
                tracer=tracer,
                otel_tracing=tracing.enabled,
                renderer=renderer,
            )
            freeze_startup_heap()
            return core.investigator

        # Entered before the dispatcher, so the MCP connections close after the workers drained.
        investigator = await stack.enter_async_context(
            DeferredInvestigator(build_core, preload=_AGENT_MODULES)
        )
        self.investigator = investigator
        tracker = IncidentTracker(settings.dispatcher.dedupe_ttl_seconds)
        # Before the sinks (their outbox lives in it), so it closes after they drained.
        state: IntakeState | RedisIntakeState
        if settings.dispatcher.backend == "redis":
            # Imported only when used: the Redis client takes half a second to import.
            from mcp_sentinel.dispatcher.redis_state import open_redis_state  # noqa: PLC0415

            state = await open_redis_state(settings, stack=stack)
        else:
            state = await open_state(settings, stack=stack, tracker=tracker)
        sinks = await open_sinks(
            settings.sinks,
            resolve=settings.resolve,
            metrics=self.metrics,
            stack=stack,
            console_stream=self._console_stream,
            outbox=state.outbox,
            tracer=tracer,
            slack_threads=state.slack_threads,
            jira_issues=state.jira_issues,
        )
        handler = InvestigationHandler(
            renderer=renderer,
            investigator=investigator,
            sinks=sinks,
            metrics=self.metrics,
            tracker=tracker,
            tracer=tracer,
        )
        dispatcher_settings = settings.dispatcher
        self.dispatcher = await stack.enter_async_context(
            Dispatcher(
                router=CardRouter(settings.incident_cards, dispatcher_settings.default_card),
                dedupe=state.dedupe,
                queue=state.queue,
                handler=handler,
                metrics=self.metrics,
                worker_concurrency=dispatcher_settings.worker_concurrency,
                drain_timeout=dispatcher_settings.drain_timeout_seconds,
                tracker=tracker,
                health=(state.problem, lambda: sinks.problem, lambda: investigator.problem),
                traced=tracing.enabled,
                dedupe_purge_interval=min(60.0, dispatcher_settings.dedupe_ttl_seconds),
            )
        )
        server = settings.server
        webhook = AlertmanagerWebhook(
            intake=self.dispatcher,
            authenticator=RequestAuthenticator(server.auth),
            metrics=self.metrics,
            max_body_bytes=server.max_body_bytes,
            retry_after_seconds=dispatcher_settings.retry_after_seconds,
            capture_dir=settings.resolve(server.capture_dir) if server.capture_dir else None,
            read_timeout_seconds=server.read_timeout_seconds,
            tracer=tracer,
        )
        app = build_app(
            webhook=webhook,
            registry=self.registry,
            is_ready=lambda: self.dispatcher is not None and self.dispatcher.accepting,
            max_body_bytes=server.max_body_bytes,
            not_ready_reason=lambda: self.dispatcher.problem if self.dispatcher else None,
        )
        self.http = await stack.enter_async_context(
            HttpServer.from_settings(app, server, resolve=settings.resolve)
        )
        await stack.enter_async_context(
            WatcherSet(settings.watchers, intake=self.dispatcher, metrics=self.metrics)
        )
        for card in settings.incident_cards:
            logger.info(
                "incident card {name}: match {match}, tools {tools}, sinks {sinks}",
                name=card.resource,
                match=", ".join(str(m) for m in card.matchers()),
                tools=", ".join(card.tools) or "none",
                sinks=", ".join(card.sinks),
            )
        logger.info(
            "sentinel ready: {cards} incident card(s), webhook at {url}/webhook/alertmanager",
            cards=len(settings.incident_cards),
            url=self.http.url,
        )
        # Last: importing the agents SDK takes seconds, and intake need not wait for it.
        investigator.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.shutdown()
        await self._stack.__aexit__(exc_type, exc, traceback)


# Imported on a thread before the agent is built, so that the loop never stops to import
# them. Besides the wiring (the SDK and the MCP client), the openai client imports its chat
# resources and anyio its asyncio backend lazily, on the first model call: 27 modules, 80-100 ms
# of importing that stopped intake in the middle of a storm's first incident (the loop was
# seen 60-130 ms late then under benchmarks/ingest.py's load).
# tests/agent/test_first_incident_imports.py checks that nothing heavy is left to import.
_AGENT_MODULES = (
    "mcp_sentinel.wiring",
    "openai.resources.chat.chat",
    "openai.lib.streaming.chat",
    "openai.pagination",
    "jiter",
    "anyio._backends._asyncio",
)


# The cyclic collector's thresholds once the daemon runs (CPython's are 700, 10, 10). Under a
# storm the queue grows by tens of thousands of incidents a second, all of them live: with the
# default, a full collection walked the whole queue every ~70,000 allocations (52-85 ms each
# at 100,000 queued, 12% of the intake's time in benchmarks/ingest.py's 50-alert case), and
# found nothing to free. A full collection here waits for 2,500 passes of the middle
# generation, 5 million allocations. The middle generation is collected
# every other young pass (threshold 1): the queued incidents all survive into it, so each
# of its collections walks two young passes' worth of them. Young passes every 1,000
# allocations keep that to ~2,000 objects: no pause reached 2 ms (none 1 ms with the memory
# queue). At 5,000 they stopped the loop for 2-5 ms, 8-111 times in 5 s by case, which set the
# accept latency's p99, and the collector's total time was no lower (the pinned daemon
# under wrk at c=16, timed through gc.callbacks, interleaved runs of every
# intake case: memory and sqlite queue, 1- and 50-alert payloads).
_COLLECTOR_THRESHOLDS = (1_000, 1, 2_500)


def freeze_startup_heap() -> None:
    """Put everything allocated so far out of the cyclic garbage collector's reach, and set
    the collector's thresholds for the running daemon (``_COLLECTOR_THRESHOLDS``).

    After start-up the heap holds about a million long-lived objects (the SDK's modules,
    pydantic models and schemas). Every full collection walks them all, which stops the event
    loop for 100-280 ms in the middle of an alert storm (measured: benchmarks/ingest.py's p99).
    ``gc.freeze()`` moves them to a permanent generation, so collections see only what the
    daemon allocates while it runs. The heap's free pages then go back to the kernel
    (``release_free_heap``). Called once, when the agent is loaded.
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_COLLECTOR_THRESHOLDS)
    # What start-up freed goes back to the kernel rather than staying in the RSS.
    release_free_heap()
    logger.debug(
        "froze {count} start-up objects in {ms:.0f} ms",
        count=gc.get_freeze_count(),
        ms=(time.perf_counter() - started) * 1000,
    )


async def run_until_stopped(settings: SentinelSettings) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return. A second signal stops at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    forced = False

    def on_signal(signum: int) -> None:
        nonlocal forced
        if stop.is_set():
            logger.warning("second {name}: stopping now", name=signal.Signals(signum).name)
            forced = True
            if main_task is not None:
                main_task.cancel()
            return
        logger.info(
            "{name} received: stopping intake and draining", name=signal.Signals(signum).name
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with Sentinel(settings):
            await stop.wait()
    except asyncio.CancelledError:
        if not forced:
            raise
        # Asked for: the operator's second signal, not a failure to show as a traceback.
        logger.warning(
            "sentinel stopped without draining; a durable queue resumes what did not finish"
        )
        return
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    logger.info("sentinel stopped")
