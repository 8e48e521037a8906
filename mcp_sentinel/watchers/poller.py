"""The polling loop both pollers share: fetch, diff against what was known, dispatch.

A subclass says how to fetch one ``Snapshot`` (the alerts active now, keyed by incident key
(fingerprint, startsAt), and any the server itself reports as ended). ``Poller.run()`` does the
rest, on the task ``WatcherSet`` gives it, until that task is cancelled:

- The first successful poll seeds the state: with ``investigate_existing`` false the alerts
  already active are only recorded (a restart does not flood the queue); with true they are
  dispatched as firing.
- Afterwards a key not seen before is a firing notification; a known key that is gone (or
  reported ended) is a resolved notification with the same fingerprint and startsAt and
  ``endsAt`` = the server's end time or now. A re-fire has a new startsAt: a new key.
- Transitions are "owed" until the intake accepts them. They are dispatched one notification
  per ``dispatch`` call: the dispatcher takes a batch whole or not at all, so a batch larger
  than the free room in the queue would never fit. When the queue is full (or the intake is
  not accepting), what is left is tried again after the next poll: nothing is lost.
- A failed poll (unreachable, timeout, HTTP error, a body of the wrong shape) is logged once
  per failure streak and retried with exponential backoff and jitter up to a cap; the
  recovery is logged. Nothing but cancellation ends ``run()``.

Each poller owns its ``aiohttp.ClientSession``: opened when ``run()`` starts, closed when it
ends. ``sentinel_alerts_received_total{source, status}`` counts each transition once, when it is
found (seeded alerts that are not dispatched are not counted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from loguru import logger

from mcp_sentinel.dispatcher.lifecycle import IncidentKey
from mcp_sentinel.models import IncidentNotification, Source
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.watchers.base import Intake
from mcp_sentinel.watchers.http_client import Backoff, PollError, open_session
from mcp_sentinel.watchers.settings import (
    AlertmanagerWatcherSettings,
    PollerAuth,
    PrometheusWatcherSettings,
)

#: After a failure the delay starts at one interval and doubles, up to ten intervals or five
#: minutes, whichever is shorter (but never less than one interval).
_BACKOFF_INTERVALS = 10
_BACKOFF_CAP_SECONDS = 300.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def truncate_to_milliseconds(moment: datetime) -> datetime:
    """Alertmanager keeps times to the millisecond (Prometheus sends them so): a key built from
    a finer time would never equal the key of the same alert from the webhook."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one poll saw. ``active`` holds firing notifications; ``ended`` maps the keys the
    server reports as over to their end time."""

    active: dict[IncidentKey, IncidentNotification]
    ended: dict[IncidentKey, datetime] = field(default_factory=dict)


@dataclass(slots=True)
class PollerStatus:
    """Counters for logs, tests and health checks. Updated by the poller's own task only."""

    polls_ok: int = 0
    polls_failed: int = 0
    failure_streak: int = 0
    last_error: str | None = None
    seeded: bool = False
    known: int = 0
    owed: int = 0
    dispatched: int = 0


@dataclass(frozen=True, slots=True)
class PollerConfig:
    """What every poller needs besides its own settings."""

    url: str
    interval_seconds: float
    timeout_seconds: float
    auth: PollerAuth
    investigate_existing: bool

    @classmethod
    def of(cls, settings: PrometheusWatcherSettings | AlertmanagerWatcherSettings) -> PollerConfig:
        """The common part of a poller's settings."""
        return cls(
            url=settings.url,
            interval_seconds=settings.interval_seconds,
            timeout_seconds=settings.timeout_seconds,
            auth=settings.auth,
            investigate_existing=settings.investigate_existing,
        )


class Poller(ABC):
    """A ``Watcher`` that polls one HTTP API. Subclasses implement ``fetch``."""

    #: The ``source`` of its notifications and the ``source`` label of its metrics.
    source: Source

    def __init__(
        self,
        config: PollerConfig,
        *,
        intake: Intake,
        metrics: SentinelMetrics,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._intake = intake
        self._metrics = metrics
        self._clock = clock
        interval = config.interval_seconds
        cap = max(interval, min(interval * _BACKOFF_INTERVALS, _BACKOFF_CAP_SECONDS))
        self._backoff = Backoff(interval, cap, rng=rng)
        self._known: dict[IncidentKey, IncidentNotification] = {}
        self._owed: deque[IncidentNotification] = deque()
        self._blocked = False
        self._streak_started: float | None = None
        self.status = PollerStatus()

    @property
    def name(self) -> str:
        return self.source

    @abstractmethod
    async def fetch(self, session: aiohttp.ClientSession) -> Snapshot:
        """One poll. Raises ``PollError`` (with a message naming the problem) on failure."""

    async def run(self) -> None:
        """Poll every ``interval_seconds`` until cancelled. Owns the HTTP session."""
        loop = asyncio.get_running_loop()
        config = self._config
        logger.info(
            "{name} poller: polling {url} every {interval}s",
            name=self.name,
            url=config.url,
            interval=config.interval_seconds,
        )
        async with open_session(config.auth, config.timeout_seconds) as session:
            while True:
                started = loop.time()
                delay = await self._poll(session, loop)
                await self._deliver()
                if self.status.failure_streak == 0:
                    # A steady rhythm: the next poll is due one interval after this one began.
                    delay = config.interval_seconds - (loop.time() - started)
                await asyncio.sleep(max(0.0, delay))

    async def _poll(self, session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop) -> float:
        """Fetch and absorb one snapshot; the backoff delay after a failure, else 0."""
        try:
            snapshot = await self.fetch(session)
        except PollError as exc:
            return self._failed(str(exc), loop, None)
        except Exception as exc:  # a bug must not end the poller: log it and keep polling
            return self._failed(f"unexpected {type(exc).__name__}: {exc}", loop, exc)
        self._recovered(loop)
        self.status.polls_ok += 1
        self._absorb(snapshot)
        return 0.0

    def _failed(
        self, message: str, loop: asyncio.AbstractEventLoop, error: Exception | None
    ) -> float:
        status = self.status
        status.polls_failed += 1
        status.failure_streak += 1
        status.last_error = message
        delay = self._backoff.next_delay()
        if status.failure_streak == 1:
            self._streak_started = loop.time()
            # Once per streak: a server down for an hour must not write a line every poll.
            logger.opt(exception=error).warning(
                "{name} poller: {message}; retrying with backoff (next in {delay:.1f}s), "
                "and not logging again until it recovers",
                name=self.name,
                message=message,
                delay=delay,
            )
        else:
            logger.debug(
                "{name} poller: still failing ({count} in a row): {message}",
                name=self.name,
                count=status.failure_streak,
                message=message,
            )
        return delay

    def _recovered(self, loop: asyncio.AbstractEventLoop) -> None:
        status = self.status
        if status.failure_streak:
            started = self._streak_started if self._streak_started is not None else loop.time()
            logger.info(
                "{name} poller: recovered after {count} failed poll(s) over {seconds:.1f}s",
                name=self.name,
                count=status.failure_streak,
                seconds=loop.time() - started,
            )
        status.failure_streak = 0
        status.last_error = None
        self._streak_started = None
        self._backoff.reset()

    def _absorb(self, snapshot: Snapshot) -> None:
        """Turn the difference between what was known and ``snapshot`` into owed transitions."""
        status = self.status
        if not status.seeded:
            status.seeded = True
            self._known = dict(snapshot.active)
            status.known = len(self._known)
            if self._config.investigate_existing:
                for notification in snapshot.active.values():
                    self._owe(notification)
            elif snapshot.active:
                logger.info(
                    "{name} poller: {count} alert(s) already active at start-up recorded, not "
                    "investigated (investigate_existing is false)",
                    name=self.name,
                    count=len(snapshot.active),
                )
            return
        now = self._clock()
        for key, notification in snapshot.active.items():
            if key not in self._known:
                self._owe(notification)
        for key, notification in self._known.items():
            if key not in snapshot.active:
                ended = snapshot.ended.get(key, now)
                self._owe(
                    dataclasses.replace(
                        notification, status="resolved", ends_at=ended, received_at=now
                    )
                )
        self._known = dict(snapshot.active)
        status.known = len(self._known)

    def _owe(self, notification: IncidentNotification) -> None:
        self._metrics.alerts_received.labels(self.source, notification.status).inc()
        self._owed.append(notification)
        self.status.owed = len(self._owed)

    async def _deliver(self) -> None:
        """Dispatch what is owed, oldest first, until done or the intake refuses."""
        if not self._owed:
            return
        delivered = 0
        refused = not self._intake.accepting
        while self._owed and not refused:
            notification = self._owed[0]
            try:
                result = await self._intake.dispatch([notification])
            except Exception:  # keep it owed: the next poll tries again
                logger.exception("{name} poller: dispatch failed", name=self.name)
                refused = True
                break
            if not result.accepted:
                refused = True
                break
            self._owed.popleft()
            delivered += 1
        self.status.owed = len(self._owed)
        self.status.dispatched += delivered
        if delivered:
            logger.info(
                "{name} poller: dispatched {count} alert transition(s)",
                name=self.name,
                count=delivered,
            )
        if refused and not self._blocked:
            logger.warning(
                "{name} poller: the queue cannot take alerts now (full or not accepting); "
                "{owed} transition(s) kept and tried again after each poll",
                name=self.name,
                owed=len(self._owed),
            )
        elif not refused and self._blocked:
            logger.info("{name} poller: the queue takes alerts again", name=self.name)
        self._blocked = refused
