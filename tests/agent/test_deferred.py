"""The investigator built in the background: workers wait for it, a failure is reported."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from mcp_sentinel.agent.deferred import DeferredInvestigator
from mcp_sentinel.investigation import IncidentInvestigator
from mcp_sentinel.models import (
    Incident,
    IncidentCard,
    IncidentNotification,
    IncidentReport,
    Outcome,
)
from mcp_sentinel.prompts import RenderedPrompt

CARD = IncidentCard(resource="Checkout", prompt="p")
PROMPT = RenderedPrompt(instructions="investigate", alert_data="{}", template="p")


class CompletingInvestigator:
    """Answers every incident with a completed report (what the real core returns)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def investigate(self, incident: Incident, prompt: RenderedPrompt) -> IncidentReport:
        self.seen.append(incident.incident_id)
        now = datetime.now(UTC)
        return IncidentReport(
            incident_id=incident.incident_id,
            card=incident.card.resource,
            alert=incident.notification.as_dict(),
            outcome=Outcome.COMPLETED,
            started_at=now,
            finished_at=now,
        )


Notifications = Callable[[str], list[IncidentNotification]]


def an_incident(notifications: Notifications) -> Incident:
    return Incident(notifications("webhook_firing_single_alert")[0], CARD)


async def test_a_worker_waits_for_the_core_then_gets_its_report(
    notifications: Notifications,
) -> None:
    may_build = asyncio.Event()
    closed: list[str] = []
    real = CompletingInvestigator()

    async def build(stack: AsyncExitStack) -> IncidentInvestigator:
        await may_build.wait()
        stack.callback(closed.append, "core")
        return real

    # A module not imported yet, to see the preload really import it.
    module = "colorsys"
    sys.modules.pop(module, None)
    async with DeferredInvestigator(build, preload=(module,)) as deferred:
        deferred.start()
        incident = an_incident(notifications)
        waiting = asyncio.create_task(deferred.investigate(incident, PROMPT))
        await asyncio.sleep(0.05)
        assert not waiting.done() and not deferred.ready and deferred.problem is None
        may_build.set()
        report = await asyncio.wait_for(waiting, 10)
        assert report.outcome is Outcome.COMPLETED and real.seen == [incident.incident_id]
        assert deferred.ready and module in sys.modules
        assert closed == []
    assert closed == ["core"]  # the core's resources close with the investigator


async def test_a_core_that_fails_to_build_is_a_named_problem_and_reports_still_come(
    notifications: Notifications,
) -> None:
    async def build(stack: AsyncExitStack) -> IncidentInvestigator:
        raise RuntimeError("MCP registry exploded")

    async with DeferredInvestigator(build) as deferred:
        incident = an_incident(notifications)
        # investigate() starts the load itself when nobody did.
        report = await asyncio.wait_for(deferred.investigate(incident, PROMPT), 10)
        assert report.outcome is Outcome.ANALYSIS_FAILED
        assert report.error == "the agent failed to start: RuntimeError: MCP registry exploded"
        assert report.alert["labels"]["alertname"] == incident.notification.alertname
        assert deferred.problem == report.error and not deferred.ready


async def test_leaving_while_the_core_still_loads_cancels_the_load() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def build(stack: AsyncExitStack) -> IncidentInvestigator:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        raise AssertionError("unreachable")

    async with asyncio.timeout(10):  # leaving must not wait for the hour-long build
        async with DeferredInvestigator(build) as deferred:
            deferred.start()
            await started.wait()
    assert cancelled == [True]
    assert not deferred.ready and deferred.problem is None
