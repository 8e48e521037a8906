"""The incident handler the workers run: render, investigate, report, deliver.

A firing incident is rendered with its card's prompt and investigated by the agent; a resolved
one yields a ``resolved`` report without spending a model call. An investigation whose
incident resolves meanwhile is cancelled (see ``dispatcher.lifecycle``) and yields a
``cancelled`` report. Every incident taken yields exactly one report, delivered to the card's
sinks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from loguru import logger
from opentelemetry import trace
from opentelemetry.trace import Tracer

from mcp_sentinel.dispatcher.lifecycle import IncidentTracker
from mcp_sentinel.models import Incident, IncidentReport, Outcome
from mcp_sentinel.prompts import PromptRenderer, RenderedPrompt
from mcp_sentinel.sinks.base import IncidentRecord, SinkFanout
from mcp_sentinel.telemetry.children import Children
from mcp_sentinel.telemetry.logging import incident_context
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.telemetry.tracing import extract_context


class IncidentInvestigator(Protocol):
    """Runs the agent on one incident; ``agent.orchestrator.Investigator`` is the real one."""

    async def investigate(self, incident: Incident, prompt: RenderedPrompt) -> IncidentReport: ...


class InvestigationHandler:
    """Implements ``IncidentHandler`` for the dispatcher's workers. Holds no resource."""

    def __init__(
        self,
        *,
        renderer: PromptRenderer,
        investigator: IncidentInvestigator,
        sinks: SinkFanout,
        metrics: SentinelMetrics,
        tracker: IncidentTracker,
        tracer: Tracer | None = None,
    ) -> None:
        self._renderer = renderer
        self._tracker = tracker
        self._tracer = tracer or trace.NoOpTracer()
        self._investigator = investigator
        self._sinks = sinks
        self._metrics = metrics
        self._runs = Children(metrics.agent_runs)
        self._run_durations = Children(metrics.agent_run_duration)
        self._tokens = Children(metrics.agent_tokens)
        self._turns = Children(metrics.agent_turns)

    async def handle(self, incident: Incident, release_slot: Callable[[], None]) -> None:
        """Investigate and report one incident, inside its trace and its log context;
        ``release_slot`` is called once the report is made, before its delivery."""
        queued_seconds = max(0.0, time.monotonic() - incident.enqueued_monotonic)
        parent = extract_context(incident.traceparent)
        now_ns = time.time_ns()
        # The wait in the queue, as a span that ends now and began when it was accepted.
        self._tracer.start_span(
            "queue.wait", context=parent, start_time=now_ns - int(queued_seconds * 1e9)
        ).end(end_time=now_ns)
        notification = incident.notification
        with self._tracer.start_as_current_span(
            f"incident {incident.card.resource}",
            context=parent,
            attributes={
                "sentinel.incident.id": incident.incident_id,
                "sentinel.card": incident.card.resource,
                "sentinel.alert.name": notification.alertname,
                "sentinel.alert.fingerprint": notification.fingerprint,
                "sentinel.alert.status": notification.status,
            },
        ) as span:
            trace_id = span.get_span_context().trace_id
            with incident_context(
                incident_id=incident.incident_id,
                card=incident.card.resource,
                fingerprint=notification.fingerprint,
                trace_id=f"{trace_id:032x}" if trace_id else None,
            ):
                report = await self._handle(incident, queued_seconds, release_slot)
            span.set_attribute("sentinel.outcome", report.outcome.value)

    async def _handle(
        self, incident: Incident, queued_seconds: float, release_slot: Callable[[], None]
    ) -> IncidentReport:
        prompt: RenderedPrompt | None = None
        if incident.notification.status == "resolved":
            report = self._base(incident, Outcome.RESOLVED, None)
        elif self._tracker.is_resolved(incident.notification.key):
            report = self._base(incident, Outcome.CANCELLED, "resolved before a worker took it")
        else:
            try:
                prompt = self._renderer.render(incident.card, incident.notification)
            except Exception as exc:
                error = f"prompt rendering failed: {exc}"
                report = self._base(incident, Outcome.ANALYSIS_FAILED, error)
            else:
                await self._sinks.started(incident, incident.card.sinks)
                report = await self._investigate(incident, prompt)
        report = report.model_copy(update={"queued_seconds": round(queued_seconds, 6)})
        self._observe(report)
        logger.info(
            "incident {incident_id} {alertname} card={card} outcome={outcome} turns={turns} "
            "tools={tools} in {duration:.2f}s",
            incident_id=incident.incident_id,
            alertname=incident.notification.alertname,
            card=report.card,
            outcome=report.outcome.value,
            turns=report.turns,
            tools=len(report.tools_called),
            duration=report.duration_seconds,
        )
        release_slot()  # the model's part is over: the next incident need not wait for disks
        await self._sinks.deliver(IncidentRecord(incident, prompt, report), incident.card.sinks)
        return report

    def _observe(self, report: IncidentReport) -> None:
        metrics = self._metrics
        self._runs(report.card, report.outcome.value).inc()
        if report.outcome in (Outcome.RESOLVED, Outcome.CANCELLED):
            return
        self._run_durations(report.card).observe(report.duration_seconds)
        if report.model:
            self._tokens(report.model, "input").inc(report.input_tokens)
            self._tokens(report.model, "output").inc(report.output_tokens)
        self._turns(report.card).observe(report.turns)
        for call in report.tools_called:
            # Only tools of a known server are named: a made-up tool name stays "unknown".
            tool = call.tool if call.server else "unknown"
            metrics.tool_calls.labels(call.server or "unknown", tool, call.status).inc()

    @staticmethod
    def _base(incident: Incident, outcome: Outcome, error: str | None) -> IncidentReport:
        now = datetime.now(UTC)
        return IncidentReport(
            incident_id=incident.incident_id,
            card=incident.card.resource,
            alert=incident.notification.as_dict(),
            outcome=outcome,
            error=error,
            started_at=now,
            finished_at=now,
        )

    async def _investigate(self, incident: Incident, prompt: RenderedPrompt) -> IncidentReport:
        """Run the investigation in a child task the tracker can cancel on resolution."""
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            task = group.create_task(self._investigator.investigate(incident, prompt))
            with self._tracker.running(incident.notification.key, task):
                # wait() does not raise when the child is cancelled; cancelling this worker
                # does raise here, and the group then cancels the child too.
                await asyncio.wait([task])
        if task.cancelled():
            report = self._base(
                incident, Outcome.CANCELLED, "the alert resolved during the investigation"
            )
            return report.model_copy(
                update={"duration_seconds": round(time.monotonic() - started, 6)}
            )
        return task.result()
