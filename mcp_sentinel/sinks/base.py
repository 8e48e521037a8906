"""The ``Sink`` seam, the record every sink receives, and fan-out to a card's sinks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from loguru import logger

from mcp_sentinel.models import Incident, IncidentReport
from mcp_sentinel.prompts import RenderedPrompt
from mcp_sentinel.telemetry.metrics import SentinelMetrics


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """Everything known about one finished incident: what came in, what the agent was told,
    what it did and found."""

    incident: Incident
    prompt: RenderedPrompt | None
    report: IncidentReport

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view: the notification, the card, the prompt and the report."""
        prompt = self.prompt
        return {
            "incident_id": self.incident.incident_id,
            "card": self.incident.card.resource,
            "notification": self.incident.notification.as_dict(),
            "prompt": None
            if prompt is None
            else {
                "template": prompt.template,
                "instructions": prompt.instructions,
                "alert_data": prompt.alert_data,
            },
            "report": self.report.model_dump(mode="json"),
        }


class Sink(Protocol):
    """Delivers incident records somewhere. ``deliver`` raises on failure; the message must
    never contain the sink's secret (a shared test checks every sink)."""

    @property
    def name(self) -> str: ...

    async def deliver(self, record: IncidentRecord) -> None: ...


class SinkFanout:
    """Delivers a record to the card's sinks concurrently; one sink failing does not stop the
    others. Failures are logged and counted, never raised to the worker."""

    def __init__(self, sinks: Mapping[str, Sink], metrics: SentinelMetrics) -> None:
        self._sinks = dict(sinks)
        self._metrics = metrics

    @property
    def names(self) -> list[str]:
        return list(self._sinks)

    async def deliver(self, record: IncidentRecord, sink_names: Sequence[str]) -> None:
        targets = [self._sinks[name] for name in sink_names if name in self._sinks]
        async with asyncio.TaskGroup() as group:
            for sink in targets:
                group.create_task(self._deliver_one(sink, record))

    async def _deliver_one(self, sink: Sink, record: IncidentRecord) -> None:
        try:
            await sink.deliver(record)
        except Exception as exc:
            self._metrics.sink_deliveries.labels(sink.name, "failed").inc()
            logger.error(
                "sink {sink} failed for incident {incident_id}: {error}",
                sink=sink.name,
                incident_id=record.incident.incident_id,
                error=f"{type(exc).__name__}: {exc}",
            )
        else:
            self._metrics.sink_deliveries.labels(sink.name, "delivered").inc()
