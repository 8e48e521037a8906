"""Where the dispatcher and the sinks keep their state, chosen by ``dispatcher.backend``.

``open_state`` is what the app calls, before it opens the sinks (they need the outbox):

- ``sqlite`` (the default): opens the state database (``dispatcher.sqlite_path``, relative to
  the config file) on the app's ``AsyncExitStack``, so it closes after the dispatcher and the
  sinks are done with it; loads the dedupe keys and the queue left by an earlier process; tells
  the ``IncidentTracker`` about the resolutions among them (a firing incident queued before its
  resolution is then skipped, as it would have been without the restart).
- ``memory``: the in-memory queue and dedupe cache; no outbox. Everything is lost on exit.

What survives what, with ``sqlite``: an accepted payload (the webhook answered 200) survives a
crash of the process or the machine; an incident cut off mid-investigation is investigated
again after the restart; a finished one is not, and its deliveries not yet acknowledged by
their sinks are sent after the restart; a dedupe key lives its TTL across restarts.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from mcp_sentinel.config import SentinelSettings
from mcp_sentinel.dispatcher.dedupe import DedupeCache, DedupeStore
from mcp_sentinel.dispatcher.lifecycle import IncidentTracker
from mcp_sentinel.dispatcher.queue import MemoryQueueBackend, QueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.dispatcher.sqlite_dedupe import SqliteDedupeStore
from mcp_sentinel.dispatcher.sqlite_queue import SqliteQueueBackend
from mcp_sentinel.sinks.jira_issues import IssueKeyStore
from mcp_sentinel.sinks.outbox import SqliteOutbox
from mcp_sentinel.sinks.slack_threads import SlackThreadStore


@dataclass(frozen=True, slots=True)
class IntakeState:
    """The stores of one daemon. ``database`` and ``outbox`` are None with ``memory``."""

    queue: QueueBackend
    dedupe: DedupeStore
    outbox: SqliteOutbox | None = None
    database: SqliteDatabase | None = None
    # The sinks' own state stays with each sink (memory, a JSON file) on one machine.
    slack_threads: SlackThreadStore | None = None
    jira_issues: IssueKeyStore | None = None

    def problem(self) -> str | None:
        """Why the state cannot be written now, or None (a health check for the dispatcher)."""
        return self.database.problem if self.database is not None else None


async def open_state(
    settings: SentinelSettings, *, stack: AsyncExitStack, tracker: IncidentTracker
) -> IntakeState:
    """Build (and with ``sqlite`` open and recover) the stores ``settings`` asks for."""
    dispatcher = settings.dispatcher
    if dispatcher.backend == "memory":
        return IntakeState(
            queue=MemoryQueueBackend(dispatcher.queue_size),
            dedupe=DedupeCache(dispatcher.dedupe_ttl_seconds),
        )
    database = await stack.enter_async_context(
        SqliteDatabase(settings.resolve(dispatcher.sqlite_path))
    )
    dedupe = SqliteDedupeStore(database, dispatcher.dedupe_ttl_seconds)
    await dedupe.open()
    queue = SqliteQueueBackend(
        database,
        capacity=dispatcher.queue_size,
        cards=settings.incident_cards,
        default_card=CardRouter(settings.incident_cards, dispatcher.default_card).default_card,
        dedupe=dedupe,
    )
    await queue.open()
    for key in queue.recovered_resolved:
        tracker.resolve(key)
    return IntakeState(
        queue=queue,
        dedupe=dedupe,
        outbox=SqliteOutbox(database, queue=queue),
        database=database,
    )
