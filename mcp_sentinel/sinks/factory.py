"""Builds the configured sinks and the fan-out that delivers to them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TextIO

from loguru import logger

from mcp_sentinel.sinks.audit import AuditSink
from mcp_sentinel.sinks.base import Sink, SinkFanout
from mcp_sentinel.sinks.console import ConsoleSink
from mcp_sentinel.sinks.settings import SinksSettings
from mcp_sentinel.telemetry.metrics import SentinelMetrics


async def open_sinks(
    settings: SinksSettings,
    *,
    resolve: Callable[[Path], Path],
    metrics: SentinelMetrics,
    stack: AsyncExitStack,
    console_stream: TextIO | None = None,
) -> SinkFanout:
    """Open every enabled sink on ``stack`` (closed when it closes) and return the fan-out.

    ``resolve`` makes config paths absolute (against the config file's directory).
    """
    sinks: dict[str, Sink] = {}
    if settings.console.enabled:
        sinks["console"] = ConsoleSink(console_stream)
    if settings.audit.enabled:
        audit_path = resolve(settings.audit.path)
        sinks["audit"] = await stack.enter_async_context(AuditSink(audit_path))
        logger.info("audit log: {path}", path=audit_path)
    return SinkFanout(sinks, metrics)
