"""The incident handler the workers run: render, investigate, report, deliver.

A firing incident is rendered with its card's prompt and investigated by the agent; a resolved
one yields a ``resolved`` report without spending a model call. Every incident taken yields
exactly one report, delivered to the card's sinks.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from loguru import logger

from mcp_sentinel.agent.orchestrator import Investigator
from mcp_sentinel.models import Incident, IncidentReport, Outcome
from mcp_sentinel.prompts import PromptRenderer, RenderedPrompt
from mcp_sentinel.sinks.base import IncidentRecord, SinkFanout
from mcp_sentinel.telemetry.metrics import SentinelMetrics


class InvestigationHandler:
    """Implements ``IncidentHandler`` for the dispatcher's workers. Holds no resource."""

    def __init__(
        self,
        *,
        renderer: PromptRenderer,
        investigator: Investigator,
        sinks: SinkFanout,
        metrics: SentinelMetrics,
    ) -> None:
        self._renderer = renderer
        self._investigator = investigator
        self._sinks = sinks
        self._metrics = metrics

    async def handle(self, incident: Incident) -> None:
        queued_seconds = max(0.0, time.monotonic() - incident.enqueued_monotonic)
        prompt: RenderedPrompt | None = None
        if incident.notification.status == "resolved":
            report = self._resolution(incident)
        else:
            try:
                prompt = self._renderer.render(incident.card, incident.notification)
            except Exception as exc:
                report = self._failed_before_run(incident, f"prompt rendering failed: {exc}")
            else:
                report = await self._investigator.investigate(incident, prompt)
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
        await self._sinks.deliver(IncidentRecord(incident, prompt, report), incident.card.sinks)

    def _observe(self, report: IncidentReport) -> None:
        metrics = self._metrics
        metrics.agent_runs.labels(report.card, report.outcome.value).inc()
        if report.outcome is Outcome.RESOLVED:
            return
        metrics.agent_run_duration.labels(report.card).observe(report.duration_seconds)
        if report.model:
            metrics.agent_tokens.labels(report.model, "input").inc(report.input_tokens)
            metrics.agent_tokens.labels(report.model, "output").inc(report.output_tokens)
        for call in report.tools_called:
            metrics.tool_calls.labels(call.server or "unknown", call.status).inc()

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

    def _resolution(self, incident: Incident) -> IncidentReport:
        return self._base(incident, Outcome.RESOLVED, None)

    def _failed_before_run(self, incident: Incident, error: str) -> IncidentReport:
        return self._base(incident, Outcome.ANALYSIS_FAILED, error)
