"""One incident's trace through the whole daemon: the webhook request (continuing the caller's
traceparent), dispatch, queue wait, the incident, the agent run with its model and tool calls,
validator decisions as events, and every sink delivery."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from tests.fakes.openai_server import FakeOpenAI, FinalJSON, ToolCall
from tests.helpers import AUTH, FINDING, audit_records, wait_for, write_config

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


async def test_span_tree_of_one_incident(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    exporter = InMemorySpanExporter()
    script = [ToolCall("mcp_ops__query", {"promql": "up"}), FinalJSON(FINDING)]
    async with FakeOpenAI(script) as model:
        overrides: dict[str, Any] = {"telemetry": {"tracing": {"enabled": True}}}
        settings = write_config(
            tmp_path,
            model_url=model.base_url,
            mcp_log=tmp_path / "calls.jsonl",
            overrides=overrides,
        )
        audit = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(
                settings,
                registry=CollectorRegistry(),
                console_stream=io.StringIO(),
                span_processor=SimpleSpanProcessor(exporter),
            ) as sentinel,
            aiohttp.ClientSession(base_url=sentinel.url) as http,
        ):
            body = fixture_bytes("webhook_firing_single_alert")
            headers = {**AUTH, "traceparent": TRACEPARENT}
            async with http.post("/webhook/alertmanager", data=body, headers=headers) as r:
                assert r.status == 200
            await wait_for(lambda: len(audit_records(audit)) == 1, what="the audit record")
    spans = exporter.get_finished_spans()
    by_name = {span.name: span for span in spans}
    expected = {
        "POST /webhook/alertmanager",
        "dispatch",
        "queue.wait",
        "incident Checkout",
        "invoke_agent Checkout",
        "gen_ai.workflow",
        "execute_tool mcp_ops__query",
        "sink console",
        "sink audit",
    }
    assert expected <= set(by_name), sorted(by_name)
    assert len([s for s in spans if s.name.startswith("chat")]) == 2
    # One trace, the caller's.
    incident_spans = [s for s in spans if s.name != "mcp.list_tools"]
    assert {f"{s.context.trace_id:032x}" for s in incident_spans} == {CALLER_TRACE}
    receipt = by_name["POST /webhook/alertmanager"]
    assert receipt.parent is not None and f"{receipt.parent.span_id:016x}" == "00f067aa0ba902b7"
    incident = by_name["incident Checkout"]
    assert incident.parent is not None
    assert incident.parent.span_id == by_name["dispatch"].context.span_id
    agent = by_name["invoke_agent Checkout"]
    assert agent.parent is not None and agent.parent.span_id == incident.context.span_id
    attributes: Any = agent.attributes
    assert attributes["gen_ai.request.model"] == "gpt-test"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert by_name["sink audit"].parent is not None
    assert by_name["sink audit"].parent.span_id == incident.context.span_id

    def validators(span: Any) -> set[str]:
        return {
            e.attributes["sentinel.validator"]
            for e in span.events
            if e.name == "validator.decision" and e.attributes
        }

    # Tool calls and outputs are decided during the run; the report after it, in the incident.
    assert {"injection_guard", "tool_policy", "secret_redaction"} <= validators(agent)
    assert {"grounding", "secret_redaction"} <= validators(incident)
    incident_attributes: Any = incident.attributes
    assert incident_attributes["sentinel.outcome"] == "completed"
    assert incident_attributes["sentinel.alert.fingerprint"] == "8d746f6f305121f8"
