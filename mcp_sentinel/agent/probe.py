"""Connects to each local MCP server once, lists its tools and disconnects: for ``sentinel
check``, so a server that cannot start is found before the daemon runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from agents.mcp import MCPServer

from mcp_sentinel.agent.tools import transport_params
from mcp_sentinel.config import HostedMcpServer, HttpMcpServer, StdioMcpServer


@dataclass(frozen=True, slots=True)
class ProbeResult:
    server: str
    tools: tuple[str, ...] = ()
    error: str | None = None


async def _probe_one(
    name: str, settings: StdioMcpServer | HttpMcpServer, seconds_each: float
) -> ProbeResult:
    server_class, params = transport_params(settings)
    server: MCPServer = server_class(params=params, name=name)
    try:
        async with asyncio.timeout(seconds_each):
            await server.connect()  # type: ignore[no-untyped-call]
            try:
                tools = await server.list_tools()
            finally:
                await server.cleanup()  # type: ignore[no-untyped-call]
    except TimeoutError:
        return ProbeResult(name, error=f"no answer within {seconds_each:g}s")
    except Exception as exc:
        # The error text comes from the MCP client and names the command or host, not secrets.
        return ProbeResult(name, error=f"{type(exc).__name__}: {exc}")
    return ProbeResult(name, tools=tuple(sorted(tool.name for tool in tools)))


async def probe_servers(
    servers: Mapping[str, StdioMcpServer | HttpMcpServer | HostedMcpServer],
    *,
    seconds_each: float = 20.0,
) -> list[ProbeResult]:
    """Probe every local server one after another (hosted ones are the provider's to reach)."""
    results = []
    for name, settings in servers.items():
        if isinstance(settings, HostedMcpServer):
            continue
        results.append(await _probe_one(name, settings, seconds_each))
    return results
