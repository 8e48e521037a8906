"""Builds the configured pollers and runs them for the daemon's life.

``WatcherSet`` is entered by the app after the HTTP server starts (the dispatcher accepts by
then) and left before the dispatcher closes. Entering starts one task per poller in an
``asyncio.TaskGroup``; leaving cancels them and waits for them, each closing its own HTTP session.
A poller's ``run()`` never ends by itself: failures are logged and retried inside it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from loguru import logger

from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.watchers.alertmanager import AlertmanagerPoller
from mcp_sentinel.watchers.base import Intake, Watcher
from mcp_sentinel.watchers.prometheus import PrometheusPoller
from mcp_sentinel.watchers.settings import WatchersSettings

#: How long a watcher that crashed waits before it runs again.
RESTART_DELAY_SECONDS = 5.0


def build_watchers(
    settings: WatchersSettings, *, intake: Intake, metrics: SentinelMetrics
) -> list[Watcher]:
    """One poller per configured sub-section (none configured: an empty list)."""
    watchers: list[Watcher] = []
    if settings.prometheus is not None:
        watchers.append(PrometheusPoller(settings.prometheus, intake=intake, metrics=metrics))
    if settings.alertmanager is not None:
        watchers.append(AlertmanagerPoller(settings.alertmanager, intake=intake, metrics=metrics))
    return watchers


async def _supervise(watcher: Watcher, restart_delay: float) -> None:
    """Run ``watcher`` until cancelled. ``run()`` handles its own failures; should a bug escape
    it anyway, it is logged and the watcher restarted, because an exception leaving a TaskGroup
    task would cancel the task that entered the group: the whole daemon."""
    while True:
        try:
            await watcher.run()
        except Exception:
            logger.exception(
                "watcher {name} crashed; restarting it in {delay}s",
                name=watcher.name,
                delay=restart_delay,
            )
            await asyncio.sleep(restart_delay)
        else:
            logger.warning("watcher {name} stopped by itself", name=watcher.name)
            return


class WatcherSet:
    """An async context manager running every configured poller until it closes.

    ``watchers`` may be passed instead of being built from ``settings`` (tests, or a caller
    with its own ``Watcher``); the set owns their tasks, not the objects.
    """

    def __init__(
        self,
        settings: WatchersSettings,
        *,
        intake: Intake,
        metrics: SentinelMetrics,
        watchers: list[Watcher] | None = None,
        restart_delay_seconds: float = RESTART_DELAY_SECONDS,
    ) -> None:
        self.watchers = (
            watchers
            if watchers is not None
            else build_watchers(settings, intake=intake, metrics=metrics)
        )
        self._restart_delay = restart_delay_seconds
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def tasks(self) -> tuple[asyncio.Task[None], ...]:
        """The watchers' tasks (kept after leaving, all done by then)."""
        return tuple(self._tasks)

    async def __aenter__(self) -> WatcherSet:
        if not self.watchers:
            return self
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        self._tasks = [
            group.create_task(
                _supervise(watcher, self._restart_delay), name=f"sentinel-watcher-{watcher.name}"
            )
            for watcher in self.watchers
        ]
        logger.info("watchers running: {names}", names=", ".join(w.name for w in self.watchers))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        for task in self._tasks:
            task.cancel()
        # The caller's own exception propagates by itself; handing it to the group would wrap
        # it in an ExceptionGroup (the dispatcher closes its workers the same way).
        await group.__aexit__(None, None, None)
