"""Traces: the agents SDK bridged into OpenTelemetry, and the OTLP exporter really sending."""

from __future__ import annotations

from typing import Any

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
from aiohttp import web
from openai import AsyncOpenAI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from mcp_sentinel.telemetry.agents_bridge import install_agents_bridge
from mcp_sentinel.telemetry.settings import TracingSettings
from mcp_sentinel.telemetry.tracing import Tracing
from tests.fakes.openai_server import FakeOpenAI, FinalJSON, ToolCall


class Answer(BaseModel):
    text: str


@function_tool
def lookup(host: str) -> str:
    """Look a host up."""
    return f"{host} is down"


async def test_agent_run_becomes_a_span_tree_under_the_current_span() -> None:
    exporter = InMemorySpanExporter()
    settings = TracingSettings(enabled=True, service_name="sentinel-test")
    script = [ToolCall("lookup", {"host": "app-01"}), FinalJSON({"text": "done"})]
    async with (
        FakeOpenAI(script) as fake,
        Tracing(settings, span_processor=SimpleSpanProcessor(exporter)) as tracing,
        AsyncOpenAI(base_url=fake.base_url, api_key="sk-test") as client,
    ):
        agent = Agent(
            name="Probe",
            instructions="investigate",
            model=OpenAIChatCompletionsModel(model="gpt-test", openai_client=client),
            tools=[lookup],
            output_type=Answer,
        )
        uninstall = install_agents_bridge(tracing.tracer)
        try:
            with tracing.tracer.start_as_current_span("incident") as incident:
                result = await Runner.run(agent, "go")
        finally:
            uninstall()
        assert result.final_output == Answer(text="done")
    spans = {span.name: span for span in exporter.get_finished_spans()}
    trace_id = incident.get_span_context().trace_id
    assert {"incident", "gen_ai.workflow", "invoke_agent Probe", "execute_tool lookup"} <= set(
        spans
    ), sorted(spans)
    assert all(span.context.trace_id == trace_id for span in spans.values())
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert len(chats) == 2
    attributes: Any = chats[0].attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-test"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    workflow = spans["gen_ai.workflow"]
    assert (
        workflow.parent is not None
        and workflow.parent.span_id == incident.get_span_context().span_id
    )
    tool = spans["execute_tool lookup"]
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.name"] == "lookup"
    # Content never goes into spans: the tool's argument and output are absent.
    assert not any("app-01" in str(s.attributes) for s in exporter.get_finished_spans())
    assert spans["incident"].resource.attributes["service.name"] == "sentinel-test"


async def test_disabled_tracing_records_nothing_and_exports_nothing() -> None:
    async with Tracing(TracingSettings(enabled=False)) as tracing:
        with tracing.tracer.start_as_current_span("incident") as span:
            assert not span.is_recording()


async def test_otlp_http_exporter_delivers_to_a_real_receiver() -> None:
    received: list[ExportTraceServiceRequest] = []
    headers_seen: list[str] = []

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        headers_seen.append(request.headers.get("x-tenant", ""))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        settings = TracingSettings.model_validate(
            {
                "enabled": True,
                "otlp_endpoint": f"http://127.0.0.1:{port}",
                "service_name": "sentinel-otlp-test",
                "headers": {"x-tenant": "ops"},
                "resource_attributes": {"deployment.environment": "test"},
            }
        )
        async with Tracing(settings) as tracing:
            with tracing.tracer.start_as_current_span("webhook.receive"):
                pass
        # Leaving flushed the batch processor: the span is at the receiver now.
    finally:
        await runner.cleanup()
    assert len(received) == 1 and headers_seen == ["ops"]
    (resource_spans,) = received[0].resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert resource["service.name"] == "sentinel-otlp-test"
    assert resource["deployment.environment"] == "test"
    names = [span.name for scope in resource_spans.scope_spans for span in scope.spans]
    assert names == ["webhook.receive"]
