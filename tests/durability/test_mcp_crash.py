"""An MCP server that dies in the middle of a run: the tool call fails as data (the model gets
the error and still answers), the registry notices the dead server, reconnects it, and the next
incident uses it again. A real stdio server process, the whole daemon."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from mcp_sentinel.config import load_settings
from tests.fakes.mcp_stdio_server import CRASH_TOOL
from tests.fakes.openai_server import FakeOpenAI, FinalJSON, ToolCall
from tests.helpers import AUTH, FINDING, audit_records, wait_for, write_config
from tests.sinks.support import captured_logs


def alert(template: dict[str, Any], fingerprint: str) -> bytes:
    payload = json.loads(json.dumps(template))
    payload["alerts"][0]["fingerprint"] = fingerprint
    return json.dumps(payload).encode()


def reconnected(logs: list[str]) -> bool:
    """The log says the server died, and after that that it is connected again."""
    died = next(
        (i for i, line in enumerate(logs) if "MCP server ops stopped answering" in line), None
    )
    return died is not None and any("MCP server ops connected" in line for line in logs[died:])


async def test_a_crashed_mcp_server_is_reconnected_and_used_again(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    template = fixture_json("webhook_firing_single_alert")
    calls = tmp_path / "mcp-calls.jsonl"
    script = [
        ToolCall(f"mcp_ops__{CRASH_TOOL}", {"reason": "mid-run"}),
        FinalJSON(FINDING),
        ToolCall("mcp_ops__query", {"promql": 'up{job="checkout"}'}),
        FinalJSON(FINDING),
    ]
    async with FakeOpenAI(script) as model:
        write_config(tmp_path, model_url=model.base_url, mcp_log=calls)
        config_path = tmp_path / "config.yaml"
        config = yaml.safe_load(config_path.read_text())
        ops = config["mcp_servers"]["ops"]
        ops["args"].append("--crash-tool")
        ops["read_only_tools"].append(CRASH_TOOL)  # so the tool policy lets it run
        config_path.write_text(yaml.safe_dump(config))
        settings = load_settings(config_path, env={})
        audit = settings.resolve(settings.sinks.audit.path)

        with captured_logs() as logs:
            async with (
                Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
                aiohttp.ClientSession(base_url=s.url) as http,
            ):
                async with http.post(
                    "/webhook/alertmanager", data=alert(template, "crash-1"), headers=AUTH
                ) as r:
                    assert r.status == 200
                await wait_for(lambda: len(audit_records(audit)) == 1, what="the first report")
                await wait_for(
                    lambda: reconnected(logs), what="the dead server noticed and reconnected"
                )
                async with http.post(
                    "/webhook/alertmanager", data=alert(template, "crash-2"), headers=AUTH
                ) as r:
                    assert r.status == 200
                await wait_for(lambda: len(audit_records(audit)) == 2, what="the second report")

    first, second = (r["report"] for r in audit_records(audit))
    assert first["outcome"] == "completed"  # the failed call was data, not a crash of the run
    (crashed,) = first["tools_called"]
    assert (crashed["tool"], crashed["status"]) == (CRASH_TOOL, "error")
    (queried,) = second["tools_called"]
    assert (queried["tool"], queried["status"]) == ("query", "ok")
    assert "=> 0" in (queried["result"] or "")
    ran = [json.loads(line)["tool"] for line in calls.read_text().splitlines()]
    assert ran == [CRASH_TOOL, "query"]  # the query ran in the new server process
