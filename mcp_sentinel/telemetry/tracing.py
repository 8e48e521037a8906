"""OpenTelemetry traces: the provider, the OTLP exporter, and a bridge from the agents SDK.

``Tracing`` is an async context manager owned by the app. Entering builds a ``TracerProvider``
(service name and resource attributes from the config, a parent-based ratio sampler, a batch
processor with an OTLP exporter over HTTP/protobuf or gRPC) and, when tracing is enabled,
installs ``AgentsTracingBridge`` as the SDK's only trace processor. Leaving flushes and shuts
the provider down on a worker thread (the SDK's flush blocks; never on the event loop).

With tracing disabled, ``tracer`` is OpenTelemetry's no-op tracer: instrumented code runs the
same, nothing is recorded, nothing is exported, and no exporter can fail.

The bridge maps each SDK span to an OpenTelemetry span with GenAI semantic-convention
attributes (``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.*``,
``gen_ai.tool.name``). It records names, models, token counts and errors, never prompts,
arguments or outputs: those may carry secrets and belong in the audit log.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
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
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mcp_sentinel import __version__
from mcp_sentinel.telemetry.settings import TracingSettings

TRACER_NAME = "mcp_sentinel"


_PROPAGATOR = TraceContextTextMapPropagator()


def extract_context(traceparent: str | None) -> otel_context.Context | None:
    """The context a W3C ``traceparent`` names (None without one)."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to carry across the queue."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def build_exporter(settings: TracingSettings) -> SpanExporter:
    """The OTLP exporter for the configured protocol and endpoint."""
    headers = {key: value.get_secret_value() for key, value in settings.headers.items()}
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(
            endpoint=settings.otlp_endpoint, headers=headers, timeout=int(settings.timeout_seconds)
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter as HttpExporter,
    )

    endpoint = settings.otlp_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    return HttpExporter(endpoint=endpoint, headers=headers, timeout=settings.timeout_seconds)


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


class Tracing:
    """Owns the tracer provider for the daemon's life. ``tracer`` is valid while open."""

    def __init__(
        self,
        settings: TracingSettings,
        *,
        exporter: SpanExporter | None = None,
        span_processor: SpanProcessor | None = None,
    ) -> None:
        """``exporter`` replaces the OTLP exporter; ``span_processor`` replaces the batch
        processor (tests pass a ``SimpleSpanProcessor`` around an in-memory exporter)."""
        self._settings = settings
        self._exporter = exporter
        self._span_processor = span_processor
        self._provider: TracerProvider | None = None
        self.tracer: Tracer = trace.NoOpTracer()

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    async def __aenter__(self) -> Tracing:
        if not self._settings.enabled:
            return self
        settings = self._settings
        resource = Resource.create(
            {
                "service.name": settings.service_name,
                "service.version": __version__,
                **settings.resource_attributes,
            }
        )
        provider = TracerProvider(
            resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio))
        )
        processor = self._span_processor or BatchSpanProcessor(
            self._exporter or build_exporter(settings)
        )
        provider.add_span_processor(processor)
        self._provider = provider
        self.tracer = provider.get_tracer(TRACER_NAME, __version__)
        # The bridge replaces the SDK's exporter to OpenAI: runs are traced here, not there.
        set_trace_processors([AgentsTracingBridge(self.tracer)])
        set_tracing_disabled(False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._provider is not None:
            set_trace_processors([])
            # Flushing talks to the collector and blocks: keep it off the event loop.
            await asyncio.to_thread(self._provider.shutdown)
            self._provider = None
