"""The ``redis`` backend's stores: ``open_redis_state`` builds what the app needs.

``RedisDedupeStore`` answers ``seen`` from a mirror in memory of the keys this replica took or
saw (the dispatcher's intake never waits on the network there). The shared truth is in Redis:
the queue's intake script sets each key with ``SET NX`` and a TTL in the same atomic step that
adds its incident, so a key another replica set first makes the incident a duplicate there (the
webhook still counts it as queued on this replica: it is queued, once, in the shared stream).

What survives what, with ``redis``: an accepted payload (the webhook answered 200) is in Redis
and survives the crash of any replica (its durability across a crash of Redis itself is Redis's
persistence setting: AOF with ``appendfsync everysec`` or ``always``); an incident whose
replica dies mid-investigation is investigated by another one after
``dispatcher.redis_visibility_timeout_seconds``; a dedupe key lives its TTL in Redis. The
sinks' state is shared too (``sinks.redis_sink_state``): the outbox, under leases of the same
visibility timeout (a dead replica's undelivered findings go out from another one), the Slack
messages and the Jira issue keys (any replica edits the incident's message and comments on
the fingerprint's issue).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from mcp_sentinel.config import SentinelSettings
from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.dispatcher.redis_connection import RedisConnection
from mcp_sentinel.dispatcher.redis_queue import RedisQueueBackend
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.sinks.redis_sink_state import RedisJiraIssues, RedisOutbox, RedisSlackThreads


class RedisDedupeStore:
    """Implements ``DedupeStore`` as this replica's mirror of the keys; see the module
    docstring. ``remember_all`` writes nothing to Redis: the intake script already did."""

    def __init__(self, ttl_seconds: float) -> None:
        self._cache = DedupeCache(ttl_seconds)

    def __len__(self) -> int:
        return len(self._cache)

    def seen(self, key: Hashable) -> bool:
        return self._cache.seen(key)

    def fresh(self, keys: Sequence[Hashable]) -> list[bool]:
        return self._cache.fresh(keys)

    def remember_all(self, keys: Iterable[Hashable]) -> None:
        self._cache.remember_all(keys)

    def purge(self) -> int:
        """The mirror's expired keys dropped (Redis expires its own)."""
        return self._cache.purge()


@dataclass(frozen=True, slots=True)
class RedisIntakeState:
    """The stores of one replica with ``redis``; shaped like ``state.IntakeState``."""

    queue: RedisQueueBackend
    dedupe: RedisDedupeStore
    connection: RedisConnection
    outbox: RedisOutbox
    slack_threads: RedisSlackThreads
    jira_issues: RedisJiraIssues

    def problem(self) -> str | None:
        """Why Redis cannot be used now, or None (a health check for the dispatcher)."""
        return self.connection.problem


async def open_redis_state(
    settings: SentinelSettings, *, stack: AsyncExitStack
) -> RedisIntakeState:
    """Connect, open the queue (closed by ``stack`` after the dispatcher stopped)."""
    dispatcher = settings.dispatcher
    assert dispatcher.redis_url is not None  # the settings validate it
    connection = RedisConnection(
        dispatcher.redis_url.get_secret_value(),
        password=dispatcher.redis_password,
        key_prefix=dispatcher.redis_key_prefix,
    )
    queue = RedisQueueBackend(
        connection,
        capacity=dispatcher.queue_size,
        dedupe_ttl_seconds=dispatcher.dedupe_ttl_seconds,
        visibility_timeout=dispatcher.redis_visibility_timeout_seconds,
        cards=settings.incident_cards,
        default_card=CardRouter(settings.incident_cards, dispatcher.default_card).default_card,
    )
    stack.push_async_callback(queue.aclose)
    await queue.open()
    # After the queue (closed before it, so the connection is still there to hand leases back).
    outbox = await stack.enter_async_context(
        RedisOutbox(connection, lease_seconds=dispatcher.redis_visibility_timeout_seconds)
    )
    return RedisIntakeState(
        queue=queue,
        dedupe=RedisDedupeStore(dispatcher.dedupe_ttl_seconds),
        connection=connection,
        outbox=outbox,
        slack_threads=RedisSlackThreads(connection),
        jira_issues=RedisJiraIssues(connection),
    )
