"""The dispatcher: routes and dedupes notifications, queues incidents, runs the workers.

Workers: ``worker_concurrency`` investigation slots. A worker takes an incident from the queue
only while holding a slot, and its handler gives the slot back once the scarce part (the agent
run) is over, so the next incident starts while the last one's report is still being
delivered (the audit log's write and fsync, the outbox commit). Twice as many worker tasks as
slots run, so at most ``worker_concurrency`` incidents are investigated at once and at most as
many more are delivering.

Lifecycle (``async with Dispatcher(...)``): entering starts the worker tasks in a TaskGroup;
``shutdown()`` stops intake (``dispatch`` answers REJECTED from then on), waits up
to ``drain_timeout`` for the queue to empty and running incidents to finish, then cancels what is
left: a cancelled worker ``release``s its incident, which a durable queue runs again after the
next start (and keeps whatever was still queued). Leaving the context calls ``shutdown()`` if
nobody did.

Health: ``health`` callables (the state database, the audit sink) name a problem or return
None. While one names a problem the dispatcher is not ``accepting``: ``dispatch`` answers
REJECTED, the webhook 503 and ``/readyz`` 503, rather than accepting what it could not keep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from loguru import logger

from mcp_sentinel.dispatcher.dedupe import DedupeStore
from mcp_sentinel.dispatcher.lifecycle import IncidentTracker
from mcp_sentinel.dispatcher.queue import QueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.models import (
    DedupeKey,
    DispatchOutcome,
    Incident,
    IncidentNotification,
    PayloadOrigin,
    new_incident_id,
)
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.telemetry.tracing import current_traceparent

_QUEUED, _DUPLICATE = DispatchOutcome.QUEUED, DispatchOutcome.DUPLICATE
_UNROUTED, _REJECTED = DispatchOutcome.UNROUTED, DispatchOutcome.REJECTED


class IncidentHandler(Protocol):
    """Investigates one incident and delivers its report. Must not raise for a failed analysis:
    a failure is a report with outcome ``analysis_failed``. Runs on a worker task.

    ``release_slot`` gives the worker's investigation slot to the next incident: call it once
    what the slots ration (the agent run) is over, before the delivery. Calling it is
    optional (the slot comes back when ``handle`` returns) and a second call does nothing.
    The incident is finished (``task_done``) only when ``handle`` returns."""

    async def handle(self, incident: Incident, release_slot: Callable[[], None]) -> None: ...


class _Slot:
    """One worker's hold on an investigation slot; ``release`` is idempotent."""

    __slots__ = ("_held", "_slots")

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


@dataclass(slots=True)
class DispatchResult:
    """What happened to each notification of one ``dispatch`` call, in order. One per payload
    on the intake path, so not ``frozen`` (that costs ~2 µs more to build); treat it as
    immutable."""

    outcomes: tuple[DispatchOutcome, ...]

    @property
    def accepted(self) -> bool:
        """True when nothing was rejected: every alert is queued, a duplicate, or unrouted."""
        return DispatchOutcome.REJECTED not in self.outcomes

    def count(self, outcome: DispatchOutcome) -> int:
        return self.outcomes.count(outcome)


class _QueueWrite:
    """One payload's ``put_all`` in progress, on a queue whose write suspends (a durable one).
    Its future is made only for a payload that has to wait for it: most writes are waited on
    by nobody."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def finished(self) -> asyncio.Future[None]:
        """Done once the write is over, whatever its outcome."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        return self._future

    def finish(self) -> None:
        if self._future is not None:
            self._future.set_result(None)


class Dispatcher:
    """Owns the workers; the dedupe store and the queue backend are passed in and not closed.

    With the SQLite backend, the queue is built with the dedupe store (``sqlite_queue``): its
    ``put_all`` commits the incidents and their dedupe keys in one transaction, and the
    ``remember_all`` that follows here finds them already remembered.
    """

    def __init__(
        self,
        *,
        router: CardRouter,
        dedupe: DedupeStore,
        queue: QueueBackend,
        handler: IncidentHandler,
        metrics: SentinelMetrics,
        worker_concurrency: int,
        drain_timeout: float,
        tracker: IncidentTracker | None = None,
        health: Sequence[Callable[[], str | None]] = (),
        traced: bool = True,
        dedupe_purge_interval: float = 60.0,
    ) -> None:
        """``traced`` False (tracing is off) skips looking for the caller's span to carry
        with each incident: there is none, and the look costs ~2 µs per payload.
        ``dedupe_purge_interval``: how often, in seconds, the expired dedupe keys are dropped
        while no new alert arrives (new ones drop them as they come)."""
        if dedupe_purge_interval <= 0:
            raise ValueError("dedupe_purge_interval must be positive")
        self._dedupe_purge_interval = dedupe_purge_interval
        self._router = router
        self._traced = traced
        self._tracker = tracker
        self._dedupe = dedupe
        self._queue = queue
        self._handler = handler
        self._metrics = metrics
        self._dispatched = {
            outcome: metrics.alerts_dispatched.labels(outcome.value) for outcome in DispatchOutcome
        }
        self._worker_concurrency = worker_concurrency
        self._slots = asyncio.Semaphore(worker_concurrency)
        self._drain_timeout = drain_timeout
        self._health = tuple(health)
        self._accepting = False
        # Held across the dedupe check and the enqueue, so two payloads carrying the same alert
        # cannot both be queued, and a refused payload never leaves its keys marked as seen.
        # Dedupe keys being written by a payload's queue write, and the write's completion.
        self._in_flight: dict[DedupeKey, _QueueWrite] = {}
        self._task_group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []  # the workers and the dedupe purge
        self._stopped = asyncio.Event()
        metrics.queue_capacity.set(queue.capacity)
        # Read when scraped: nothing to update per payload or per incident taken.
        metrics.queue_depth.set_function(queue.depth)

    @property
    def accepting(self) -> bool:
        """True while running and healthy: intake is taken only then."""
        return self._accepting and self.problem is None

    @property
    def problem(self) -> str | None:
        """Why alerts are refused now (starting, stopping, or a health problem), else None."""
        if not self._accepting:
            return "starting up or shutting down"
        for check in self._health:
            problem = check()
            if problem is not None:
                return problem
        return None

    @property
    def queue(self) -> QueueBackend:
        return self._queue

    @property
    def dedupe_entries(self) -> int:
        return len(self._dedupe)

    async def __aenter__(self) -> Dispatcher:
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._tasks = [
            self._task_group.create_task(self._work(index), name=f"sentinel-worker-{index}")
            # Twice the slots: a worker delivering its report holds none (see the module doc).
            for index in range(2 * self._worker_concurrency)
        ]
        self._tasks.append(
            self._task_group.create_task(self._purge_dedupe(), name="sentinel-dedupe-purge")
        )
        self._accepting = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.shutdown()
        assert self._task_group is not None
        # The workers are cancelled by now; the caller's own exception propagates by itself
        # (handing it to the group would wrap it in an ExceptionGroup).
        await self._task_group.__aexit__(None, None, None)

    async def dispatch(
        self, notifications: Sequence[IncidentNotification], *, body: bytes | None = None
    ) -> DispatchResult:
        """Route, dedupe and queue one batch (one webhook payload): all of it or none of it.

        A batch that the queue cannot take whole is REJECTED whole and nothing of it is
        remembered, so the sender's retry is treated as new. Unrouted alerts are counted and
        logged; they are not queued. ``body``, for a batch parsed from a webhook payload, is
        that payload as it arrived (``notifications[i]`` from its ``alerts[i]``): the queue
        gets it with the queued incidents' places in it (``PayloadOrigin``).
        """
        if not self.accepting:
            return self._finish([_REJECTED] * len(notifications))
        # ``notification.dedupe_key`` spelled out, once per alert: this runs per alert of a
        # storm, and the property call costs more than the tuple.
        keys = [(n.fingerprint, n.starts_at, n.status) for n in notifications]
        if self._in_flight:
            # An alert of this payload may be in another payload's write right now: whether
            # this one is a duplicate depends on that write, so wait for it and classify
            # afterwards.
            await self._wait_for_writes_of(keys)
            if not self.accepting:  # shutdown began (or a health problem) while we waited
                return self._finish([_REJECTED] * len(notifications))
        # From here to the queue's write nothing awaits, so no other payload interleaves with
        # the classification; the write itself is awaited without a lock, so the durable
        # queue commits the payloads that arrive meanwhile together (one fsync for all).
        # This loop runs per alert of a storm: attribute lookups are hoisted.
        outcomes: list[DispatchOutcome] = []
        fresh: list[Incident] = []
        fresh_keys: list[DedupeKey] = []
        positions: list[int] = []
        batch_keys: set[DedupeKey] = set()
        unrouted: list[str] = []
        traceparent = current_traceparent() if self._traced else None
        now = time.monotonic()
        # One call (and one clock reading) for the payload's keys, not one per alert: a storm's
        # repeats then dispatched in 0.4-0.7 µs per alert instead of 0.5-0.9
        # (benchmarks/dispatch_overhead.py, duplicates, three runs of each).
        unseen = self._dedupe.fresh(keys)
        route = self._router.route
        for position, (notification, key, is_new) in enumerate(
            zip(notifications, keys, unseen, strict=True)
        ):
            if not is_new or key in batch_keys:
                outcomes.append(_DUPLICATE)
                continue
            card = route(notification.labels)
            if card is None:
                outcomes.append(_UNROUTED)
                unrouted.append(notification.alertname or "<no alertname>")
                continue
            batch_keys.add(key)
            fresh_keys.append(key)
            positions.append(position)
            fresh.append(Incident(notification, card, new_incident_id(), now, traceparent))
            outcomes.append(_QUEUED)
        if unrouted:
            # One line per payload, not per alert: a storm of unrouted alerts must not
            # become a storm of log lines.
            names = sorted(set(unrouted))
            logger.warning(
                "{count} unrouted alert(s) ({names}): no incident card matches and no "
                "default card is configured",
                count=len(unrouted),
                names=", ".join(names[:10])
                + (f" and {len(names) - 10} more" if len(names) > 10 else ""),
            )
        if fresh:
            origin = PayloadOrigin(body, positions) if body is not None else None
            if self._queue.writes_at_once:
                taken = await self._queue.put_all(fresh, origin)
            else:
                taken = await self._write(fresh, fresh_keys, origin)
            if not taken:
                return self._finish([_REJECTED] * len(notifications))
            # No await since the write: a payload waiting on it sees these keys remembered.
            self._dedupe.remember_all(fresh_keys)
            if self._tracker is not None:
                for incident in fresh:
                    if incident.notification.status == "resolved":
                        self._tracker.resolve(incident.notification.key)
        return self._finish(outcomes)

    async def _wait_for_writes_of(self, keys: Sequence[DedupeKey]) -> None:
        """Until none of ``keys`` is in a queue write still under way."""
        in_flight = self._in_flight
        # Usually none of them is (a storm's repeats arrive after their first write): checked
        # in C before any write is looked up.
        while in_flight and not in_flight.keys().isdisjoint(keys):
            writes = {write for key in keys if (write := in_flight.get(key)) is not None}
            if not writes:
                return
            await asyncio.wait([write.finished() for write in writes])

    async def _write(
        self, fresh: list[Incident], keys: list[DedupeKey], origin: PayloadOrigin | None
    ) -> bool:
        """``put_all`` for a queue whose write suspends: while it is under way, its keys are
        in flight, and a payload holding one of them waits for the write's outcome."""
        write = _QueueWrite()
        for key in keys:
            self._in_flight[key] = write
        try:
            return await self._queue.put_all(fresh, origin)
        finally:
            for key in keys:
                del self._in_flight[key]
            write.finish()

    async def _purge_dedupe(self) -> None:
        """Every ``dedupe_purge_interval``, the expired dedupe keys dropped: after a storm
        the daemon lets go of its keys once their TTL passed, not at the next alert."""
        while True:
            await asyncio.sleep(self._dedupe_purge_interval)
            if dropped := self._dedupe.purge():
                logger.debug("dropped {count} expired dedupe key(s)", count=dropped)

    def _finish(self, outcomes: list[DispatchOutcome]) -> DispatchResult:
        if len(outcomes) == 1:  # the common one-alert payload
            self._dispatched[outcomes[0]].inc()
        else:
            # Four scans in C: cheaper than building a collections.Counter of the outcomes.
            for outcome, counter in self._dispatched.items():
                if count := outcomes.count(outcome):
                    counter.inc(count)
        return DispatchResult(tuple(outcomes))

    async def _work(self, index: int) -> None:
        slots = self._slots
        while True:
            await slots.acquire()
            slot = _Slot(slots)
            try:
                # Taken from the queue only with a slot in hand: an incident waits in the
                # queue (where another replica may take it), not on a worker.
                incident = await self._queue.get()
            except BaseException:
                slot.release()
                raise
            self._metrics.queue_wait.observe(time.monotonic() - incident.enqueued_monotonic)
            try:
                await self._handler.handle(incident, slot.release)
            except asyncio.CancelledError:
                # Not finished: a durable queue runs it again after the next start.
                self._queue.release(incident)
                logger.warning(
                    "worker {index} cancelled during incident {incident_id}",
                    index=index,
                    incident_id=incident.incident_id,
                )
                raise
            except Exception:
                # A handler bug: running it again would fail again, so it counts as done.
                logger.exception(
                    "incident {incident_id} failed in its handler", incident_id=incident.incident_id
                )
            finally:
                slot.release()
            self._queue.task_done(incident)

    async def shutdown(self) -> None:
        """Stop intake, drain within the grace period, then cancel the workers. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._accepting = False
        pending = self._queue.depth() + self._queue.in_progress()
        if pending:
            logger.info(
                "draining {pending} incident(s), up to {timeout}s",
                pending=pending,
                timeout=self._drain_timeout,
            )
        try:
            async with asyncio.timeout(self._drain_timeout):
                await self._queue.join()
        except TimeoutError:
            logger.error(
                "drain timeout after {timeout}s: {queued} queued and {running} running incident(s) "
                "not finished (a durable queue keeps them for the next start)",
                timeout=self._drain_timeout,
                queued=self._queue.depth(),
                running=self._queue.in_progress(),
            )
        for task in self._tasks:
            task.cancel()
