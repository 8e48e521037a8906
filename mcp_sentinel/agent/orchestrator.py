"""The orchestrator: runs the card's openai-agents ``Agent`` on one incident, under the
validator pipeline.

The order of one investigation: the agent's input (the rendered prompt and the fenced alert)
is validated first (injection guard, rate limiter, circuit breaker: an over-budget incident
waits, it is not dropped); the run's tool calls and outputs are validated by the guardrails
each MCP server carries; mutating calls that need approval interrupt the run and are decided
by the ``ApprovalGate``; the final report is validated (secret redaction, grounding) before
any sink sees it.

``Investigator.investigate`` never raises for a failed analysis: a model error, a timeout, a
run over ``max_iterations``, unusable output or a refusal each yield a report with outcome
``analysis_failed``, the error, and the alert's own facts. Cancellation does propagate.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import openai
from agents import (
    Agent,
    AgentOutputSchema,
    AgentOutputSchemaBase,
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
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer

from mcp_sentinel.agent.approvals import (
    ApprovalGate,
    ApprovalRequest,
    GateApprovedCalls,
    approval_arguments,
)
from mcp_sentinel.agent.context import InvestigationContext, RunFacts, split_tool_name
from mcp_sentinel.agent.decisions import record_decisions
from mcp_sentinel.agent.guardrails import SDK_TOOL_ERROR_PREFIX, parse_arguments, result_text
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
from mcp_sentinel.validators.actions import AgentInput, ReportCheck
from mcp_sentinel.validators.pipeline import (
    IncidentContext,
    PipelineResult,
    Retry,
    ValidatorPipeline,
)

MODEL_BREAKER_TARGET = "model:default"
# A run is resumed at most this many times after approval interruptions.
_MAX_APPROVAL_ROUNDS = 10


class _RecordingHooks(RunHooks[InvestigationContext]):
    """Records every model turn and tool call; the output guardrail fills in results."""

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
        facts = context.context.facts
        if call_id in facts.tool_calls:
            return
        server, name = split_tool_name(tool.name, self._servers)
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
        if record is None or record.status != "pending":
            return  # already settled by the output guardrail
        text = result_text(result)
        record.result = text
        record.status = "error" if text.startswith(SDK_TOOL_ERROR_PREFIX) else "ok"
        facts.seen_texts.append(text)
        started = facts.tool_started.pop(call_id, None)
        if started is not None:
            record.duration_seconds = round(time.monotonic() - started, 6)


class _FindingOutput(AgentOutputSchemaBase):
    """The finding's output schema, built once: given the class, the SDK builds it again on
    every run, and generating its JSON schema was an eighth of the daemon's CPU per
    investigation.

    It hands every call to an ``AgentOutputSchema`` but is not a dataclass itself: the SDK
    describes the agent twice per run (the identity keys of its run state) and walks a
    dataclass output schema with ``dataclasses.asdict``, which deep-copies its TypeAdapter and
    JSON schema. That was 0.9 ms per description, against 0.27 ms for this wrapper
    (``_agent_identity_signature`` of the daemon's agent).
    """

    def __init__(self) -> None:
        self._schema = AgentOutputSchema(Finding)

    def is_plain_text(self) -> bool:
        return self._schema.is_plain_text()

    def name(self) -> str:
        return self._schema.name()

    def json_schema(self) -> dict[str, Any]:
        return self._schema.json_schema()

    def is_strict_json_schema(self) -> bool:
        return self._schema.is_strict_json_schema()

    def validate_json(self, json_str: str) -> Any:
        return self._schema.validate_json(json_str)


_FINDING_OUTPUT = _FindingOutput()


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


def _is_model_failure(error: BaseException) -> bool:
    """Failures that count against the model endpoint's circuit breaker."""
    return isinstance(error, openai.APIError | TimeoutError)


class Investigator:
    """Runs investigations; shared by every worker. Owns no resource: the factory, registry
    and pipeline it is given are closed by whoever built them."""

    def __init__(
        self,
        *,
        models: ModelFactory,
        registry: McpRegistry,
        settings: OpenAISettings,
        pipeline: ValidatorPipeline,
        approvals: ApprovalGate,
        granted: GateApprovedCalls,
        tracer: Tracer | None = None,
        sdk_tracing: bool = False,
    ) -> None:
        """``sdk_tracing``: let the SDK trace runs (for the OpenTelemetry bridge or its own
        exporter); off, runs are not traced by the SDK at all."""
        self._models = models
        self._registry = registry
        self._settings = settings
        self._pipeline = pipeline
        self._approvals = approvals
        self._granted = granted
        self._tracer = tracer or trace.NoOpTracer()
        self._sdk_tracing = sdk_tracing
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
                output_type=_FINDING_OUTPUT,
                tools=list(self._registry.hosted_tools_for(card)),
                mcp_servers=servers,
                mcp_config={"include_server_in_tool_names": True},
            )
            self._agents[cache_key] = agent
        return agent

    async def _validated(self, action: Any, context: IncidentContext, facts: RunFacts) -> Any:
        """Run the pipeline on ``action``, waiting out every Retry (an incident over a rate
        budget waits; it is not dropped). Returns the PipelineResult."""
        while True:
            outcome = self._pipeline.check(action, context)
            if isinstance(outcome, Retry):
                await asyncio.sleep(outcome.delay_seconds)
                continue
            facts.decisions.extend(outcome.decisions)
            record_decisions(outcome.decisions)
            return outcome

    async def investigate(self, incident: Incident, prompt: RenderedPrompt) -> IncidentReport:
        card = incident.card
        started_at = datetime.now(UTC)
        started = time.monotonic()
        servers, missing = self._registry.servers_for(card)
        tools_available = bool(servers or self._registry.hosted_tools_for(card))
        model_name, _ = self._models.model(card.model)
        facts = RunFacts()
        validation = IncidentContext(incident_id=incident.incident_id, card=card.resource)
        finding: Finding | None = None
        error: str | None = None
        agent_input: PipelineResult = await self._validated(
            AgentInput(
                card=card.resource,
                incident_id=incident.incident_id,
                instructions=prompt.instructions,
                alert_data=prompt.alert_data,
            ),
            validation,
            facts,
        )
        checked_input = agent_input.action
        alert_data = (
            checked_input.alert_data if isinstance(checked_input, AgentInput) else prompt.alert_data
        )
        facts.seen_texts.append(alert_data)
        if agent_input.rejected is not None:
            error = f"the agent was not run: {agent_input.rejected}"
        elif self._models.missing_credentials:
            error = self._models.missing_credentials
        else:
            span = self._tracer.start_span(
                f"invoke_agent {card.resource}",
                attributes={
                    "gen_ai.system": "openai",
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": card.resource,
                    "gen_ai.request.model": model_name,
                },
            )
            try:
                with trace.use_span(span, end_on_exit=False):
                    async with asyncio.timeout(card.timeout_seconds):
                        finding = await self._run(
                            incident=incident,
                            card=card,
                            servers=servers,
                            alert_data=alert_data,
                            prompt=prompt,
                            facts=facts,
                            validation=validation,
                        )
                self._pipeline.observe(MODEL_BREAKER_TARGET, True)
            except (Exception, TimeoutError) as exc:
                error = describe_failure(exc, card)
                self._pipeline.observe(MODEL_BREAKER_TARGET, not _is_model_failure(exc))
                span.set_status(Status(StatusCode.ERROR, error))
            finally:
                span.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": facts.input_tokens,
                        "gen_ai.usage.output_tokens": facts.output_tokens,
                        "sentinel.agent.turns": facts.turns,
                        "sentinel.agent.tool_calls": len(facts.tool_calls),
                    }
                )
                span.end()
        report = IncidentReport(
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
        return await self._checked_report(report, facts, validation, tools_available)

    async def _run(
        self,
        *,
        incident: Incident,
        card: IncidentCard,
        servers: list[MCPServer],
        alert_data: str,
        prompt: RenderedPrompt,
        facts: RunFacts,
        validation: IncidentContext,
    ) -> Finding:
        agent = self._agent(card, servers)
        context = InvestigationContext(card=card, prompt=prompt, facts=facts, validation=validation)
        run_config = RunConfig(
            tracing_disabled=not self._sdk_tracing,
            workflow_name=f"sentinel:{card.resource}",
            tool_not_found_behavior="return_error_to_model",
        )
        hooks = _RecordingHooks([server.name for server in servers])
        result = await Runner.run(
            agent,
            alert_data,
            context=context,
            max_turns=card.max_iterations,
            hooks=hooks,
            run_config=run_config,
        )
        rounds = 0
        while result.interruptions:
            rounds += 1
            if rounds > _MAX_APPROVAL_ROUNDS:
                raise AgentsException("too many approval interruptions in one run")
            state = result.to_state()
            server_names = [server.name for server in servers]
            for item in result.interruptions:
                server, tool = split_tool_name(item.tool_name or "", server_names)
                decision = await self._approvals.decide(
                    ApprovalRequest(
                        incident_id=incident.incident_id,
                        card=card.resource,
                        server=server,
                        tool=tool,
                        arguments=approval_arguments(item.raw_item),
                    )
                )
                if decision.approved:
                    if server is not None:
                        self._granted.grant(
                            incident.incident_id,
                            server,
                            tool,
                            parse_arguments(approval_arguments(item.raw_item)),
                        )
                    state.approve(item)
                else:
                    state.reject(item, rejection_message=f"[sentinel] {decision.reason}")
                    facts.tool_calls[f"approval-{rounds}-{tool}"] = ToolCallRecord(
                        tool=tool,
                        server=server,
                        arguments=approval_arguments(item.raw_item),
                        result=decision.reason,
                        status="refused",
                    )
            result = await Runner.run(
                agent, state, max_turns=card.max_iterations, hooks=hooks, run_config=run_config
            )
        finding = result.final_output_as(Finding, raise_if_incorrect_type=True)
        confidence = min(1.0, max(0.0, finding.confidence))
        if confidence != finding.confidence:
            finding = finding.model_copy(update={"confidence": confidence})
        return finding

    async def _checked_report(
        self,
        report: IncidentReport,
        facts: RunFacts,
        validation: IncidentContext,
        tools_available: bool,
    ) -> IncidentReport:
        """Validate the report before any sink sees it (redaction, grounding)."""
        outcome = await self._validated(
            ReportCheck(
                card=report.card,
                incident_id=report.incident_id,
                report=report,
                seen_texts=tuple(facts.seen_texts),
                tools_available=tools_available,
            ),
            validation,
            facts,
        )
        checked = outcome.action
        final = checked.report if isinstance(checked, ReportCheck) else report
        if outcome.rejected is not None:
            final = final.model_copy(
                update={
                    "outcome": Outcome.ANALYSIS_FAILED,
                    "finding": None,
                    "error": f"the report was withheld: {outcome.rejected}",
                }
            )
        return final.model_copy(
            update={"validation": [decision.to_dict() for decision in facts.decisions]}
        )
