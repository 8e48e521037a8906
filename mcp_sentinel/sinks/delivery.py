"""``SinkDispatcher``: the fan-out to the sinks, apart from the workers.

Every sink gets a queue and one delivery task, all in one ``TaskGroup`` owned by the
dispatcher, so a slow or failing sink never holds back a worker or another sink, and one sink's
events keep their order (the "investigating" message before its update).

- Remote sinks (Slack, Jira, webhook): ``deliver`` and ``started`` only enqueue. A full queue
  (``queue_size``) sends the delivery straight to the dead-letter file instead of blocking the
  worker.
- Local sinks (``inline``: console, audit) are delivered by the worker itself, before
  ``deliver`` returns: they take microseconds to milliseconds, and the audit log promises that
  an incident's record is on disk once its worker is done with it. Their task only takes
  deliveries that failed: a local sink fails because of a local resource (a full disk), so it
  is retried with backoff until that comes back, never dead-lettered. While a ``gating`` sink
  (the audit log) has such failures, ``problem`` names it and the daemon refuses new alerts.

With an ``outbox`` (the SQLite backend, ``outbox.py``), ``deliver`` first stores the record
for every sink in the state database, in the transaction that also completes the incident;
each delivery is acknowledged once its sink took it. A remote delivery that fails with a
``RetryableError`` (after the sink's own retries) stays at the head of its sink's queue and is
tried again with backoff (``retry_initial`` doubling to ``retry_max`` seconds) until the sink
is back; what is left at shutdown stays in the outbox and is delivered after the next start.
With the ``redis`` backend the outbox is shared (``redis_sink_state.RedisOutbox``): it is
asked again every ``takeover_interval`` for what replicas that stopped left behind, and what
this one leaves at shutdown goes out from another replica.
Without an outbox (``memory``), such a delivery goes to the dead letters, and so does what is
left at shutdown.

A delivery that fails for good (``PermanentError``, or any error of a remote sink without an
outbox) is counted, logged with its safe message and appended to
``<dead_letter_dir>/<sink>.jsonl``. Lifecycle events are best effort, and only in memory: a
failed "investigating" notice is logged, not kept (the report that follows says more).

Lifecycle: ``async with SinkDispatcher(...)``; entering queues what the outbox still holds.
Leaving stops intake, lets the queues drain for up to ``drain_timeout`` seconds (a delivery
waiting to be retried stops at once), then cancels. The sinks themselves are owned (and
closed) by whoever opened them, after the dispatcher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from loguru import logger
from opentelemetry import trace
from opentelemetry.trace import Tracer

from mcp_sentinel.dispatcher.sqlite_db import StorageError
from mcp_sentinel.errors import RetryableError, SentinelError
from mcp_sentinel.models import Incident
from mcp_sentinel.sinks.base import IncidentRecord, LifecycleSink, Sink
from mcp_sentinel.sinks.deadletter import DeadLetterStore
from mcp_sentinel.sinks.outbox import Outbox
from mcp_sentinel.telemetry.children import Children
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.telemetry.tracing import extract_context


@dataclass(frozen=True, slots=True)
class _Started:
    incident: Incident


@dataclass(frozen=True, slots=True)
class _Deliver:
    record: IncidentRecord
    entry: int | None = None  # its outbox row, when it has one


_Item = _Started | _Deliver | None  # None: the task's signal to stop


def safe_error(exc: BaseException) -> str:
    """The message to log and dead-letter. Our errors are built to be safe; anything else is
    a bug, named by its type and text."""
    if isinstance(exc, SentinelError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class SinkDispatcher:
    """Implements ``SinkFanout``. ``sinks`` in config order; ``inline`` names those delivered by
    the caller's task; ``gating`` those whose failures stop intake. Does not own the sinks, the
    dead-letter store or the outbox."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        *,
        inline: Collection[str],
        dead_letters: DeadLetterStore,
        metrics: SentinelMetrics,
        queue_size: int,
        drain_timeout: float,
        outbox: Outbox | None = None,
        gating: Collection[str] = (),
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        self._sinks = dict(sinks)
        # Asked once: isinstance against a runtime Protocol walks the class every time.
        self._lifecycle = {
            name: sink for name, sink in self._sinks.items() if isinstance(sink, LifecycleSink)
        }
        self._inline = frozenset(inline) & self._sinks.keys()
        self._gating = frozenset(gating) & self._sinks.keys()
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._deliveries = Children(metrics.sink_deliveries)
        self._durations = Children(metrics.sink_delivery_duration)
        self._queue_size = queue_size
        self._drain_timeout = drain_timeout
        self._outbox = outbox
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        # Unbounded underneath so the stop signal always fits; the bound is enforced by hand.
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._in_flight: dict[str, _Item] = {}
        self._failing: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._accepting = False
        self._stopping = asyncio.Event()
        self._takeover: asyncio.Task[None] | None = None

    @property
    def names(self) -> list[str]:
        return list(self._sinks)

    @property
    def dead_letters(self) -> DeadLetterStore:
        return self._dead_letters

    @property
    def problem(self) -> str | None:
        """Why a gating sink cannot take deliveries now, or None."""
        if not self._failing:  # asked on every webhook request: the usual answer is quick
            return None
        failing = sorted(self._gating & self._failing.keys())
        return (
            f"sink {failing[0]} cannot deliver ({self._failing[failing[0]]})" if failing else None
        )

    def pending(self, name: str) -> int:
        """Deliveries queued or in flight for sink ``name`` (inline sinks: failed ones)."""
        queue = self._queues.get(name)
        return (queue.qsize() if queue else 0) + (1 if self._in_flight.get(name) else 0)

    async def __aenter__(self) -> SinkDispatcher:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        for name, sink in self._sinks.items():
            queue: asyncio.Queue[_Item] = asyncio.Queue()
            self._queues[name] = queue
            self._tasks[name] = self._group.create_task(
                self._run(name, sink, queue), name=f"sentinel-sink-{name}"
            )
        if self._outbox is not None:
            await self._resume_outbox(self._outbox)
            if self._outbox.takeover_interval is not None:
                self._takeover = self._group.create_task(
                    self._take_over(self._outbox, self._outbox.takeover_interval),
                    name="sentinel-outbox-takeover",
                )
        self._accepting = True
        return self

    async def _take_over(self, outbox: Outbox, interval: float) -> None:
        """Every ``interval``: queue what a shared outbox holds for replicas that died."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self._resume_outbox(outbox, why="taken over from a replica that stopped")
            except StorageError as exc:
                logger.warning("outbox: takeover skipped ({error})", error=exc)

    async def _resume_outbox(self, outbox: Outbox, *, why: str = "from before the restart") -> None:
        """Queue what an earlier process stored and its sinks never acknowledged."""
        resumed = 0
        for entry in await outbox.pending():
            try:
                record = entry.record()
            except (KeyError, ValueError, TypeError) as exc:
                logger.error(
                    "outbox row {entry} for sink {sink} cannot be read ({error}); left in the "
                    "state database for a human",
                    entry=entry.id,
                    sink=entry.sink,
                    error=type(exc).__name__,
                )
                continue
            if entry.sink not in self._sinks:
                await self._dead_letter(
                    entry.sink, record, f"sink {entry.sink} is no longer configured"
                )
                outbox.acknowledge(entry.id)
                continue
            self._queues[entry.sink].put_nowait(_Deliver(record, entry.id))
            resumed += 1
        if resumed:
            logger.info("outbox: {count} delivery(ies) {why}", count=resumed, why=why)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._accepting = False
        self._stopping.set()
        if self._takeover is not None:
            self._takeover.cancel()
        for queue in self._queues.values():
            queue.put_nowait(None)
        tasks = list(self._tasks.values())
        try:
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=self._drain_timeout)
                if late:
                    logger.error(
                        "sink drain timeout after {timeout}s: {sinks} still delivering",
                        timeout=self._drain_timeout,
                        sinks=", ".join(
                            sorted(t.get_name().removeprefix("sentinel-sink-") for t in late)
                        ),
                    )
        finally:
            # Also when we are cancelled mid-drain (a second SIGTERM): stop the deliveries,
            # close the group, and still account for what was not delivered.
            for task in tasks:
                task.cancel()
            assert self._group is not None
            # The caller's own exception propagates by itself; handing it to the group would
            # wrap it in an ExceptionGroup.
            await self._group.__aexit__(None, None, None)
            await self._settle_leftovers()

    # -- the fan-out (called by workers) -------------------------------------------------

    async def started(self, incident: Incident, sink_names: Sequence[str]) -> None:
        """Tell the named ``LifecycleSink``s that the investigation of ``incident`` began."""
        for name in sink_names:
            sink = self._lifecycle.get(name)
            if sink is None:
                continue
            if name in self._inline:
                await self._started_now(name, sink, _Started(incident))
                continue
            refused = self._room_for(name)
            if refused is None:
                self._queues[name].put_nowait(_Started(incident))
            else:
                logger.warning(
                    "sink {sink}: investigation start of {incident_id} not sent ({reason})",
                    sink=name,
                    incident_id=incident.incident_id,
                    reason=refused,
                )

    async def deliver(self, record: IncidentRecord, sink_names: Sequence[str]) -> None:
        """Store ``record`` in the outbox (if any), queue it for the remote sinks, then deliver
        it to the local ones."""
        names = [name for name in dict.fromkeys(sink_names) if name in self._sinks]
        refused: dict[str, str] = {}
        for name in names:
            if name not in self._inline:
                reason = self._room_for(name)
                if reason is not None:
                    refused[name] = reason
        kept = [name for name in names if name not in refused]
        entries: dict[str, int] = {}
        if self._outbox is not None and kept and self._accepting:
            try:
                entries = await self._outbox.add(record, kept)
            except StorageError as exc:
                # The database logged it and stops intake; this record still goes out.
                logger.error(
                    "incident {incident_id}: deliveries not stored ({error}); sending them "
                    "from memory",
                    incident_id=record.incident.incident_id,
                    error=exc,
                )
        for name, reason in refused.items():
            outcome = "queue_full" if self._accepting else "not_sent"
            self._deliveries(name, outcome).inc()
            await self._dead_letter(name, record, f"sink {name}: {reason}")
        for name in kept:
            item = _Deliver(record, entries.get(name))
            if name not in self._inline:
                self._queues[name].put_nowait(item)
            elif self.pending(name):
                self._queues[name].put_nowait(item)  # behind the failed ones, in order
            elif not await self._attempt(name, self._sinks[name], item):
                self._queues[name].put_nowait(item)  # its task retries it

    def _room_for(self, name: str) -> str | None:
        """None when a remote sink's queue can take one more, else why not."""
        queue = self._queues.get(name)
        if not self._accepting or queue is None:
            return "closed (shutting down)"
        if queue.qsize() >= self._queue_size:
            return f"delivery queue full ({self._queue_size})"
        return None

    # -- the per-sink delivery task ------------------------------------------------------

    async def _run(self, name: str, sink: Sink, queue: asyncio.Queue[_Item]) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            self._in_flight[name] = item
            if isinstance(item, _Started):
                await self._started_now(name, self._lifecycle[name], item)
            elif not await self._until_settled(name, sink, item):
                return  # stopping: the item stays in flight, for the leftovers
            del self._in_flight[name]  # not in a finally: a cancelled item stays for leftovers

    async def _until_settled(self, name: str, sink: Sink, item: _Deliver) -> bool:
        """Deliver ``item``, waiting out failures that a retry may fix. False when stopped
        while waiting."""
        delay = self._retry_initial
        while not await self._attempt(name, sink, item):
            try:
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
                return False
            except TimeoutError:
                delay = min(delay * 2, self._retry_max)
        return True

    async def _attempt(self, name: str, sink: Sink, item: _Deliver) -> bool:
        """One delivery (with the sink's own retries). True when settled: delivered, or failed
        for good and dead-lettered; False when it is to be tried again."""
        record = item.record
        began = time.monotonic()
        # Inline sinks run in the worker, inside the incident's span; queued ones join the trace
        # of the request that accepted the incident.
        parent = None if name in self._inline else extract_context(record.incident.traceparent)
        try:
            with self._tracer.start_as_current_span(
                f"sink {name}",
                context=parent,
                attributes={
                    "sentinel.sink": name,
                    "sentinel.incident.id": record.incident.incident_id,
                },
            ):
                await sink.deliver(record)
        except Exception as exc:
            error = safe_error(exc)
            if name in self._inline or (item.entry is not None and isinstance(exc, RetryableError)):
                self._deliveries(name, "retry").inc()
                if item.entry is not None and self._outbox is not None:
                    self._outbox.note_failure(item.entry, error)
                if name not in self._failing:
                    logger.error(
                        "sink {sink} failed for incident {incident_id}: {error}; kept{where} and "
                        "tried again until it works",
                        sink=name,
                        incident_id=record.incident.incident_id,
                        error=error,
                        where=" in the outbox" if item.entry is not None else "",
                    )
                self._failing[name] = error
                return False
            self._deliveries(name, "failed").inc()
            if not await self._dead_letter(name, record, error):
                return False  # not even the dead letters could keep it: try again later
        else:
            self._deliveries(name, "delivered").inc()
            if self._failing.pop(name, None) is not None:
                logger.info("sink {sink} delivers again", sink=name)
        finally:
            self._durations(name).observe(time.monotonic() - began)
        if item.entry is not None and self._outbox is not None:
            self._outbox.acknowledge(item.entry)
        return True

    async def _started_now(self, name: str, sink: LifecycleSink, item: _Started) -> None:
        try:
            await sink.investigation_started(item.incident)
        except Exception as exc:
            logger.warning(
                "sink {sink}: investigation start of {incident_id} not sent: {error}",
                sink=name,
                incident_id=item.incident.incident_id,
                error=safe_error(exc),
            )

    async def _dead_letter(self, name: str, record: IncidentRecord, error: str) -> bool:
        """Append to the sink's dead-letter file; False (logged) when that fails too."""
        incident_id = record.incident.incident_id
        try:
            path = await self._dead_letters.append(name, record, error)
        except OSError as exc:
            logger.error(
                "sink {sink} failed for incident {incident_id}: {error}; and the dead-letter "
                "file could not be written ({problem})",
                sink=name,
                incident_id=incident_id,
                error=error,
                problem=exc.strerror or type(exc).__name__,
            )
            return False
        self._metrics.sink_dead_letters.labels(name).inc()
        logger.error(
            "sink {sink} failed for incident {incident_id}: {error}; dead letter in {path}",
            sink=name,
            incident_id=incident_id,
            error=error,
            path=path,
        )
        return True

    async def _settle_leftovers(self) -> None:
        """After the drain: what has an outbox row waits for the next start; the rest goes to
        the dead letters, so nothing accepted is lost silently."""
        kept = 0
        for name, queue in self._queues.items():
            left: list[_Item] = [self._in_flight.pop(name, None)]
            while not queue.empty():
                left.append(queue.get_nowait())
            for item in left:
                if not isinstance(item, _Deliver):
                    continue
                if item.entry is not None:
                    kept += 1
                    continue
                self._deliveries(name, "not_sent").inc()
                await self._dead_letter(
                    name, item.record, f"sink {name}: not delivered before shutdown"
                )
        if kept:
            logger.warning(
                "{count} delivery(ies) stay in the outbox and go out after the next start",
                count=kept,
            )
