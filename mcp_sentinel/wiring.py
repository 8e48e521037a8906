"""Building the investigation core, shared by ``sentinel run`` (app.py) and ``sentinel replay``
so that both take exactly the same path: the prompt renderer, the model factory, the
validator pipeline, the MCP registry and the investigator.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from agents import Model, set_tracing_disabled
from loguru import logger
from opentelemetry.trace import Tracer

from mcp_sentinel.agent.approvals import GateApprovedCalls, NoApprover
from mcp_sentinel.agent.models import ModelFactory
from mcp_sentinel.agent.orchestrator import Investigator
from mcp_sentinel.agent.tools import McpRegistry
from mcp_sentinel.config import SentinelSettings
from mcp_sentinel.prompts import PromptRenderer, PromptRepository
from mcp_sentinel.telemetry.agents_bridge import install_agents_bridge
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.validators.factory import build_pipeline


@dataclass(frozen=True, slots=True)
class InvestigationCore:
    renderer: PromptRenderer
    investigator: Investigator
    registry: McpRegistry


async def open_investigation_core(
    settings: SentinelSettings,
    *,
    metrics: SentinelMetrics,
    stack: AsyncExitStack,
    wrap_model: Callable[[Model], Model] | None = None,
    require_credentials: bool = True,
    wrap_server_class: Callable[[type[Any]], type[Any]] | None = None,
    tracer: Tracer | None = None,
    otel_tracing: bool = False,
    renderer: PromptRenderer | None = None,
) -> InvestigationCore:
    """Build the core on ``stack`` (the model client and MCP connections close with it).

    ``wrap_model`` and ``wrap_server_class`` let replay record or replace what the outside
    world says; everything else is the daemon's own path. With ``otel_tracing`` the SDK's
    spans join ``tracer``'s traces until ``stack`` closes.
    """
    # The SDK traces runs when something consumes them: our OpenTelemetry bridge, or (only if
    # asked) its own exporter to OpenAI's ingest endpoint, which is otherwise the default.
    set_tracing_disabled(not (otel_tracing or settings.openai.tracing_export))
    if otel_tracing and tracer is not None:
        stack.callback(install_agents_bridge(tracer))
    if renderer is None:
        renderer = PromptRenderer(PromptRepository(settings.base_dir))
    models = ModelFactory(settings.openai, wrap=wrap_model, require_credentials=require_credentials)
    stack.push_async_callback(models.aclose)
    if models.missing_credentials:
        logger.warning(
            "{problem}; investigations will end as analysis_failed",
            problem=models.missing_credentials,
        )
    granted = GateApprovedCalls()
    pipeline = build_pipeline(
        settings.validators,
        metrics,
        read_only_tools={
            name: frozenset(server.read_only_tools) for name, server in settings.mcp_servers.items()
        },
        approver=granted,
    )
    tool_policy = settings.validators.tool_policy
    registry = await stack.enter_async_context(
        McpRegistry(
            settings.mcp_servers,
            settings.incident_cards,
            metrics,
            pipeline,
            approval_required=tool_policy.enabled and tool_policy.approval == "required",
            wrap_class=wrap_server_class,
        )
    )
    investigator = Investigator(
        models=models,
        registry=registry,
        settings=settings.openai,
        pipeline=pipeline,
        approvals=NoApprover(),
        granted=granted,
        tracer=tracer,
        sdk_tracing=otel_tracing or settings.openai.tracing_export,
    )
    return InvestigationCore(renderer=renderer, investigator=investigator, registry=registry)
