"""Sending dead letters again: ``sentinel sinks redeliver``.

``redeliver`` opens the configured sinks that have dead letters (or those named), delivers
each entry of ``<dead_letter_dir>/<sink>.jsonl`` once more through the sink itself (with its
usual retries), then rewrites the file: entries delivered are removed, the others stay with
their new error and one more attempt counted. Entries the daemon appends meanwhile are kept
(``deadletter.py`` explains the locking). An entry this version cannot read back stays too.
Entries are delivered oldest first, one at a time, so a sink's lifecycle stays in order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from loguru import logger

from mcp_sentinel.errors import ConfigError, ConfigProblem
from mcp_sentinel.sinks.deadletter import DeadLetterStore
from mcp_sentinel.sinks.delivery import safe_error
from mcp_sentinel.sinks.factory import Sleep, open_sink_objects
from mcp_sentinel.sinks.settings import SinksSettings


@dataclass(frozen=True, slots=True)
class RedeliveryResult:
    """What happened to one sink's dead letters."""

    sink: str
    path: Path
    delivered: int
    failed: int
    remaining: int  # entries left in the file, including any appended meanwhile
    skipped_reason: str | None = None  # set when the sink was not tried at all


async def redeliver(
    settings: SinksSettings,
    *,
    resolve: Callable[[Path], Path],
    sink_names: Collection[str] | None = None,
    console_stream: TextIO | None = None,
    sleep: Sleep | None = None,
) -> list[RedeliveryResult]:
    """Redeliver the dead letters of ``sink_names`` (default: every sink that has some).

    Raises ``ConfigError`` when a name given is not a configured, enabled sink.
    """
    store = DeadLetterStore(resolve(settings.dead_letter_dir))
    enabled = settings.enabled_names()
    if sink_names:
        unknown = [name for name in sink_names if name not in enabled]
        if unknown:
            raise ConfigError(
                [
                    ConfigProblem("--sink", f"{name!r} is not a configured and enabled sink")
                    for name in unknown
                ]
            )
        names = list(dict.fromkeys(sink_names))
    else:
        names = store.sinks_with_entries()
    results: list[RedeliveryResult] = []
    wanted = [name for name in names if name in enabled and store.read(name)]
    for name in names:
        if name not in enabled:
            path = store.path_for(name)
            results.append(
                RedeliveryResult(
                    name, path, 0, 0, len(store.read(name)), "not a configured, enabled sink"
                )
            )
        elif name not in wanted:
            results.append(RedeliveryResult(name, store.path_for(name), 0, 0, 0))
    if not wanted:
        return results
    async with AsyncExitStack() as stack:
        sinks = await open_sink_objects(
            settings,
            resolve=resolve,
            stack=stack,
            console_stream=console_stream,
            only=wanted,
            sleep=sleep,
        )
        for name in wanted:
            sink = sinks[name]
            delivered: set[str] = set()
            failing: dict[str, str] = {}
            for entry in store.read(name):
                try:
                    record = entry.record()
                except (KeyError, ValueError, TypeError) as exc:
                    failing[entry.id] = f"unreadable dead letter ({type(exc).__name__})"
                    continue
                try:
                    await sink.deliver(record)
                except Exception as exc:
                    failing[entry.id] = safe_error(exc)
                    logger.warning(
                        "redeliver {sink}: incident {incident_id} failed again: {error}",
                        sink=name,
                        incident_id=record.incident.incident_id,
                        error=failing[entry.id],
                    )
                else:
                    delivered.add(entry.id)
            remaining = await store.finish(name, delivered, failing)
            results.append(
                RedeliveryResult(
                    name, store.path_for(name), len(delivered), len(failing), remaining
                )
            )
    return sorted(results, key=lambda result: result.sink)
