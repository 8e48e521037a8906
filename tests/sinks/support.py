"""Builders for sink tests: records from the real Alertmanager fixtures, a recording retry
clock, and captured loguru output."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger
from prometheus_client import CollectorRegistry

from mcp_sentinel.models import (
    Finding,
    Incident,
    IncidentCard,
    IncidentNotification,
    IncidentReport,
    Outcome,
)
from mcp_sentinel.sinks.base import IncidentRecord, Sink
from mcp_sentinel.sinks.deadletter import DeadLetterStore
from mcp_sentinel.sinks.delivery import SinkDispatcher
from mcp_sentinel.sinks.retry import RetryPolicy
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from tests.helpers import FINDING

CARD = IncidentCard(resource="Checkout", prompt="prompts/triage.md.j2")


class RecordingSleep:
    """The retry policy's clock: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(sleep: RecordingSleep | None = None, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=attempts, max_wait=30, initial_wait=0.01, sleep=sleep or RecordingSleep()
    )


def report_for(
    incident: Incident,
    outcome: Outcome = Outcome.COMPLETED,
    finding: dict[str, Any] | None = None,
    error: str | None = None,
) -> IncidentReport:
    now = datetime.now(UTC)
    return IncidentReport(
        incident_id=incident.incident_id,
        card=incident.card.resource,
        alert=incident.notification.as_dict(),
        outcome=outcome,
        finding=Finding.model_validate(finding) if finding is not None else None,
        error=error,
        model="gpt-test" if outcome is Outcome.COMPLETED else None,
        turns=2,
        started_at=now,
        finished_at=now,
    )


def firing_record(
    notification: IncidentNotification,
    finding: dict[str, Any] | None = FINDING,
    card: IncidentCard = CARD,
) -> IncidentRecord:
    incident = Incident(notification, card)
    outcome = Outcome.COMPLETED if finding is not None else Outcome.ANALYSIS_FAILED
    error = None if finding is not None else "the model endpoint answered HTTP 500 after retries"
    return IncidentRecord(incident, None, report_for(incident, outcome, finding, error))


def resolved(notification: IncidentNotification, after: float = 754) -> IncidentNotification:
    """The resolved notice of the same incident (same fingerprint and startsAt)."""
    return dataclasses.replace(
        notification,
        status="resolved",
        ends_at=notification.starts_at + timedelta(seconds=after),
    )


def resolved_record(
    notification: IncidentNotification, card: IncidentCard = CARD
) -> IncidentRecord:
    incident = Incident(resolved(notification), card)
    return IncidentRecord(incident, None, report_for(incident, Outcome.RESOLVED))


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every loguru message (TRACE and up), with any exception text, while the block runs."""
    lines: list[str] = []
    handler = logger.add(
        lambda message: lines.append(str(message)),
        level="TRACE",
        format="{level} {message} {extra}\n{exception}",
        backtrace=False,
        diagnose=False,  # as telemetry.logging configures it
    )
    try:
        yield lines
    finally:
        logger.remove(handler)


@contextlib.asynccontextmanager
async def dispatching(
    sinks: dict[str, Sink],
    dead_letter_dir: Path,
    *,
    queue_size: int = 100,
    drain_timeout: float = 30,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[SinkDispatcher]:
    """A ``SinkDispatcher`` over ``sinks`` (all queued); leaving drains it."""
    dispatcher = SinkDispatcher(
        sinks,
        inline=(),
        dead_letters=DeadLetterStore(dead_letter_dir),
        metrics=SentinelMetrics(registry or CollectorRegistry()),
        queue_size=queue_size,
        drain_timeout=drain_timeout,
    )
    async with dispatcher:
        yield dispatcher


def cancelled_record(
    notification: IncidentNotification, card: IncidentCard = CARD
) -> IncidentRecord:
    """What the handler delivers when a resolution cancelled the investigation."""
    incident = Incident(notification, card)
    report = report_for(
        incident, Outcome.CANCELLED, error="the alert resolved during the investigation"
    )
    return IncidentRecord(incident, None, report)
