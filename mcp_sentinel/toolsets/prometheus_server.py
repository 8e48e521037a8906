"""The read-only Prometheus toolset as an MCP server (``sentinel mcp prometheus``).

Tools: ``query``, ``query_range``, ``alerts``, ``rules``, ``targets``, ``label_names``,
``label_values``, ``metadata`` (``TOOL_NAMES``). Each answers compact text bounded by
``OutputLimits``; a failure (bad PromQL, an unreadable time, Prometheus unreachable or slow) is
an MCP tool error (``is_error``) with a readable message, never a crash of the server.

Lifecycle: ``serve_stdio`` and ``serve_http`` own the ``PrometheusClient`` (opened before the
first request, closed on return) and run until stdin closes (stdio) or SIGTERM/SIGINT (HTTP,
handled by uvicorn). stdout belongs to the stdio protocol: nothing else is written there.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time as _time
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Annotated, Any, Literal

import uvicorn
from mcp.server.mcpserver import MCPServer as McpServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_sentinel.toolsets import render
from mcp_sentinel.toolsets.bounds import OutputLimits, truncate_text
from mcp_sentinel.toolsets.prometheus_client import ApiResult, PrometheusClient, PrometheusError
from mcp_sentinel.toolsets.timeparse import (
    default_step,
    format_duration,
    format_time,
    parse_duration,
    parse_time,
)

TOOL_NAMES: tuple[str, ...] = (
    "query",
    "query_range",
    "alerts",
    "rules",
    "targets",
    "label_names",
    "label_values",
    "metadata",
)
"""Every tool this server offers; all are read-only."""

HTTP_PATH = "/mcp"
_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=True)
_INSTRUCTIONS = (
    "Read-only access to one Prometheus. Start with targets() or alerts() for an overview, "
    "label_values('job') to learn names, then query()/query_range() with PromQL. Range queries "
    "return a summary per series (min, max, mean, last, trend), not raw points."
)

PromQL = Annotated[str, Field(description='A PromQL expression, e.g. up{job="api"} == 0')]
TimeArg = Annotated[
    str | None,
    Field(description="RFC3339, Unix seconds, 'now', or relative like -1h / now-30m"),
]
Selectors = Annotated[
    list[str] | None,
    Field(description="Series selectors (match[]) to restrict to, e.g. ['up{job=\"api\"}']"),
]


def build_server(
    client: PrometheusClient,
    limits: OutputLimits,
    *,
    clock: Callable[[], float] = _time.time,
) -> McpServer[Any]:
    """An MCP server whose tools read from ``client``; the caller owns the client."""
    server: McpServer[Any] = McpServer(
        "sentinel-prometheus", instructions=_INSTRUCTIONS, log_level="WARNING"
    )

    async def answer(call: Callable[[], Awaitable[list[str]]]) -> str:
        try:
            lines = await call()
        except PrometheusError as exc:
            raise ToolError(str(exc)) from None
        except ValueError as exc:
            # Argument problems (an unreadable time, a bad step): the model can fix those.
            raise ToolError(str(exc)) from None
        return truncate_text("\n".join(lines), limits.max_chars)

    def tool(description: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return server.tool(description=description, annotations=_READ_ONLY, structured_output=False)

    @tool("Instant PromQL query: the value of each matching series at one time (default now).")
    async def query(promql: PromQL, time: TimeArg = None) -> str:
        async def run() -> list[str]:
            at = None if time is None else parse_time(time, clock())
            result = await client.query(promql, at)
            lines = render.instant_result(promql, result.data, limits.max_series)
            return _with_warnings(result, lines)

        return await answer(run)

    @tool(
        "Range PromQL query summarised per series: min, max, mean, last value, trend "
        "(rising/falling/flat with slope per minute) and point count. Not raw points."
    )
    async def query_range(
        promql: PromQL,
        start: Annotated[str, Field(description="Window start; e.g. -1h, RFC3339")] = "-1h",
        end: Annotated[str, Field(description="Window end; e.g. now, RFC3339")] = "now",
        step: Annotated[
            str | None, Field(description="Resolution like 15s or 1m; default about 250 points")
        ] = None,
    ) -> str:
        async def run() -> list[str]:
            now = clock()
            start_at, end_at = parse_time(start, now), parse_time(end, now)
            if end_at <= start_at:
                raise ValueError(f"end ({end}) must be after start ({start})")
            step_s = parse_duration(step) if step else default_step(end_at - start_at)
            result = await client.query_range(promql, start_at, end_at, step_s)
            window = (
                f"{format_time(start_at)} to {format_time(end_at)}, step {format_duration(step_s)}"
            )
            series = result.data.get("result") or []
            lines = [window, *render.matrix_result(promql, series, limits.max_series)]
            return _with_warnings(result, lines)

        return await answer(run)

    @tool("Alerts Prometheus currently has pending or firing, with labels, since when and value.")
    async def alerts() -> str:
        async def run() -> list[str]:
            result = await client.alerts()
            return _with_warnings(result, render.alerts_result(result.data, limits.max_series))

        return await answer(run)

    @tool("Alerting and recording rules by group, with state, health and last error.")
    async def rules(
        type: Annotated[  # the Prometheus API's own parameter name
            Literal["alert", "record"] | None,
            Field(description="Only alerting ('alert') or recording ('record') rules"),
        ] = None,
    ) -> str:
        async def run() -> list[str]:
            result = await client.rules(type)
            return _with_warnings(result, render.rules_result(result.data, limits.max_series))

        return await answer(run)

    @tool(
        "Scrape target health grouped by job: up/down, last error, scrape duration. Jobs "
        "with targets down are listed first."
    )
    async def targets(
        job: Annotated[str | None, Field(description="Only targets of this job")] = None,
    ) -> str:
        async def run() -> list[str]:
            result = await client.targets()
            lines = render.targets_result(result.data, limits.max_series, job)
            return _with_warnings(result, lines)

        return await answer(run)

    @tool("Label names present in the TSDB, optionally only on series matching match[].")
    async def label_names(match: Selectors = None) -> str:
        async def run() -> list[str]:
            result = await client.label_names(match or ())
            return _with_warnings(result, render.names_result("label names", result.data or []))

        return await answer(run)

    @tool("Values of one label (e.g. job, instance), optionally only on series matching match[].")
    async def label_values(
        label: Annotated[str, Field(description="The label name, e.g. job")],
        match: Selectors = None,
    ) -> str:
        async def run() -> list[str]:
            result = await client.label_values(label, match or ())
            values = result.data or []
            return _with_warnings(result, render.names_result(f"values of {label}", values))

        return await answer(run)

    @tool("Type (counter, gauge, histogram, summary), unit and help text of a metric.")
    async def metadata(
        metric: Annotated[str, Field(description="A metric name, e.g. http_requests_total")],
    ) -> str:
        async def run() -> list[str]:
            result = await client.metadata(metric)
            data = result.data if isinstance(result.data, dict) else {}
            return _with_warnings(result, render.metadata_result(metric, data))

        return await answer(run)

    return server


def _with_warnings(result: ApiResult, lines: list[str]) -> list[str]:
    return [*lines, *(f"warning from Prometheus: {warning}" for warning in result.warnings)]


async def serve_stdio(client: PrometheusClient, limits: OutputLimits) -> None:
    """Serve over stdin/stdout until stdin closes."""
    async with client:
        await build_server(client, limits).run_stdio_async()


async def serve_http(
    client: PrometheusClient,
    limits: OutputLimits,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until SIGTERM or SIGINT; after
    SIGTERM it raises ``SystemExit(0)`` once uvicorn has shut down gracefully.

    The socket is bound here, before uvicorn starts, so that ``port=0`` works and
    ``on_listening`` (default: a line on stderr) gets the real URL.
    """
    server = build_server(client, limits)
    # On loopback the SDK turns on DNS-rebinding protection (Host/Origin checks) by itself.
    app = server.streamable_http_app(streamable_http_path=HTTP_PATH, host=host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening now, before uvicorn starts: a client told the URL below may connect at
        # once, and waits in the backlog instead of being refused.
        sock.listen(128)
        bound_port = sock.getsockname()[1]
        shown_host = f"[{host}]" if family == socket.AF_INET6 else host
        url = f"http://{shown_host}:{bound_port}{HTTP_PATH}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            timeout_graceful_shutdown=5,  # open SSE streams must not hold up SIGTERM for long
        )
        if threading.current_thread() is threading.main_thread():
            # uvicorn re-raises the signal that stopped it once it has shut down gracefully;
            # ending with status 0 then says "stopped as asked", not "killed".
            signal.signal(signal.SIGTERM, _exit_quietly)
        async with client:
            (on_listening or _announce)(url)
            await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _announce(url: str) -> None:
    print(f"sentinel mcp prometheus: listening on {url}", file=sys.stderr, flush=True)
