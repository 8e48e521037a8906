"""A real Prometheus scraping itself every second, with a demo alert and a recording rule, for
the toolset tests; and helpers to run ``sentinel mcp prometheus`` as a real subprocess.

The Prometheus is shared by a module (``loop_scope="module"``: a test module using it marks its
tests ``pytest.mark.asyncio(loop_scope="module")``). It is started by the integration tests'
``Stack`` and stopped by its PID at the end of the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from agents.mcp import MCPServerStdio

from tests.integration.conftest import INSTALL_HINT, PROMETHEUS, Running, Stack

DATA_WITHIN = 30.0
SELF_JOB = "prometheus"
DEMO_ALERT = "SentinelToolsetDemo"
RECORDED = "job:up:sum"
RULES: list[dict[str, Any]] = [
    {
        "alert": DEMO_ALERT,
        "expr": "vector(1)",
        "labels": {"severity": "info", "demo": "true"},
        "annotations": {"summary": "always firing, for the toolset tests"},
    },
    {"record": RECORDED, "expr": "sum by (job) (up)"},
]


def toolset_argv(url: str, *extra: str) -> list[str]:
    """``sentinel mcp prometheus`` through this interpreter (no PATH lookup needed)."""
    return [sys.executable, "-m", "mcp_sentinel", "mcp", "prometheus", "--url", url, *extra]


@contextlib.asynccontextmanager
async def stdio_toolset(url: str, *extra: str) -> AsyncIterator[MCPServerStdio]:
    """The toolset as a stdio subprocess behind the openai-agents MCP client; leaving closes
    stdin, which ends the subprocess (the client waits for it, then kills it)."""
    argv = toolset_argv(url, *extra)
    server = MCPServerStdio(
        params={"command": argv[0], "args": argv[1:]},
        name="prometheus",
        client_session_timeout_seconds=30,
    )
    async with server:
        yield server


async def call(server: Any, tool: str, arguments: dict[str, Any] | None = None) -> tuple[bool, str]:
    """(is_error, text) of one tool call."""
    result = await server.call_tool(tool, arguments or {})
    text = "\n".join(part.text for part in result.content if getattr(part, "text", None))
    return bool(result.is_error), text


async def _wait_for_data(url: str) -> None:
    """Until a few self-scrapes are stored and the demo alert fires (bounded)."""
    enough = 'count_over_time(prometheus_http_requests_total{handler="/metrics"}[1m]) >= 4'
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DATA_WITHIN
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            async with http.get(f"{url}/api/v1/query", params={"query": enough}) as r:
                scraped = bool((await r.json())["data"]["result"])
            async with http.get(f"{url}/api/v1/alerts") as r:
                alerts = (await r.json())["data"]["alerts"]
            if scraped and any(alert.get("state") == "firing" for alert in alerts):
                return
            if loop.time() > deadline:
                pytest.fail(f"Prometheus at {url} had no data within {DATA_WITHIN}s")
            await asyncio.sleep(0.25)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """A real Prometheus scraping itself as job ``prometheus``, with ``RULES`` loaded."""
    if PROMETHEUS is None:
        pytest.skip(f"prometheus not found on PATH; install with: {INSTALL_HINT}")
    stack = Stack(Path(tmp_path_factory.mktemp("toolset-prometheus")))
    try:
        running = await stack.prometheus(rules=RULES, self_job=SELF_JOB)
        await _wait_for_data(running.url)
        yield running
    finally:
        await stack.aclose()
