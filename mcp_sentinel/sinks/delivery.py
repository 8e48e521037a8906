"""``SinkDispatcher``: the fan-out to the sinks, apart from the workers.

Remote sinks (Slack, Jira, webhook) each get a bounded queue and one delivery task, all in one
``TaskGroup`` owned by the dispatcher: ``deliver`` and ``started`` only enqueue, so a slow or
failing sink never holds back a worker or another sink, and one sink's events keep their order
(the "investigating" message before its update). A full queue sends the delivery straight to
the dead-letter file instead of blocking the worker.

Local sinks (console, audit) are delivered inline, by the worker, before ``deliver`` returns:
they take microseconds to milliseconds, and the audit log promises that an incident's record
is on disk once its worker is done with it.

A delivery that raises (after the sink's own retries) is counted, logged with its safe message
and appended to ``<dead_letter_dir>/<sink>.jsonl``. Lifecycle events are best effort: a failed
"investigating" notice is logged, not dead-lettered (the report that follows says more).

Lifecycle: ``async with SinkDispatcher(...)``. Leaving stops intake, lets the queues drain for
up to ``drain_timeout`` seconds, then cancels; deliveries still queued or cut off mid-flight go
to the dead letters, so nothing accepted is lost silently. The sinks themselves are owned (and
closed) by whoever opened them, after the dispatcher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from loguru import logger

from mcp_sentinel.errors import SentinelError
from mcp_sentinel.models import Incident
from mcp_sentinel.sinks.base import IncidentRecord, LifecycleSink, Sink
from mcp_sentinel.sinks.deadletter import DeadLetterStore
from mcp_sentinel.telemetry.metrics import SentinelMetrics


@dataclass(frozen=True, slots=True)
class _Started:
    incident: Incident


@dataclass(frozen=True, slots=True)
class _Deliver:
    record: IncidentRecord


_Item = _Started | _Deliver | None  # None: the task's signal to stop


def safe_error(exc: BaseException) -> str:
    """The message to log and dead-letter. Our errors are built to be safe; anything else is
    a bug, named by its type and text."""
    if isinstance(exc, SentinelError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class SinkDispatcher:
    """Implements ``SinkFanout``. ``sinks`` in config order; ``inline`` names those delivered by
    the caller's task. Does not own the sinks."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        *,
        inline: Collection[str],
        dead_letters: DeadLetterStore,
        metrics: SentinelMetrics,
        queue_size: int,
        drain_timeout: float,
    ) -> None:
        self._sinks = dict(sinks)
        self._inline = frozenset(inline) & self._sinks.keys()
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._queue_size = queue_size
        self._drain_timeout = drain_timeout
        # Unbounded underneath so the stop signal always fits; the bound is enforced by hand.
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._in_flight: dict[str, _Item] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._accepting = False

    @property
    def names(self) -> list[str]:
        return list(self._sinks)

    @property
    def dead_letters(self) -> DeadLetterStore:
        return self._dead_letters

    def pending(self, name: str) -> int:
        """Deliveries queued or in flight for sink ``name`` (0 for inline sinks)."""
        queue = self._queues.get(name)
        return (queue.qsize() if queue else 0) + (1 if self._in_flight.get(name) else 0)

    async def __aenter__(self) -> SinkDispatcher:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        for name, sink in self._sinks.items():
            if name in self._inline:
                continue
            queue: asyncio.Queue[_Item] = asyncio.Queue()
            self._queues[name] = queue
            self._tasks[name] = self._group.create_task(
                self._run(name, sink, queue), name=f"sentinel-sink-{name}"
            )
        self._accepting = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._accepting = False
        for queue in self._queues.values():
            queue.put_nowait(None)
        tasks = list(self._tasks.values())
        try:
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=self._drain_timeout)
                if late:
                    logger.error(
                        "sink drain timeout after {timeout}s: {sinks} still delivering; the "
                        "rest goes to the dead-letter files",
                        timeout=self._drain_timeout,
                        sinks=", ".join(
                            sorted(t.get_name().removeprefix("sentinel-sink-") for t in late)
                        ),
                    )
        finally:
            # Also when we are cancelled mid-drain (a second SIGTERM): stop the deliveries,
            # close the group, and still write down what was not delivered.
            for task in tasks:
                task.cancel()
            assert self._group is not None
            # The caller's own exception propagates by itself; handing it to the group would
            # wrap it in an ExceptionGroup.
            await self._group.__aexit__(None, None, None)
            await self._dead_letter_leftovers()

    # -- the fan-out (called by workers) -------------------------------------------------

    async def started(self, incident: Incident, sink_names: Sequence[str]) -> None:
        """Tell the named ``LifecycleSink``s that the investigation of ``incident`` began."""
        for name in sink_names:
            sink = self._sinks.get(name)
            if not isinstance(sink, LifecycleSink):
                continue
            if name in self._inline:
                await self._process(name, sink, _Started(incident))
                continue
            refused = self._enqueue(name, _Started(incident))
            if refused is not None:
                logger.warning(
                    "sink {sink}: investigation start of {incident_id} not sent ({reason})",
                    sink=name,
                    incident_id=incident.incident_id,
                    reason=refused,
                )

    async def deliver(self, record: IncidentRecord, sink_names: Sequence[str]) -> None:
        """Queue ``record`` for the remote sinks, then deliver it to the local ones."""
        inline: list[str] = []
        for name in sink_names:
            if name not in self._sinks:
                continue
            if name in self._inline:
                inline.append(name)
                continue
            refused = self._enqueue(name, _Deliver(record))
            if refused is not None:
                outcome = "queue_full" if self._accepting else "not_sent"
                self._metrics.sink_deliveries.labels(name, outcome).inc()
                await self._dead_letter(name, record, f"sink {name}: {refused}")
        for name in inline:
            await self._process(name, self._sinks[name], _Deliver(record))

    def _enqueue(self, name: str, item: _Started | _Deliver) -> str | None:
        """None when queued, else why not."""
        queue = self._queues.get(name)
        if not self._accepting or queue is None:
            return "closed (shutting down)"
        if queue.qsize() >= self._queue_size:
            return f"delivery queue full ({self._queue_size})"
        queue.put_nowait(item)
        return None

    # -- the per-sink delivery task ------------------------------------------------------

    async def _run(self, name: str, sink: Sink, queue: asyncio.Queue[_Item]) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            self._in_flight[name] = item
            await self._process(name, sink, item)
            del self._in_flight[name]  # not in a finally: a cancelled item stays for leftovers

    async def _process(self, name: str, sink: Sink, item: _Started | _Deliver) -> None:
        if isinstance(item, _Started):
            assert isinstance(sink, LifecycleSink)
            try:
                await sink.investigation_started(item.incident)
            except Exception as exc:
                logger.warning(
                    "sink {sink}: investigation start of {incident_id} not sent: {error}",
                    sink=name,
                    incident_id=item.incident.incident_id,
                    error=safe_error(exc),
                )
            return
        record = item.record
        began = time.monotonic()
        try:
            await sink.deliver(record)
        except Exception as exc:
            self._metrics.sink_deliveries.labels(name, "failed").inc()
            await self._dead_letter(name, record, safe_error(exc))
        else:
            self._metrics.sink_deliveries.labels(name, "delivered").inc()
        finally:
            self._metrics.sink_delivery_duration.labels(name).observe(time.monotonic() - began)

    async def _dead_letter(self, name: str, record: IncidentRecord, error: str) -> None:
        incident_id = record.incident.incident_id
        try:
            path = await self._dead_letters.append(name, record, error)
        except OSError as exc:
            logger.error(
                "sink {sink} failed for incident {incident_id}: {error}; and the dead-letter "
                "file could not be written ({problem}): the delivery is lost",
                sink=name,
                incident_id=incident_id,
                error=error,
                problem=exc.strerror or type(exc).__name__,
            )
            return
        self._metrics.sink_dead_letters.labels(name).inc()
        logger.error(
            "sink {sink} failed for incident {incident_id}: {error}; dead letter in {path}",
            sink=name,
            incident_id=incident_id,
            error=error,
            path=path,
        )

    async def _dead_letter_leftovers(self) -> None:
        for name, queue in self._queues.items():
            left: list[_Item] = [self._in_flight.pop(name, None)]
            while not queue.empty():
                left.append(queue.get_nowait())
            for item in left:
                if isinstance(item, _Deliver):
                    self._metrics.sink_deliveries.labels(name, "not_sent").inc()
                    await self._dead_letter(
                        name, item.record, f"sink {name}: not delivered before shutdown"
                    )
