"""One alert the whole way: a real webhook POST, a real stdio MCP server, a fake model speaking
the Chat Completions wire format, and the finding in the audit log, the console and /metrics."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from mcp_sentinel.sinks.audit import verify_audit_log
from tests.fakes.mcp_stdio_server import UP_SERIES
from tests.fakes.openai_server import (
    FakeOpenAI,
    FinalJSON,
    HttpError,
    Step,
    ToolCall,
    offered_tool_names,
)
from tests.helpers import (
    AUTH,
    FINDING,
    MODEL_KEY,
    audit_records,
    metric_value,
    wait_for,
    write_config,
)


def query_tool_call(request: dict[str, Any]) -> Step:
    """The model's first turn: call the query tool it was offered."""
    (name,) = [tool for tool in offered_tool_names(request) if tool.endswith("__query")]
    return ToolCall(name, {"promql": 'up{job="checkout"}'})


async def test_alert_to_finding_through_a_real_mcp_tool(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    mcp_log = tmp_path / "mcp-calls.jsonl"
    console = io.StringIO()
    async with FakeOpenAI([query_tool_call, FinalJSON(FINDING)]) as model:
        settings = write_config(tmp_path, model_url=model.base_url, mcp_log=mcp_log)
        audit_path = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=console) as sentinel,
            aiohttp.ClientSession() as http,
        ):
            body = fixture_bytes("webhook_firing_single_alert")
            headers = {**AUTH, "Content-Type": "application/json"}
            async with http.post(
                f"{sentinel.url}/webhook/alertmanager", data=body, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
                answer = await r.json()
            assert answer == {
                "status": "accepted",
                "alerts": 1,
                "queued": 1,
                "duplicate": 0,
                "unrouted": 0,
            }
            await wait_for(lambda: len(audit_records(audit_path)) == 1, what="the audit record")
            async with http.get(f"{sentinel.url}/metrics") as r:
                metrics = await r.text()

    # The MCP tool really ran, in the subprocess, with the model's arguments.
    calls = [json.loads(line) for line in mcp_log.read_text().splitlines()]
    assert calls == [{"tool": "query", "arguments": {"promql": 'up{job="checkout"}'}}]

    # The model saw the card's prompt, the fenced alert, only the card's tools, and the result.
    first, second = model.bodies
    assert first["model"] == "gpt-test"
    assert model.requests[0].headers["authorization"] == f"Bearer {MODEL_KEY}"
    system = first["messages"][0]["content"]
    assert "You are investigating" in system and "card Checkout" in system
    user = first["messages"][1]["content"]
    assert '<alert-data untrusted="true">' in user and "8d746f6f305121f8" in user
    assert sorted(offered_tool_names(first)) == [
        "mcp_ops__fail",
        "mcp_ops__get_logs",
        "mcp_ops__query",
        "mcp_ops__restart_service",
    ]
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 1
    assert UP_SERIES in tool_messages[0]["content"][0]["text"]

    # The audit record holds the notification, the prompt, the tool call and the report.
    (record,) = audit_records(audit_path)
    report = record["report"]
    assert report["outcome"] == "completed"
    assert report["finding"]["summary"] == FINDING["summary"]
    assert report["card"] == "Checkout" and report["model"] == "gpt-test"
    assert report["turns"] == 2 and report["input_tokens"] > 0 and report["output_tokens"] > 0
    (tool_call,) = report["tools_called"]
    assert tool_call["server"] == "ops" and tool_call["tool"] == "query"
    assert json.loads(tool_call["arguments"]) == {"promql": 'up{job="checkout"}'}
    assert tool_call["status"] == "ok" and UP_SERIES in tool_call["result"]
    assert record["notification"]["fingerprint"] == "8d746f6f305121f8"
    assert record["notification"]["labels"]["service"] == "checkout"
    assert (
        'You are investigating "ProbeAlwaysFiring" for card Checkout'
        in record["prompt"]["instructions"]
    )
    assert verify_audit_log(audit_path).ok
    # A real alert and ordinary tool output: every validator approves, nothing is flagged.
    assert {d["result"] for d in report["validation"]} == {"approved"}
    assert {d["action"] for d in report["validation"]} == {
        "agent_input",
        "tool_call",
        "tool_output",
        "report",
    }
    assert report["flags"] == []

    # The console shows the finding; the metrics moved.
    printed = console.getvalue()
    assert "[completed] ProbeAlwaysFiring on app-01.example.internal:8080" in printed
    assert FINDING["summary"] in printed
    assert (
        metric_value(metrics, "sentinel_alerts_received_total", source="webhook", status="firing")
        == 1
    )
    assert metric_value(metrics, "sentinel_alerts_dispatched_total", outcome="queued") == 1
    assert (
        metric_value(metrics, "sentinel_agent_runs_total", card="Checkout", outcome="completed")
        == 1
    )
    assert metric_value(metrics, "sentinel_tool_calls_total", server="ops", outcome="ok") == 1
    assert metric_value(metrics, "sentinel_webhook_requests_total", code="200") == 1
    assert metric_value(metrics, "sentinel_agent_run_duration_seconds_count", card="Checkout") == 1
    assert metric_value(metrics, "sentinel_mcp_server_up", server="ops") == 1


async def test_failing_model_still_reports_the_alert(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    console = io.StringIO()
    async with FakeOpenAI([HttpError(500)]) as model:
        settings = write_config(tmp_path, model_url=model.base_url)
        audit_path = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=console) as sentinel,
            aiohttp.ClientSession() as http,
        ):
            body = fixture_bytes("webhook_firing_single_alert")
            async with http.post(
                f"{sentinel.url}/webhook/alertmanager", data=body, headers=AUTH
            ) as r:
                assert r.status == 200
            await wait_for(lambda: len(audit_records(audit_path)) == 1, what="the audit record")
    (record,) = audit_records(audit_path)
    report = record["report"]
    assert report["outcome"] == "analysis_failed"
    assert report["finding"] is None
    assert report["error"] == "the model endpoint answered HTTP 500 after retries"
    assert report["alert"]["labels"]["alertname"] == "ProbeAlwaysFiring"
    printed = console.getvalue()
    assert "[analysis_failed]" in printed and "Checkout API down on app-01" in printed
    assert MODEL_KEY not in audit_path.read_text() and MODEL_KEY not in printed


async def test_unusable_model_output_is_analysis_failed(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    async with FakeOpenAI([FinalJSON({"summary": "only a summary"})]) as model:
        settings = write_config(tmp_path, model_url=model.base_url)
        audit_path = settings.resolve(settings.sinks.audit.path)
        async with Sentinel(
            settings, registry=CollectorRegistry(), console_stream=io.StringIO()
        ) as s:
            async with aiohttp.ClientSession() as http:
                body = fixture_bytes("webhook_firing_single_alert")
                async with http.post(f"{s.url}/webhook/alertmanager", data=body, headers=AUTH) as r:
                    assert r.status == 200
            await wait_for(lambda: len(audit_records(audit_path)) == 1, what="the audit record")
    (record,) = audit_records(audit_path)
    assert record["report"]["outcome"] == "analysis_failed"
    assert record["report"]["error"].startswith("the model's output was unusable")
