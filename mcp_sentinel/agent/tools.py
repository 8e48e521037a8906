"""The MCP tool registry: every configured MCP server, connected once and shared by incidents.

``McpRegistry`` is an async context manager around openai-agents' ``MCPServerManager``: entering
connects every server (a server that fails is reported and left out; the others work), leaving
closes them on the same task. Each server carries a dynamic tool filter, so one shared
connection shows each card only the tools its ``tools`` list allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from agents.mcp import (
    MCPServer,
    MCPServerManager,
    MCPServerSse,
    MCPServerStdio,
    MCPServerStreamableHttp,
    ToolFilterContext,
)
from loguru import logger

from mcp_sentinel.config import HttpMcpServer, StdioMcpServer
from mcp_sentinel.models import IncidentCard
from mcp_sentinel.telemetry.metrics import SentinelMetrics

McpSettings = StdioMcpServer | HttpMcpServer


class CardToolPolicy:
    """Which tools of which server each card may see, keyed by the agent's name (the card)."""

    def __init__(self, cards: list[IncidentCard]) -> None:
        self._allowed = {card.resource: card.tool_servers() for card in cards}

    def allows(self, card: str, server: str, tool: str) -> bool:
        servers = self._allowed.get(card, {})
        if server not in servers:
            return False
        tools = servers[server]
        return tools is None or tool in tools


def build_server(name: str, settings: McpSettings, policy: CardToolPolicy) -> MCPServer:
    """One openai-agents MCP server object for a configured server (not yet connected)."""

    def tool_filter(context: ToolFilterContext, tool: Any) -> bool:
        return policy.allows(context.agent.name, name, str(tool.name))

    common: dict[str, Any] = {
        "name": name,
        "cache_tools_list": True,
        "client_session_timeout_seconds": settings.timeout_seconds,
        "tool_filter": tool_filter,
    }
    if isinstance(settings, StdioMcpServer):
        params: dict[str, Any] = {
            "command": settings.command,
            "args": list(settings.args),
            "env": {key: value.get_secret_value() for key, value in settings.env.items()} or None,
        }
        if settings.cwd is not None:
            params["cwd"] = str(settings.cwd)
        return MCPServerStdio(params=params, **common)  # type: ignore[arg-type]
    headers = {key: value.get_secret_value() for key, value in settings.headers.items()}
    http_params: dict[str, Any] = {
        "url": settings.url,
        "headers": headers,
        "timeout": settings.timeout_seconds,
    }
    if settings.transport == "sse":
        return MCPServerSse(params=http_params, **common)  # type: ignore[arg-type]
    return MCPServerStreamableHttp(params=http_params, **common)  # type: ignore[arg-type]


class McpRegistry:
    """Owns the MCP connections for the daemon's life; ``servers_for(card)`` while open."""

    def __init__(
        self,
        servers: Mapping[str, McpSettings],
        cards: list[IncidentCard],
        metrics: SentinelMetrics,
        *,
        connect_timeout_seconds: float = 20.0,
    ) -> None:
        self._settings = dict(servers)
        self._policy = CardToolPolicy(cards)
        self._metrics = metrics
        self._servers = {
            name: build_server(name, config, self._policy) for name, config in servers.items()
        }
        self._manager = MCPServerManager(
            list(self._servers.values()),
            connect_timeout_seconds=connect_timeout_seconds,
            drop_failed_servers=True,
            strict=False,
        )
        self.failed: dict[str, str] = {}

    def settings(self, name: str) -> McpSettings:
        return self._settings[name]

    async def __aenter__(self) -> McpRegistry:
        if not self._servers:
            return self
        await self._manager.__aenter__()
        self._record_state()
        return self

    def _record_state(self) -> None:
        active = {server.name for server in self._manager.active_servers}
        self.failed = {}
        for name in self._servers:
            up = name in active
            self._metrics.mcp_server_up.labels(name).set(1 if up else 0)
            if up:
                logger.info("MCP server {server} connected", server=name)
                continue
            error = next(
                (repr(err) for srv, err in self._manager.errors.items() if srv.name == name),
                "failed to connect",
            )
            self.failed[name] = error
            logger.error("MCP server {server} is unavailable: {error}", server=name, error=error)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._servers:
            await self._manager.__aexit__(exc_type, exc, traceback)

    def servers_for(self, card: IncidentCard) -> tuple[list[MCPServer], list[str]]:
        """The connected servers the card uses, and the names of those it wants but lacks."""
        wanted = card.tool_servers()
        active = {server.name: server for server in self._manager.active_servers}
        servers = [active[name] for name in wanted if name in active]
        missing = [name for name in wanted if name not in active]
        return servers, missing
