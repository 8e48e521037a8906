"""The replay engine: captured alerts through the daemon's own path.

Each document read (``inputs``) is dispatched as one batch through a real ``Dispatcher`` (the
same routing, dedupe and queue as ``sentinel run``, in memory), investigated by the same
``InvestigationHandler`` with the same prompts, agent and validators (``wiring``). The model
and the MCP servers are the configured ones, recorded with ``--record``, or a cassette with
``--cassette``. Records go to the console and a JSONL output file, and to the configured
sinks only when asked. ``--dry-run`` stops after routing and rendering.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from mcp_sentinel.config import SentinelSettings
from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.dispatcher import Dispatcher
from mcp_sentinel.dispatcher.lifecycle import IncidentTracker
from mcp_sentinel.dispatcher.queue import MemoryQueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.investigation import IncidentInvestigator, InvestigationHandler
from mcp_sentinel.models import DispatchOutcome, Incident, IncidentCard, IncidentReport
from mcp_sentinel.prompts import PromptRenderer, PromptRepository, RenderedPrompt
from mcp_sentinel.replay.cassette import (
    Cassette,
    CassetteModel,
    RecordingModel,
    cassette_server_class,
    current_tape,
    recording_server_class,
)
from mcp_sentinel.replay.inputs import Batch
from mcp_sentinel.sinks.base import IncidentRecord, Sink, SinkFanout
from mcp_sentinel.sinks.console import ConsoleSink
from mcp_sentinel.sinks.factory import open_sinks
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.wiring import open_investigation_core

REPLAY_SINK = "replay"
_NO_DRAIN_LIMIT = 365 * 24 * 3600.0  # replay finishes what it started, however long


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    record_dir: Path | None = None
    cassette_dir: Path | None = None
    use_configured_sinks: bool = False
    output: Path | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class DryRunItem:
    origin: str
    alert: str
    card: str | None
    prompt: RenderedPrompt | None
    error: str | None = None


@dataclass(slots=True)
class ReplayResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    unrouted: list[str] = field(default_factory=list)


class _Collector:
    """The ``replay`` sink: keeps every record, appends it to the output file, reports
    progress."""

    name = REPLAY_SINK

    def __init__(self, output: Path | None, progress: Callable[[], None] | None) -> None:
        self.records: list[dict[str, Any]] = []
        self._output = output.open("w", encoding="utf-8") if output else None
        self._progress = progress

    async def deliver(self, record: IncidentRecord) -> None:
        data = record.as_dict()
        self.records.append(data)
        if self._output is not None:
            self._output.write(json.dumps(data, ensure_ascii=False) + "\n")
            self._output.flush()
        if self._progress is not None:
            self._progress()

    def close(self) -> None:
        if self._output is not None:
            self._output.close()


class _InlineFanout:
    """Delivers to every sink named, in the caller's task (replay has no need of queues)."""

    def __init__(self, sinks: dict[str, Sink], also: SinkFanout | None = None) -> None:
        self._sinks = sinks
        self._also = also

    @property
    def names(self) -> list[str]:
        return list(self._sinks) + (self._also.names if self._also else [])

    async def started(self, incident: Incident, sink_names: Sequence[str]) -> None:
        if self._also is not None:
            await self._also.started(incident, sink_names)

    async def deliver(self, record: IncidentRecord, sink_names: Sequence[str]) -> None:
        for name in sink_names:
            sink = self._sinks.get(name)
            if sink is not None:
                await sink.deliver(record)
        if self._also is not None:
            await self._also.deliver(record, sink_names)


class _TapedInvestigator:
    """Sets the incident's cassette tape around each investigation; saves it when recording."""

    def __init__(self, inner: IncidentInvestigator, cassette: Cassette) -> None:
        self._inner = inner
        self._cassette = cassette

    async def investigate(self, incident: Incident, prompt: RenderedPrompt) -> IncidentReport:
        tape = self._cassette.tape(incident.notification)
        token = current_tape.set(tape)
        try:
            report = await self._inner.investigate(incident, prompt)
        finally:
            current_tape.reset(token)
        if self._cassette.record:
            self._cassette.save(tape)
        return report


def dry_run(settings: SentinelSettings, batches: list[Batch]) -> list[DryRunItem]:
    """Route and render every alert; run nothing."""
    router = CardRouter(settings.incident_cards, settings.dispatcher.default_card)
    renderer = PromptRenderer(PromptRepository(settings.base_dir))
    items = []
    for batch in batches:
        for notification in batch.notifications:
            name = notification.alertname or notification.fingerprint
            card = router.route(notification.labels)
            if card is None:
                items.append(DryRunItem(batch.origin, name, None, None, "unrouted"))
                continue
            try:
                prompt = renderer.render(card, notification)
            except Exception as exc:
                items.append(DryRunItem(batch.origin, name, card.resource, None, str(exc)))
                continue
            items.append(DryRunItem(batch.origin, name, card.resource, prompt))
    return items


def _replay_cards(settings: SentinelSettings, use_configured: bool) -> list[IncidentCard]:
    cards = []
    for card in settings.incident_cards:
        sinks = (*card.sinks, REPLAY_SINK) if use_configured else ("console", REPLAY_SINK)
        cards.append(card.model_copy(update={"sinks": sinks}))
    return cards


async def replay(
    settings: SentinelSettings,
    batches: list[Batch],
    options: ReplayOptions,
    *,
    console_stream: TextIO | None = None,
    progress: Callable[[], None] | None = None,
) -> ReplayResult:
    """Run every batch through the daemon's path; return the records, in completion order."""
    cassette = None
    if options.record_dir is not None:
        cassette = Cassette(options.record_dir, record=True)
    elif options.cassette_dir is not None:
        cassette = Cassette(options.cassette_dir, record=False)
    settings = settings.model_copy(
        update={"incident_cards": _replay_cards(settings, options.use_configured_sinks)}
    )
    metrics = SentinelMetrics(CollectorRegistry())
    collector = _Collector(options.output, progress)
    result = ReplayResult()
    async with AsyncExitStack() as stack:
        stack.callback(collector.close)
        if cassette is not None and cassette.record:
            core = await open_investigation_core(
                settings,
                metrics=metrics,
                stack=stack,
                wrap_model=RecordingModel,
                wrap_server_class=lambda base: recording_server_class(base, cassette),
            )
        elif cassette is not None:
            core = await open_investigation_core(
                settings,
                metrics=metrics,
                stack=stack,
                wrap_model=lambda _: CassetteModel(),
                require_credentials=False,
                wrap_server_class=lambda base: cassette_server_class(base, cassette),
            )
        else:
            core = await open_investigation_core(settings, metrics=metrics, stack=stack)
        local: dict[str, Sink] = {REPLAY_SINK: collector}
        configured: SinkFanout | None = None
        if options.use_configured_sinks:
            configured = await open_sinks(
                settings.sinks,
                resolve=settings.resolve,
                metrics=metrics,
                stack=stack,
                console_stream=console_stream,
            )
        else:
            local["console"] = ConsoleSink(console_stream)
        investigator: IncidentInvestigator = core.investigator
        if cassette is not None:
            investigator = _TapedInvestigator(core.investigator, cassette)
        tracker = IncidentTracker(settings.dispatcher.dedupe_ttl_seconds)
        handler = InvestigationHandler(
            renderer=core.renderer,
            investigator=investigator,
            sinks=_InlineFanout(local, configured),
            metrics=metrics,
            tracker=tracker,
        )
        total = sum(len(batch.notifications) for batch in batches)
        dispatcher = Dispatcher(
            router=CardRouter(settings.incident_cards, settings.dispatcher.default_card),
            dedupe=DedupeCache(settings.dispatcher.dedupe_ttl_seconds),
            queue=MemoryQueueBackend(max(total, 1)),
            handler=handler,
            metrics=metrics,
            worker_concurrency=options.concurrency or settings.dispatcher.worker_concurrency,
            drain_timeout=_NO_DRAIN_LIMIT,
            tracker=tracker,
        )
        async with dispatcher:
            for batch in batches:
                outcome = await dispatcher.dispatch(batch.notifications)
                result.duplicates += outcome.count(DispatchOutcome.DUPLICATE)
                for notification, status in zip(batch.notifications, outcome.outcomes, strict=True):
                    if status is DispatchOutcome.UNROUTED:
                        result.unrouted.append(
                            f"{batch.origin}: {notification.alertname or notification.fingerprint}"
                        )
            await dispatcher.shutdown()
    result.records = collector.records
    return result
