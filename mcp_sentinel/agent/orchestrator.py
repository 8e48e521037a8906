"""The orchestrator: runs the card's openai-agents ``Agent`` on one incident.

``Investigator.investigate`` never raises for a failed analysis: a model error, a timeout, a run
over ``max_iterations`` or unusable output each yield a report with outcome ``analysis_failed``,
the error, and the alert's own facts, so nobody is left without the alert. Cancellation (the
daemon shutting down) does propagate.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import openai
from agents import (
    Agent,
    AgentsException,
    MaxTurnsExceeded,
    ModelBehaviorError,
    ModelSettings,
    RunConfig,
    RunContextWrapper,
    RunHooks,
    Runner,
    Tool,
)
from agents.items import ModelResponse
from agents.mcp import MCPServer

from mcp_sentinel.agent.models import ModelFactory
from mcp_sentinel.agent.tools import McpRegistry
from mcp_sentinel.config import OpenAISettings
from mcp_sentinel.models import (
    Finding,
    Incident,
    IncidentCard,
    IncidentReport,
    Outcome,
    ToolCallRecord,
)
from mcp_sentinel.prompts import RenderedPrompt

_TOOL_PREFIX = "mcp_"
_MAX_RECORDED_RESULT_CHARS = 20_000


@dataclass(slots=True)
class RunFacts:
    """What one run did, collected by the hooks as it goes (so a failed run still has them)."""

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: dict[str, ToolCallRecord] = field(default_factory=dict)
    tool_started: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class InvestigationContext:
    """The run context the SDK passes to hooks and to the dynamic instructions."""

    prompt: RenderedPrompt
    facts: RunFacts


def _split_tool_name(name: str, servers: list[str]) -> tuple[str | None, str]:
    """``mcp_prometheus__query`` -> (``prometheus``, ``query``) for the card's known servers."""
    for server in servers:
        prefix = f"{_TOOL_PREFIX}{server}__"
        if name.startswith(prefix):
            return server, name[len(prefix) :]
    return None, name


def _result_text(result: object) -> str:
    if isinstance(result, str):
        text = result
    elif isinstance(result, list):
        text = "\n".join(
            str(part.get("text", part)) if isinstance(part, dict) else str(part) for part in result
        )
    else:
        text = str(result)
    if len(text) > _MAX_RECORDED_RESULT_CHARS:
        cut = len(text) - _MAX_RECORDED_RESULT_CHARS
        text = f"{text[:_MAX_RECORDED_RESULT_CHARS]}… [{cut} characters cut]"
    return text


class _RecordingHooks(RunHooks[InvestigationContext]):
    """Records every model turn and tool call with its arguments and result."""

    def __init__(self, server_names: list[str]) -> None:
        self._servers = server_names

    async def on_llm_end(
        self,
        context: RunContextWrapper[InvestigationContext],
        agent: Agent[InvestigationContext],
        response: ModelResponse,
    ) -> None:
        facts = context.context.facts
        facts.turns += 1
        facts.input_tokens += response.usage.input_tokens
        facts.output_tokens += response.usage.output_tokens

    async def on_tool_start(
        self,
        context: RunContextWrapper[InvestigationContext],
        agent: Agent[InvestigationContext],
        tool: Tool,
    ) -> None:
        call_id = str(getattr(context, "tool_call_id", "") or id(tool))
        server, name = _split_tool_name(tool.name, self._servers)
        facts = context.context.facts
        facts.tool_started[call_id] = time.monotonic()
        facts.tool_calls[call_id] = ToolCallRecord(
            tool=name, server=server, arguments=str(getattr(context, "tool_arguments", "") or "")
        )

    async def on_tool_end(
        self,
        context: RunContextWrapper[InvestigationContext],
        agent: Agent[InvestigationContext],
        tool: Tool,
        result: object,
    ) -> None:
        call_id = str(getattr(context, "tool_call_id", "") or id(tool))
        facts = context.context.facts
        record = facts.tool_calls.get(call_id)
        if record is None:
            return
        text = _result_text(result)
        record.result = text
        # The SDK turns a failing MCP call into a message for the model; recognise it here.
        record.status = "error" if text.startswith("An error occurred while running") else "ok"
        started = facts.tool_started.pop(call_id, None)
        if started is not None:
            record.duration_seconds = round(time.monotonic() - started, 6)


def _instructions(
    context: RunContextWrapper[InvestigationContext], agent: Agent[InvestigationContext]
) -> str:
    return context.context.prompt.instructions


def describe_failure(error: BaseException, card: IncidentCard) -> str:
    """A one-line reason for ``analysis_failed`` that carries no secret (no headers, no keys)."""
    if isinstance(error, TimeoutError):
        return f"the investigation did not finish within timeout_seconds={card.timeout_seconds:g}"
    if isinstance(error, MaxTurnsExceeded):
        return f"the agent did not finish within max_iterations={card.max_iterations} turns"
    if isinstance(error, ModelBehaviorError):
        return f"the model's output was unusable: {error}"
    if isinstance(error, openai.APIStatusError):
        return f"the model endpoint answered HTTP {error.status_code} after retries"
    if isinstance(error, openai.APITimeoutError):
        return "the model endpoint timed out after retries"
    if isinstance(error, openai.APIConnectionError):
        return "the model endpoint could not be reached after retries"
    if isinstance(error, AgentsException):
        return f"the agent run failed: {type(error).__name__}: {error}"
    return f"the agent run failed: {type(error).__name__}"


class Investigator:
    """Runs investigations; shared by every worker. Owns no resource: the factory and the
    registry it is given are closed by whoever built them."""

    def __init__(
        self, models: ModelFactory, registry: McpRegistry, settings: OpenAISettings
    ) -> None:
        self._models = models
        self._registry = registry
        self._settings = settings
        self._agents: dict[tuple[str, tuple[str, ...]], Agent[InvestigationContext]] = {}

    def _agent(self, card: IncidentCard, servers: list[MCPServer]) -> Agent[InvestigationContext]:
        cache_key = (card.resource, tuple(server.name for server in servers))
        agent = self._agents.get(cache_key)
        if agent is None:
            _, model = self._models.model(card.model)
            agent = Agent[InvestigationContext](
                name=card.resource,
                instructions=_instructions,
                model=model,
                model_settings=ModelSettings(temperature=self._settings.temperature),
                output_type=Finding,
                mcp_servers=servers,
                mcp_config={"include_server_in_tool_names": True},
            )
            self._agents[cache_key] = agent
        return agent

    async def investigate(self, incident: Incident, prompt: RenderedPrompt) -> IncidentReport:
        card = incident.card
        started_at = datetime.now(UTC)
        started = time.monotonic()
        servers, missing = self._registry.servers_for(card)
        model_name, _ = self._models.model(card.model)
        facts = RunFacts()
        finding: Finding | None = None
        error: str | None = None
        if self._models.missing_credentials:
            error = self._models.missing_credentials
        else:
            agent = self._agent(card, servers)
            try:
                async with asyncio.timeout(card.timeout_seconds):
                    result = await Runner.run(
                        agent,
                        prompt.alert_data,
                        context=InvestigationContext(prompt=prompt, facts=facts),
                        max_turns=card.max_iterations,
                        hooks=_RecordingHooks([server.name for server in servers]),
                        run_config=RunConfig(
                            tracing_disabled=not self._settings.tracing_export,
                            workflow_name=f"sentinel:{card.resource}",
                            tool_not_found_behavior="return_error_to_model",
                        ),
                    )
                finding = _clamped(result.final_output_as(Finding, raise_if_incorrect_type=True))
            except (Exception, TimeoutError) as exc:
                error = describe_failure(exc, card)
        return IncidentReport(
            incident_id=incident.incident_id,
            card=card.resource,
            alert=incident.notification.as_dict(),
            outcome=Outcome.COMPLETED if finding is not None else Outcome.ANALYSIS_FAILED,
            finding=finding,
            error=error,
            model=model_name,
            turns=facts.turns,
            input_tokens=facts.input_tokens,
            output_tokens=facts.output_tokens,
            tools_called=list(facts.tool_calls.values()),
            tools_unavailable=missing,
            duration_seconds=round(time.monotonic() - started, 6),
            started_at=started_at,
            finished_at=datetime.now(UTC),
        )


def _clamped(finding: Finding) -> Finding:
    confidence = min(1.0, max(0.0, finding.confidence))
    return (
        finding
        if confidence == finding.confidence
        else finding.model_copy(update={"confidence": confidence})
    )


__all__: list[Any] = ["Investigator", "describe_failure"]
