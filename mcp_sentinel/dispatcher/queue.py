"""Queue backends: where accepted incidents wait for a worker.

``QueueBackend`` is the seam; ``MemoryQueueBackend`` is a bounded priority queue in memory
(critical before warning before info, then first come first served), and
``sqlite_queue.SqliteQueueBackend`` the same queue kept in the state database, so that what was
accepted survives a restart. ``put_all`` is all or nothing, so a webhook payload is either taken
whole or refused whole and Alertmanager's retry of it is clean.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from mcp_sentinel.models import Incident, PayloadOrigin

_SEVERITY_RANK = {"critical": 0, "page": 0, "high": 1, "error": 1, "warning": 2, "info": 3}
_DEFAULT_RANK = 2


_rank_of = _SEVERITY_RANK.get

Waiting = TypeVar("Waiting")


def priority_of(incident: Incident) -> int:
    """Lower runs first: by the alert's ``severity`` label."""
    # The label read directly, not through ``IncidentNotification.severity``: this runs for
    # every alert a queue takes, and the property call is a third of its cost.
    return _rank_of(incident.notification.labels.get("severity", "").lower(), _DEFAULT_RANK)


class Unfinished:
    """How many incidents a queue holds that are not finished yet (queued or with a worker),
    and an event for "none": what every backend's ``join`` and ``task_done`` rest on."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        return self._count

    def add(self, count: int) -> None:
        if count:
            self._count += count
            self._idle.clear()

    def finish(self) -> None:
        """One is finished (done or released); ``ValueError`` when none was unfinished."""
        if self._count <= 0:
            raise ValueError("task_done called more times than incidents were taken")
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class QueueBackend(Protocol):
    """Holds accepted incidents until a worker takes them.

    ``put_all`` takes every incident or none (returns False when it cannot take them all); a
    durable backend returns only once they are committed. ``origin``, when the batch came from
    a webhook payload, is that payload's body and each incident's place in it: a backend may
    store it instead of the incidents' notifications, or ignore it. A worker calls ``get`` and then,
    with the same incident, ``task_done`` once it is finished (done: never run again) or
    ``release`` when it was stopped before finishing (a durable backend runs it again after the
    next start). ``join`` returns when nothing is queued or in progress. Everything is called
    on the event loop; the synchronous methods never block on a disk.
    """

    @property
    def capacity(self) -> int: ...

    @property
    def writes_at_once(self) -> bool:
        """True when ``put_all`` never suspends (in memory): no other payload runs while it
        writes, so the dispatcher has no write in progress to track for it."""
        ...

    def depth(self) -> int: ...

    async def put_all(
        self, incidents: Sequence[Incident], origin: PayloadOrigin | None = None
    ) -> bool: ...

    async def get(self) -> Incident: ...

    def task_done(self, incident: Incident) -> None: ...

    def release(self, incident: Incident) -> None: ...

    async def join(self) -> None: ...

    def in_progress(self) -> int: ...


class WaitingIncidents(Generic[Waiting]):
    """Incidents waiting for a worker: critical first, then in arrival order. ``get`` waits
    for one. Unbounded: the queue backends check their capacity before they push. What waits
    is the backend's choice: the incidents themselves, or what it makes them from again.

    One FIFO lane per priority (there are a handful), taken lowest first, and the waiting
    getters, woken one per pushed incident (as ``asyncio.Queue`` does inside). Not a heap of
    ``(priority, seq, incident)``: that entry held ~100 bytes per waiting incident beside
    the incident itself, a lane's slot holds 8, and a storm's queue holds every alert it
    took.
    """

    def __init__(self) -> None:
        self._lanes: dict[int, collections.deque[Waiting]] = {}
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()

    def __len__(self) -> int:
        return sum(map(len, self._lanes.values()))

    def push_all(self, incidents: Sequence[Waiting], priorities: Sequence[int]) -> None:
        """Queue ``incidents`` behind those of their priorities (their ``priority_of``)."""
        lanes = self._lanes
        for priority, incident in zip(priorities, incidents, strict=True):
            lane = lanes.get(priority)
            if lane is None:
                lane = lanes[priority] = collections.deque()
            lane.append(incident)
        if self._getters:
            self._wake(len(incidents))

    def push_front(self, incident: Waiting, priority: int) -> None:
        """Queue ``incident`` again ahead of its priority's others: one taken by ``get`` that
        its worker could not have after all (cancelled), so it keeps its turn."""
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = collections.deque()
        lane.appendleft(incident)
        if self._getters:
            self._wake(1)

    async def get(self) -> Waiting:
        while True:
            # Lowest priority first; sorted per take, which runs at investigation rate.
            for priority in sorted(self._lanes):
                if lane := self._lanes[priority]:
                    return lane.popleft()
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                # Woken, then cancelled before it ran: the wake-up goes to the next worker.
                if getter.done() and not getter.cancelled() and len(self):
                    self._wake(1)
                raise

    def _wake(self, count: int) -> None:
        getters = self._getters
        while count and getters:
            getter = getters.popleft()
            if not getter.done():  # a cancelled one is skipped here
                getter.set_result(None)
                count -= 1


class MemoryQueueBackend:
    """A bounded in-memory priority queue. Lost on exit: for tests, replay and small setups."""

    writes_at_once = True

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._waiting: WaitingIncidents[Incident] = WaitingIncidents()
        self._unfinished = Unfinished()

    @property
    def capacity(self) -> int:
        return self._capacity

    def depth(self) -> int:
        return len(self._waiting)

    def in_progress(self) -> int:
        return self._unfinished.count - len(self._waiting)

    async def put_all(
        self, incidents: Sequence[Incident], origin: PayloadOrigin | None = None
    ) -> bool:
        # Nothing here awaits: the batch is queued whole before any worker runs.
        if len(self._waiting) + len(incidents) > self._capacity:
            return False
        self._unfinished.add(len(incidents))
        self._waiting.push_all(incidents, [priority_of(incident) for incident in incidents])
        return True

    async def get(self) -> Incident:
        return await self._waiting.get()

    def task_done(self, incident: Incident) -> None:
        self._unfinished.finish()

    def release(self, incident: Incident) -> None:
        """The worker was stopped (shutdown): in memory there is no next start to hand it to."""
        self.task_done(incident)

    async def join(self) -> None:
        await self._unfinished.wait_idle()
