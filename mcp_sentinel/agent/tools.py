"""The MCP tool registry: every configured MCP server, connected once and shared by incidents.

``McpRegistry`` is an async context manager around openai-agents' ``MCPServerManager``: entering
connects every local server (one that fails is reported and left out; the others work), leaving
closes them. A background task (``_supervise``) keeps them up for the registry's life: it
retries failed servers with backoff, and asks each connected one for its tool list every
``health_check_seconds``; a server that stopped answering (its process died, its endpoint went
away) is marked failed, ``sentinel_mcp_server_up`` turns 0, and it is reconnected at once and
then with backoff. The server objects stay the same, so incidents use a reconnected server
again; a call made while it was down failed as data (the SDK hands the model the error).
Each server carries:

- a dynamic tool filter, so one shared connection shows each card only the tools its
  ``tools`` list allows;
- the validator pipeline as SDK tool guardrails (see ``guardrails``);
- an approval policy: mutating tools need approval when the tool policy says ``required``.

Hosted servers (``transport: hosted``) are not connected here: they become ``HostedMCPTool``s
that the model provider calls, with the same pipeline deciding their approval requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from agents import HostedMCPTool, MCPToolApprovalFunctionResult, MCPToolApprovalRequest
from agents.mcp import (
    MCPServer,
    MCPServerManager,
    MCPServerSse,
    MCPServerStdio,
    MCPServerStreamableHttp,
    ToolFilterContext,
)
from loguru import logger

from mcp_sentinel.agent.context import InvestigationContext
from mcp_sentinel.agent.guardrails import ToolGuard, parse_arguments
from mcp_sentinel.config import HostedMcpServer, HttpMcpServer, StdioMcpServer
from mcp_sentinel.models import IncidentCard
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.validators.actions import ToolCall
from mcp_sentinel.validators.pipeline import ValidatorPipeline

McpSettings = StdioMcpServer | HttpMcpServer | HostedMcpServer
LocalMcpSettings = StdioMcpServer | HttpMcpServer

_RECONNECT_FIRST_DELAY = 2.0
_RECONNECT_MAX_DELAY = 120.0
_HEALTH_CHECK_SECONDS = 5.0
_PING_TIMEOUT_SECONDS = 5.0


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

    def allowed_tools(self, card: str, server: str) -> frozenset[str] | None:
        return self._allowed.get(card, {}).get(server)


def build_server(
    name: str,
    settings: LocalMcpSettings,
    policy: CardToolPolicy,
    guard: ToolGuard,
    *,
    approval_required: bool,
    wrap_class: Callable[[type[Any]], type[Any]] | None = None,
) -> MCPServer:
    """One openai-agents MCP server object for a configured server (not yet connected)."""

    def tool_filter(context: ToolFilterContext, tool: Any) -> bool:
        return policy.allows(context.agent.name, name, str(tool.name))

    def needs_approval(run_context: Any, agent: Any, tool: Any) -> bool:
        return approval_required and guard.is_mutating(str(tool.name))

    common: dict[str, Any] = {
        "name": name,
        "cache_tools_list": True,
        "client_session_timeout_seconds": settings.timeout_seconds,
        "tool_filter": tool_filter,
        "require_approval": needs_approval,
        "tool_input_guardrails": guard.input_guardrails(),
        "tool_output_guardrails": guard.output_guardrails(),
        "custom_data_extractor": guard.note_result,
    }
    server_class, params = transport_params(settings)
    if wrap_class is not None:
        server_class = wrap_class(server_class)
    server: MCPServer = server_class(params=params, **common)
    return server


def transport_params(settings: LocalMcpSettings) -> tuple[Any, dict[str, Any]]:
    """The SDK server class for a local server's transport, and its connection parameters
    (secrets unwrapped here, at the last moment)."""
    if isinstance(settings, StdioMcpServer):
        params: dict[str, Any] = {
            "command": settings.command,
            "args": list(settings.args),
            "env": {key: value.get_secret_value() for key, value in settings.env.items()} or None,
        }
        if settings.cwd is not None:
            params["cwd"] = str(settings.cwd)
        return MCPServerStdio, params
    http_params: dict[str, Any] = {
        "url": settings.url,
        "headers": {key: value.get_secret_value() for key, value in settings.headers.items()},
        "timeout": settings.timeout_seconds,
    }
    if settings.transport == "sse":
        return MCPServerSse, http_params
    return MCPServerStreamableHttp, http_params


class McpRegistry:
    """Owns the MCP connections for the daemon's life; ``servers_for(card)`` while open."""

    def __init__(
        self,
        servers: Mapping[str, McpSettings],
        cards: list[IncidentCard],
        metrics: SentinelMetrics,
        pipeline: ValidatorPipeline,
        *,
        approval_required: bool = False,
        connect_timeout_seconds: float = 20.0,
        wrap_class: Callable[[type[Any]], type[Any]] | None = None,
        health_check_seconds: float = _HEALTH_CHECK_SECONDS,
    ) -> None:
        """``wrap_class`` subclasses each server's SDK class (replay records or replaces the
        transport with it); everything else about the server stays the same."""
        self._policy = CardToolPolicy(cards)
        self._metrics = metrics
        self._pipeline = pipeline
        self._guards: dict[str, ToolGuard] = {}
        self._servers: dict[str, MCPServer] = {}
        self._hosted: dict[str, HostedMcpServer] = {}
        for name, config in servers.items():
            guard = ToolGuard(
                name,
                read_only_tools=frozenset(config.read_only_tools),
                max_output_chars=config.max_output_chars,
                pipeline=pipeline,
            )
            self._guards[name] = guard
            if isinstance(config, HostedMcpServer):
                self._hosted[name] = config
            else:
                self._servers[name] = build_server(
                    name,
                    config,
                    self._policy,
                    guard,
                    approval_required=approval_required,
                    wrap_class=wrap_class,
                )
        self._manager = MCPServerManager(
            list(self._servers.values()),
            connect_timeout_seconds=connect_timeout_seconds,
            drop_failed_servers=True,
            strict=False,
            # One worker task per server keeps each connection's connect and cleanup on the
            # same task, so the background reconnect may run on another task.
            connect_in_parallel=True,
        )
        self.failed: dict[str, str] = {}
        self._health_check_seconds = health_check_seconds
        self._ping_timeouts = {
            name: min(_PING_TIMEOUT_SECONDS, config.timeout_seconds)
            for name, config in servers.items()
        }
        self._task_group: asyncio.TaskGroup | None = None
        self._reconnector: asyncio.Task[None] | None = None

    async def __aenter__(self) -> McpRegistry:
        if not self._servers:
            return self
        await self._manager.__aenter__()
        self._record_state()
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._reconnector = self._task_group.create_task(
            self._supervise(), name="sentinel-mcp-reconnect"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._servers:
            return
        if self._reconnector is not None:
            self._reconnector.cancel()
        if self._task_group is not None:
            await self._task_group.__aexit__(None, None, None)
        await self._manager.__aexit__(exc_type, exc, traceback)

    def _record_state(self) -> None:
        active = {server.name for server in self._manager.active_servers}
        previously_failed = set(self.failed)
        self.failed = {}
        for name in self._servers:
            up = name in active
            self._metrics.mcp_server_up.labels(name).set(1 if up else 0)
            if up:
                if name in previously_failed or not previously_failed:
                    logger.info("MCP server {server} connected", server=name)
                continue
            error = next(
                (
                    f"{type(err).__name__}: {err}"
                    for server, err in self._manager.errors.items()
                    if server.name == name
                ),
                "failed to connect",
            )
            self.failed[name] = error
            if name not in previously_failed:
                logger.error(
                    "MCP server {server} is unavailable: {error}; incidents run without its "
                    "tools while it is retried in the background",
                    server=name,
                    error=error,
                )

    async def _supervise(self) -> None:
        """For the registry's life: retry the failed servers with exponential backoff; while
        none is failed, ping the connected ones every ``health_check_seconds`` and reconnect
        one that stopped answering at once (it was healthy until now)."""
        delay = _RECONNECT_FIRST_DELAY
        while True:
            if self.failed:
                await asyncio.sleep(delay)
                await self._reconnect_failed()
                delay = min(delay * 2, _RECONNECT_MAX_DELAY)
                continue
            delay = _RECONNECT_FIRST_DELAY
            await asyncio.sleep(self._health_check_seconds)
            if await self._mark_unresponsive():
                await self._reconnect_failed()

    async def _reconnect_failed(self) -> None:
        try:
            await self._manager.reconnect(failed_only=True)
        except Exception as exc:
            logger.warning("MCP reconnect attempt failed: {error}", error=repr(exc))
        self._record_state()

    async def _mark_unresponsive(self) -> bool:
        """Ping every connected server; mark those that do not answer as failed. True when
        one was."""
        dead = False
        for server in self._manager.active_servers:
            # A server without a session (a replay cassette) has nothing to ping.
            session = getattr(server, "session", None)
            if session is None:
                continue
            try:
                async with asyncio.timeout(self._ping_timeouts.get(server.name, 5.0)):
                    # Not ``ping``: the protocol version mcp 2.x negotiates has no such method
                    # (servers answer "Method not found"), so a ping marked every live server
                    # dead. ``tools/list`` is in every version and is what the agent needs.
                    await session.list_tools()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                logger.error(
                    "MCP server {server} stopped answering ({error}); reconnecting it",
                    server=server.name,
                    error=error,
                )
                # The manager has no public way to say a connected server died; this is what
                # its own connect path records (agents 0.24, pinned below 0.25). The next
                # reconnect(failed_only=True) then cleans the dead connection up and connects.
                self._manager._record_failure(server, exc, phase="health check")
                self.failed[server.name] = error
                self._metrics.mcp_server_up.labels(server.name).set(0)
                dead = True
        return dead

    def servers_for(self, card: IncidentCard) -> tuple[list[MCPServer], list[str]]:
        """The connected servers the card uses, and the names of those it wants but lacks."""
        wanted = [name for name in card.tool_servers() if name not in self._hosted]
        active = {server.name: server for server in self._manager.active_servers}
        servers = [active[name] for name in wanted if name in active]
        missing = [name for name in wanted if name not in active]
        return servers, missing

    def hosted_tools_for(self, card: IncidentCard) -> list[HostedMCPTool]:
        """``HostedMCPTool``s for the card's hosted servers, restricted to its allowed tools."""
        tools = []
        for name in card.tool_servers():
            config = self._hosted.get(name)
            if config is None:
                continue
            allowed = self._policy.allowed_tools(card.resource, name)
            if allowed is None and config.allowed_tools is not None:
                allowed = frozenset(config.allowed_tools)
            elif allowed is not None and config.allowed_tools is not None:
                allowed = allowed & frozenset(config.allowed_tools)
            tool_config: dict[str, Any] = {
                "type": "mcp",
                "server_label": config.server_label or name,
                "server_url": config.server_url,
                "require_approval": config.require_approval,
                "headers": {k: v.get_secret_value() for k, v in config.headers.items()},
            }
            if allowed is not None:
                tool_config["allowed_tools"] = sorted(allowed)
            tools.append(
                HostedMCPTool(
                    tool_config=tool_config,  # type: ignore[arg-type]
                    on_approval_request=self._hosted_approval(name),
                )
            )
        return tools

    def _hosted_approval(self, server: str) -> Any:
        guard = self._guards[server]

        async def decide(request: MCPToolApprovalRequest) -> MCPToolApprovalFunctionResult:
            run: InvestigationContext = request.ctx_wrapper.context
            tool = str(request.data.name)
            action = ToolCall(
                card=run.card.resource,
                incident_id=run.validation.incident_id,
                server=server,
                tool=tool,
                arguments=parse_arguments(str(request.data.arguments or "")),
                mutating=guard.is_mutating(tool),
            )
            result = await self._pipeline.run(action, run.validation)
            run.facts.decisions.extend(result.decisions)
            if result.rejected is not None:
                return {"approve": False, "reason": result.rejected}
            return {"approve": True}

        return decide
