"""MCP servers that fail to start: reported, left out, retried in the background; and the
checks `sentinel check` makes of MCP servers."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from mcp_sentinel.agent.tools import McpRegistry
from mcp_sentinel.app import Sentinel
from mcp_sentinel.cli import main
from mcp_sentinel.config import load_settings
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.validators.factory import build_pipeline
from tests.fakes.mcp_stdio_server import SERVER_PATH
from tests.fakes.openai_server import FakeOpenAI, FinalJSON, Step, ToolCall
from tests.helpers import AUTH, FINDING, audit_records, metric_value, wait_for, write_config


def add_server(config_path: Path, name: str, args: list[str], card_tools: list[str]) -> None:
    config = yaml.safe_load(config_path.read_text())
    config["mcp_servers"][name] = {
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(SERVER_PATH), *args],
        "read_only_tools": ["query", "get_logs"],
    }
    config["incident_cards"][0]["tools"] = card_tools
    config_path.write_text(yaml.safe_dump(config))


async def test_a_server_that_fails_to_start_is_left_out_then_reconnected(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    gate = tmp_path / "late-server-may-start"
    mcp_log = tmp_path / "calls.jsonl"
    script: list[Step] = [ToolCall("mcp_ops__query", {"promql": "up"}), FinalJSON(FINDING)]
    async with FakeOpenAI(script) as model:
        write_config(tmp_path, model_url=model.base_url, mcp_log=mcp_log)
        config_path = tmp_path / "config.yaml"
        add_server(config_path, "late", ["--require-file", str(gate)], ["ops", "late"])
        settings = load_settings(config_path, env={})
        audit = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            assert s.investigator is not None
            await s.investigator.wait_loaded()  # the agent loads after intake is up
            async with http.get("/metrics") as r:
                metrics = await r.text()
            assert metric_value(metrics, "sentinel_mcp_server_up", server="late") == 0
            assert metric_value(metrics, "sentinel_mcp_server_up", server="ops") == 1
            body = fixture_bytes("webhook_firing_single_alert")
            async with http.post("/webhook/alertmanager", data=body, headers=AUTH) as r:
                assert r.status == 200
            await wait_for(lambda: len(audit_records(audit)) == 1, what="the audit record")
            (record,) = audit_records(audit)
            # The incident ran with the tools that work, and says which were missing.
            assert record["report"]["outcome"] == "completed"
            assert record["report"]["tools_unavailable"] == ["late"]
            offered = [tool["function"]["name"] for tool in model.bodies[0]["tools"]]
            assert "mcp_ops__query" in offered and not any("late" in name for name in offered)

            gate.touch()  # the server can start now; the background retry picks it up

            async def late_is_up() -> bool:
                async with http.get("/metrics") as r:
                    text = await r.text()
                return metric_value(text, "sentinel_mcp_server_up", server="late") == 1

            # The first retry comes 2 s after start-up; allow a few.
            for _ in range(150):
                if await late_is_up():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the failed server was not reconnected")


def test_check_lists_each_servers_tools_and_names_one_that_cannot_start(tmp_path: Path) -> None:
    write_config(tmp_path, mcp_log=tmp_path / "calls.jsonl")
    config_path = tmp_path / "config.yaml"
    add_server(config_path, "broken", ["--require-file", str(tmp_path / "never")], ["ops"])
    result = CliRunner().invoke(main, ["check", "--config", str(config_path)], env={})
    assert result.exit_code == 1
    assert "mcp_servers.broken: cannot start:" in result.stderr

    config = yaml.safe_load(config_path.read_text())
    del config["mcp_servers"]["broken"]
    config_path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["check", "--config", str(config_path)], env={})
    assert result.exit_code == 0, result.stderr
    assert "ops (stdio): 4 tools: fail, get_logs, query, restart_service" in result.stdout


def test_check_refuses_a_hosted_server_with_chat_completions(tmp_path: Path) -> None:
    write_config(tmp_path)
    config_path = tmp_path / "config.yaml"
    config: dict[str, Any] = yaml.safe_load(config_path.read_text())
    config["mcp_servers"]["docs"] = {"transport": "hosted", "server_url": "https://mcp.example/sse"}
    config["incident_cards"][0]["tools"] = ["docs"]
    config_path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["check", "--offline", "--config", str(config_path)], env={})
    assert result.exit_code == 1
    assert (
        "mcp_servers.docs.transport: hosted MCP servers work only with openai.api: responses"
        in (result.stderr)
    )
    config["openai"]["api"] = "responses"
    config_path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["check", "--offline", "--config", str(config_path)], env={})
    assert result.exit_code == 0, result.stderr
    assert "docs (hosted): not probed" in result.stdout


async def test_a_healthy_server_stays_connected_across_health_checks(tmp_path: Path) -> None:
    """The liveness probe must be a method every protocol version has: a probe the server
    does not know would mark a live server dead and restart it at every check."""
    write_config(tmp_path, mcp_log=tmp_path / "calls.jsonl")
    settings = load_settings(tmp_path / "config.yaml", env={})
    metrics = SentinelMetrics(CollectorRegistry())
    pipeline = build_pipeline(settings.validators, metrics)
    async with McpRegistry(
        settings.mcp_servers,
        settings.incident_cards,
        metrics,
        pipeline,
        health_check_seconds=0.2,
    ) as registry:
        (server,) = registry.servers_for(settings.incident_cards[0])[0]
        session = server.session
        assert session is not None
        await asyncio.sleep(1.5)  # seven health checks
        assert registry.failed == {}
        assert server.session is session  # the same connection: never restarted
        assert (
            metrics.registry.get_sample_value("sentinel_mcp_server_up", {"server": server.name})
            == 1
        )
