"""Which incidents are under investigation, so a resolution can cancel its investigation.

When Alertmanager says an alert resolved, investigating it further wastes the model and may
post a stale finding. ``IncidentTracker.resolve(key)`` is called by the dispatcher as soon as
a resolved notice is accepted: a running investigation of the same incident (fingerprint,
startsAt) is cancelled at once, and one still queued is skipped when a worker takes it. The
resolution itself is still queued and reported, so the sinks close the incident.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from mcp_sentinel.dispatcher.dedupe import DedupeCache

IncidentKey = tuple[str, datetime]


class IncidentTracker:
    """Owned by the app, shared by the dispatcher (which resolves) and the handler (which runs).

    Resolved keys are remembered for ``ttl_seconds`` (the dedupe TTL), enough for any queued
    investigation of the same incident to reach a worker.
    """

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._resolved = DedupeCache(ttl_seconds, clock=clock)
        self._running: dict[IncidentKey, asyncio.Task[object]] = {}

    def resolve(self, key: IncidentKey) -> bool:
        """Mark the incident resolved; cancel its running investigation. True if one was."""
        self._resolved.remember(key)
        task = self._running.get(key)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def is_resolved(self, key: IncidentKey) -> bool:
        return self._resolved.seen(key)

    @contextmanager
    def running(self, key: IncidentKey, task: asyncio.Task[object]) -> Iterator[None]:
        """Register ``task`` as the investigation of ``key`` while the block runs."""
        self._running[key] = task
        try:
            yield
        finally:
            if self._running.get(key) is task:
                del self._running[key]

    def running_count(self) -> int:
        return len(self._running)
