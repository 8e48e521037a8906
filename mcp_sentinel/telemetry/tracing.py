"""OpenTelemetry traces: the provider and the OTLP exporter.

``Tracing`` is an async context manager owned by the app. Entering builds a ``TracerProvider``
(service name and resource attributes from the config, a parent-based ratio sampler, a batch
processor with an OTLP exporter over HTTP/protobuf or gRPC). Leaving flushes and shuts the
provider down on a worker thread (the SDK's flush blocks; never on the event loop). The agents
SDK's own spans join these traces through ``telemetry.agents_bridge``, installed with the
investigation core (the SDK is loaded after intake is up, so this module must not import it).

With tracing disabled, ``tracer`` is OpenTelemetry's no-op tracer: instrumented code runs the
same, nothing is recorded, nothing is exported, and no exporter can fail.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer
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
    if not trace.get_current_span().get_span_context().is_valid:
        return None  # tracing off, or no span here: the usual case, and it is on the hot path
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
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._provider is not None:
            # Flushing talks to the collector and blocks: keep it off the event loop.
            await asyncio.to_thread(self._provider.shutdown)
            self._provider = None
