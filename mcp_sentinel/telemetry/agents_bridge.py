"""The agents SDK's traces, bridged into OpenTelemetry.

``install_agents_bridge`` makes ``AgentsTracingBridge`` the SDK's only trace processor (it
replaces the SDK's exporter to OpenAI: runs are traced here, not there) and returns the
function that removes it. This module imports the SDK, so only the investigation core loads it.

The bridge maps each SDK span to an OpenTelemetry span with GenAI semantic-convention
attributes (``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.*``,
``gen_ai.tool.name``). It records names, models, token counts and errors, never prompts,
arguments or outputs: those may carry secrets and belong in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.tracing import (
    Span,
    Trace,
    TracingProcessor,
    set_trace_processors,
    set_tracing_disabled,
)
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer


def install_agents_bridge(tracer: Tracer) -> Callable[[], None]:
    """Send the SDK's spans to ``tracer``; the returned function stops that."""
    set_trace_processors([AgentsTracingBridge(tracer)])
    set_tracing_disabled(False)

    def uninstall() -> None:
        set_trace_processors([])

    return uninstall


class AgentsTracingBridge(TracingProcessor):
    """Turns the agents SDK's traces and spans into OpenTelemetry spans.

    The SDK calls these methods synchronously on the task running the agent, so the current
    OpenTelemetry context there (the incident's span) becomes the parent of each SDK trace.
    """

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._spans: dict[str, trace.Span] = {}

    def on_trace_start(self, trace_: Trace) -> None:
        span = self._tracer.start_span(
            "gen_ai.workflow",
            attributes={"gen_ai.system": "openai", "sentinel.workflow": trace_.name},
        )
        self._spans[trace_.trace_id] = span

    def on_trace_end(self, trace_: Trace) -> None:
        span = self._spans.pop(trace_.trace_id, None)
        if span is not None:
            span.end()

    def on_span_start(self, span: Span[Any]) -> None:
        parent = self._spans.get(span.parent_id or "") or self._spans.get(span.trace_id)
        parent_context = (
            trace.set_span_in_context(parent) if parent is not None else otel_context.get_current()
        )
        name, attributes = _describe(span.span_data)
        self._spans[span.span_id] = self._tracer.start_span(
            name, context=parent_context, attributes=attributes
        )

    def on_span_end(self, span: Span[Any]) -> None:
        otel_span = self._spans.pop(span.span_id, None)
        if otel_span is None:
            return
        _, attributes = _describe(span.span_data)
        otel_span.set_attributes(attributes)  # usage is known only at the end
        if span.error:
            message = str(span.error.get("message", "error"))
            otel_span.set_status(Status(StatusCode.ERROR, message))
        otel_span.end()

    def shutdown(self) -> None:
        for span in self._spans.values():
            span.end()
        self._spans.clear()

    def force_flush(self) -> None:
        return None


def _describe(data: Any) -> tuple[str, dict[str, Any]]:
    """Span name and GenAI attributes for one SDK span's data (metadata only, no content)."""
    kind = getattr(data, "type", "custom")
    attributes: dict[str, Any] = {"gen_ai.system": "openai", "sentinel.agents.span_type": kind}
    if kind == "agent":
        attributes["gen_ai.operation.name"] = "invoke_agent"
        attributes["gen_ai.agent.name"] = data.name
        return f"invoke_agent {data.name}", attributes
    if kind in ("generation", "response"):
        attributes["gen_ai.operation.name"] = "chat"
        model = getattr(data, "model", None)
        response = getattr(data, "response", None)
        if model is None and response is not None:
            model = getattr(response, "model", None)
        if model:
            attributes["gen_ai.request.model"] = str(model)
        usage = getattr(data, "usage", None) or {}
        if usage:
            input_tokens = usage.get("input_tokens", usage.get("prompt_tokens"))
            output_tokens = usage.get("output_tokens", usage.get("completion_tokens"))
            if input_tokens is not None:
                attributes["gen_ai.usage.input_tokens"] = int(input_tokens)
            if output_tokens is not None:
                attributes["gen_ai.usage.output_tokens"] = int(output_tokens)
        return f"chat {model or ''}".strip(), attributes
    if kind == "function":
        attributes["gen_ai.operation.name"] = "execute_tool"
        attributes["gen_ai.tool.name"] = data.name
        if data.mcp_data:
            attributes["sentinel.mcp.server"] = str(data.mcp_data.get("server", ""))
        return f"execute_tool {data.name}", attributes
    if kind == "mcp_tools":
        attributes["sentinel.mcp.server"] = str(getattr(data, "server", "") or "")
        return "mcp.list_tools", attributes
    if kind == "guardrail":
        attributes["sentinel.guardrail.name"] = data.name
        attributes["sentinel.guardrail.triggered"] = bool(data.triggered)
        return f"guardrail {data.name}", attributes
    return f"agents.{kind}", attributes
