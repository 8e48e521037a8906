"""``sentinel mcp prometheus`` as a real subprocess, driven by the openai-agents MCP client,
against a real Prometheus scraping itself (see conftest)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess

import pytest
from agents.mcp import MCPServerStreamableHttp

from mcp_sentinel.toolsets.prometheus_server import TOOL_NAMES
from tests.helpers import free_port
from tests.integration.conftest import Running

from .conftest import DEMO_ALERT, RECORDED, SELF_JOB, call, stdio_toolset, toolset_argv

pytestmark = pytest.mark.asyncio(loop_scope="module")

LISTEN_WITHIN = 60.0
STOP_WITHIN = 15.0


def self_instance(prometheus: Running) -> str:
    return prometheus.url.removeprefix("http://")


async def test_offers_exactly_the_read_only_tools(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url) as server:
        tools = await server.list_tools()
    assert sorted(tool.name for tool in tools) == sorted(TOOL_NAMES)
    for tool in tools:
        assert tool.annotations is not None and tool.annotations.read_only_hint, tool.name
        assert tool.description, tool.name


async def test_query_up_returns_the_self_target(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url) as server:
        error, text = await call(server, "query", {"promql": f'up{{job="{SELF_JOB}"}}'})
        assert not error, text
        assert text.startswith("1 series at ")
        assert f'up{{instance="{self_instance(prometheus)}", job="{SELF_JOB}"}} = 1' in text

        # A relative time is accepted and the answer says when it is for.
        error, text = await call(server, "query", {"promql": "up", "time": "now-1s"})
        assert not error and "series at " in text, text


async def test_query_range_gives_a_summary_not_points(prometheus: Running) -> None:
    promql = 'prometheus_http_requests_total{handler="/metrics"}'
    async with stdio_toolset(prometheus.url) as server:
        error, text = await call(
            server, "query_range", {"promql": promql, "start": "-1m", "end": "now", "step": "1s"}
        )
    assert not error, text
    lines = text.splitlines()
    assert re.fullmatch(r"\S+Z to \S+Z, step 1s", lines[0]), lines[0]
    assert lines[1] == "1 series"
    # A counter scraped every second only grows: rising, with its rate per minute.
    assert re.search(
        r'^prometheus_http_requests_total\{code="200", handler="/metrics", '
        r'instance="[^"]+", job="prometheus"\}: rising \(\+[\d.]+/min\); '
        r"last \d+, min \d+, max \d+, mean [\d.]+; \d+ points$",
        lines[2],
    ), lines[2]
    assert len(lines) == 3  # one line per series, no raw points


async def test_max_series_says_how_many_were_left_out(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url, "--max-series", "2") as server:
        error, text = await call(server, "query", {"promql": "prometheus_http_requests_total"})
    assert not error, text
    total = int(text.split(" ", 1)[0])
    assert total > 2
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[3].startswith(f"... {total - 2} more series left out (showing 2 of {total})")


async def test_max_chars_truncates_with_a_note(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url, "--max-chars", "300") as server:
        error, text = await call(server, "query", {"promql": "prometheus_http_requests_total"})
    assert not error, text
    assert len(text) <= 300
    assert "[output truncated: " in text.splitlines()[-1]


async def test_bad_promql_is_a_readable_tool_error(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url) as server:
        error, text = await call(server, "query", {"promql": "sum(rate(up[5m]"})
        assert error
        # The SDK puts "Error executing tool <name>: " before the message.
        assert text.startswith("Error executing tool query: Prometheus rejected the request ")
        assert "(bad_data): " in text
        assert "parse error" in text

        error, text = await call(server, "query_range", {"promql": "up", "start": "yesterday"})
        assert error
        assert "cannot read time 'yesterday'" in text and "RFC3339" in text

        # The server survives errors: the next call works.
        error, _ = await call(server, "query", {"promql": "up"})
        assert not error


async def test_targets_shows_the_job_up(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url) as server:
        error, text = await call(server, "targets", {"job": SELF_JOB})
    assert not error, text
    lines = text.splitlines()
    assert lines[0] == "1 targets in 1 jobs: 1 up, 0 not up"
    assert lines[1] == f"job {SELF_JOB}: 1/1 up"
    assert re.match(rf"  up {re.escape(self_instance(prometheus))} scrape [\d.]+m?s at ", lines[2])


async def test_label_values_for_job(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url) as server:
        error, text = await call(server, "label_values", {"label": "job"})
        assert not error, text
        assert text.splitlines()[0].endswith("values of job:")
        assert SELF_JOB in text.splitlines()[1].split(", ")

        error, text = await call(
            server, "label_values", {"label": "job", "match": ['up{job="nope"}']}
        )
        assert not error and text.startswith("no values of job found"), text


async def test_metadata_for_prometheus_build_info(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url) as server:
        error, text = await call(server, "metadata", {"metric": "prometheus_build_info"})
    assert not error, text
    assert text.startswith("prometheus_build_info: gauge - A metric with a constant '1' value")


async def test_rules_and_alerts_from_the_loaded_rule_file(prometheus: Running) -> None:
    async with stdio_toolset(prometheus.url) as server:
        error, text = await call(server, "rules")
        assert not error, text
        assert text.splitlines()[0] == "2 rules in 1 groups"
        assert f"  alert {DEMO_ALERT}: vector(1) -> firing (1 active)" in text
        assert f"  record {RECORDED} = sum by (job) (up)" in text

        error, text = await call(server, "rules", {"type": "record"})
        assert not error and DEMO_ALERT not in text and RECORDED in text, text

        error, text = await call(server, "alerts")
        assert not error, text
        assert text.splitlines()[0] == "1 active alerts: 1 firing, 0 pending"
        assert re.match(
            rf'firing {DEMO_ALERT}\{{demo="true", severity="info"\}} since \S+Z, value 1 - '
            "always firing, for the toolset tests$",
            text.splitlines()[1],
        ), text


async def test_unreachable_prometheus_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with stdio_toolset(url, "--timeout", "5") as server:
        error, text = await call(server, "targets")
    assert error
    assert text.startswith(f"Error executing tool targets: Prometheus at {url} is not reachable")


async def test_streamable_http_mode(prometheus: Running) -> None:
    process = await asyncio.create_subprocess_exec(
        *toolset_argv(prometheus.url, "--http", "--host", "127.0.0.1", "--port", "0"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        url = None
        seen: list[str] = []
        while url is None:
            line = (await asyncio.wait_for(process.stderr.readline(), LISTEN_WITHIN)).decode()
            assert line, "the HTTP toolset exited before listening:\n" + "".join(seen)
            seen.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+/mcp)$", line.strip())
            url = found.group(1) if found else None
        server = MCPServerStreamableHttp(params={"url": url, "timeout": 30}, name="prometheus-http")
        async with server:
            tools = await server.list_tools()
            assert sorted(tool.name for tool in tools) == sorted(TOOL_NAMES)
            error, text = await call(server, "query", {"promql": f'up{{job="{SELF_JOB}"}}'})
        assert not error, text
        assert f'job="{SELF_JOB}"}} = 1' in text
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), STOP_WITHIN)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()
