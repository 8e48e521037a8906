"""The sinks' state in Redis, shared by every replica of the ``redis`` backend.

- ``RedisSlackThreads`` (``SlackThreadStore``): one key per incident's Slack message,
  ``{prefix}:slack:thread:<fingerprint>|<startsAt>``, kept ``SLACK_THREAD_TTL_SECONDS`` after
  its last change. The replica that handles a resolution updates the message another posted,
  and a restarted replica edits it instead of posting a second one.
- ``RedisJiraIssues`` (``IssueKeyStore``): the hash ``{prefix}:jira:issues``, fingerprint ->
  issue key, so a fingerprint keeps one issue whichever replica comments on it.
- ``RedisOutbox`` (``sinks.outbox.Outbox``): deliveries waiting for their sink's
  acknowledgement, under a lease. Each entry is a field of ``{prefix}:outbox`` (sink, record
  and delivery key, as JSON), with its lease expiry (Redis server time, ms) in the sorted set
  ``{prefix}:outbox:leases``. The replica that stored an entry renews its lease every
  ``lease_seconds / 3`` while it holds it; an entry whose lease ran out belongs to a replica
  that died (or was cut off), and ``pending`` (run at start and every ``takeover_interval``)
  takes it over. A replica that stops gracefully hands its leases back at once.

Delivery stays at least once, as with the SQLite outbox: a delivery whose acknowledgement was
lost, or whose replica died after the sink took it, goes out again from another replica.

Redis failures: the outbox's ``add`` raises ``StorageError`` (the dispatcher then sends the
record from memory and the Redis health check stops intake); the Slack and Jira stores raise
``RetryableError``, so the delivery is retried like a sink outage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from loguru import logger
from redis.exceptions import RedisError

from mcp_sentinel.dispatcher.redis_connection import RedisConnection, raise_if_cancelling
from mcp_sentinel.dispatcher.sqlite_db import StorageError
from mcp_sentinel.errors import RetryableError
from mcp_sentinel.sinks.base import IncidentRecord
from mcp_sentinel.sinks.deadletter import record_to_json
from mcp_sentinel.sinks.outbox import OutboxEntry, delivery_key
from mcp_sentinel.sinks.slack_threads import (
    SlackThread,
    ThreadKey,
    thread_from_json,
    thread_to_json,
)

T = TypeVar("T")

#: How long a Slack message is remembered after its last change (an incident that resolves
#: later than this gets a new message for its resolution).
SLACK_THREAD_TTL_SECONDS = 30 * 24 * 3600

_TAKEOVER_BATCH = 100

# KEYS = [entries, leases, keys]; ARGV = [lease_ms, then per delivery: delivery key, entry].
# Answers the ids added (0 where that delivery is already in the outbox).
_ADD = """
local entries, leases, keys = KEYS[1], KEYS[2], KEYS[3]
local now = redis.call('TIME')
local expiry = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local added = {}
for i = 2, #ARGV, 2 do
  local id = 0
  if redis.call('HEXISTS', keys, ARGV[i]) == 0 then
    id = redis.call('INCR', entries .. ':ids')
    redis.call('HSET', keys, ARGV[i], id)
    redis.call('HSET', entries, id, ARGV[i + 1])
    redis.call('ZADD', leases, expiry, id)
  end
  table.insert(added, id)
end
return added
"""

# KEYS = [entries, leases, attempts]; ARGV = [lease_ms, limit]. Takes the entries whose lease
# ran out (a new lease for this replica) and answers id, entry, attempts for each.
_TAKEOVER = """
local entries, leases, attempts = KEYS[1], KEYS[2], KEYS[3]
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', leases, '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(due) do
  local entry = redis.call('HGET', entries, id)
  if entry then
    redis.call('ZADD', leases, now_ms + tonumber(ARGV[1]), id)
    table.insert(out, id)
    table.insert(out, entry)
    table.insert(out, redis.call('HGET', attempts, id) or '0')
  else
    redis.call('ZREM', leases, id)
  end
end
return out
"""

# KEYS = [entries, leases, attempts, errors, keys]; ARGV = [id]. Forgets one delivery.
_ACKNOWLEDGE = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry then
  local ok, decoded = pcall(cjson.decode, entry)
  if ok and type(decoded) == 'table' and decoded['key'] then
    redis.call('HDEL', KEYS[5], decoded['key'])
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

# KEYS = [leases]; ARGV = [lease_ms, id ...]. Extends the leases of entries still held.
_RENEW = """
local now = redis.call('TIME')
local expiry = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
end
return 1
"""


async def _retryable(connection: RedisConnection, work: Awaitable[T], *, doing: str) -> T:
    try:
        return await work
    except (RedisError, OSError) as exc:
        connection.failed(exc, doing=doing)  # raises CancelledError for a lost cancellation
        raise RetryableError(
            f"redis at {connection.display_url} failed to {doing}: {type(exc).__name__}"
        ) from None


class RedisSlackThreads:
    """Implements ``SlackThreadStore`` on Redis; see the module docstring."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection

    def _key(self, key: ThreadKey) -> str:
        fingerprint, starts_at = key
        return f"{self._connection.keys.base}:slack:thread:{fingerprint}|{starts_at.isoformat()}"

    async def get(self, key: ThreadKey) -> SlackThread | None:
        client = self._connection.client
        stored = await _retryable(
            self._connection, client.get(self._key(key)), doing="read a Slack thread"
        )
        if stored is None:
            return None
        try:
            return thread_from_json(str(stored))
        except ValueError as exc:
            logger.warning(
                "slack: unreadable stored message of {key} ({error}); a new one is posted",
                key=self._key(key),
                error=exc,
            )
            return None

    async def put(self, thread: SlackThread) -> None:
        client = self._connection.client
        await _retryable(
            self._connection,
            client.set(self._key(thread.key), thread_to_json(thread), ex=SLACK_THREAD_TTL_SECONDS),
            doing="store a Slack thread",
        )


class RedisJiraIssues:
    """Implements ``IssueKeyStore`` on the Redis hash ``{prefix}:jira:issues``."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._hash = f"{connection.keys.base}:jira:issues"

    async def load(self) -> None:
        return None  # nothing to read ahead: every lookup asks Redis

    async def lookup(self, fingerprint: str) -> str | None:
        client = self._connection.client
        key: str | None = await _retryable(
            self._connection,
            client.hget(self._hash, fingerprint),  # type: ignore[arg-type]
            doing="read a Jira issue key",
        )
        return key

    async def set(self, fingerprint: str, key: str) -> None:
        client = self._connection.client
        await _retryable(
            self._connection,
            client.hset(self._hash, fingerprint, key),
            doing="store a Jira issue key",
        )


class RedisOutbox:
    """Implements ``Outbox`` on Redis, under leases; see the module docstring. An async
    context manager: entering starts the lease renewal, leaving hands the leases back."""

    def __init__(self, connection: RedisConnection, *, lease_seconds: float) -> None:
        self._connection = connection
        base = connection.keys.base
        self._entries = f"{base}:outbox"
        self._leases = f"{base}:outbox:leases"
        self._attempts = f"{base}:outbox:attempts"
        self._errors = f"{base}:outbox:errors"
        self._keys = f"{base}:outbox:keys"
        self._lease_ms = int(lease_seconds * 1000)
        self.takeover_interval: float | None = max(0.05, lease_seconds / 3)
        client = connection.client
        self._add = client.register_script(_ADD)
        self._takeover = client.register_script(_TAKEOVER)
        self._acknowledge = client.register_script(_ACKNOWLEDGE)
        self._renew = client.register_script(_RENEW)
        self._held: set[int] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RedisOutbox:
        self._renewer = asyncio.create_task(self._renew_forever(), name="sentinel-outbox-leases")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.wait([self._renewer])
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self._held:
            # Handed back: another replica takes these at its next takeover, not a lease later.
            try:
                await self._connection.client.zadd(
                    self._leases, dict.fromkeys(map(str, self._held), 0), xx=True
                )
            except (RedisError, OSError) as error:
                logger.warning(
                    "outbox: {count} lease(s) not handed back ({error}); they are taken over "
                    "when they run out",
                    count=len(self._held),
                    error=type(error).__name__,
                )

    async def add(self, record: IncidentRecord, sinks: Sequence[str]) -> dict[str, int]:
        """Store ``record`` for each of ``sinks`` under this replica's lease. Returns sink ->
        entry id for those added (a delivery already in the outbox is left out). Raises
        ``StorageError`` when Redis cannot take them."""
        stored = record_to_json(record)
        args: list[Any] = [self._lease_ms]
        for sink in sinks:
            key = delivery_key(sink, record)
            entry = {"key": key, "sink": sink, "record": stored}
            args += [key, json.dumps(entry, ensure_ascii=False, separators=(",", ":"))]
        try:
            ids = await self._add(keys=[self._entries, self._leases, self._keys], args=args)
        except (RedisError, OSError) as exc:
            self._connection.failed(exc, doing="store deliveries in the outbox")
            raise StorageError(
                f"redis at {self._connection.display_url} failed to store the deliveries of "
                f"incident {record.incident.incident_id}: {type(exc).__name__}"
            ) from None
        added = {sink: int(entry_id) for sink, entry_id in zip(sinks, ids, strict=True) if entry_id}
        self._held.update(added.values())
        return added

    async def pending(self) -> list[OutboxEntry]:
        """The deliveries whose lease ran out (their replica is gone), now leased to this one."""
        try:
            flat = await self._takeover(
                keys=[self._entries, self._leases, self._attempts],
                args=[self._lease_ms, _TAKEOVER_BATCH],
            )
        except (RedisError, OSError) as exc:
            self._connection.failed(exc, doing="take over outbox entries")
            raise StorageError(
                f"redis at {self._connection.display_url} failed to take over outbox entries: "
                f"{type(exc).__name__}"
            ) from None
        entries = []
        for index in range(0, len(flat), 3):
            entry_id, stored, attempts = int(flat[index]), flat[index + 1], int(flat[index + 2])
            try:
                entry = json.loads(stored)
                sink, data = str(entry["sink"]), entry["record"]
            except (ValueError, KeyError, TypeError):
                sink, data = "unknown", None
            self._held.add(entry_id)
            entries.append(OutboxEntry(entry_id, sink, data, attempts))
        return entries

    def acknowledge(self, entry_id: int) -> None:
        """The sink took it (or it went to the dead letters): forget it, in the background."""
        self._held.discard(entry_id)
        keys = [self._entries, self._leases, self._attempts, self._errors, self._keys]
        self._spawn(
            lambda: self._acknowledge(keys=keys, args=[entry_id]),
            doing=f"acknowledge outbox entry {entry_id}",
        )

    def note_failure(self, entry_id: int, error: str) -> None:
        async def note() -> None:
            async with self._connection.client.pipeline(transaction=True) as pipe:
                pipe.hincrby(self._attempts, str(entry_id), 1)
                pipe.hset(self._errors, str(entry_id), error[:1000])
                await pipe.execute()

        self._spawn(note, doing=f"note a failure of outbox entry {entry_id}")

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, Any]], *, doing: str) -> None:
        async def run() -> None:
            try:
                await work()
            except (RedisError, OSError) as exc:
                # Lost: the entry stays in the outbox and goes out once more (at least once).
                logger.warning(
                    "outbox: failed to {doing} ({error})", doing=doing, error=type(exc).__name__
                )

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            if not self._held:
                continue
            try:
                await self._renew(keys=[self._leases], args=[self._lease_ms, *self._held])
            except (RedisError, OSError) as exc:
                logger.warning(
                    "outbox: lease renewal failed ({error}); retrying", error=type(exc).__name__
                )
            # redis-py may have lost the cancellation that closing sent (see
            # ``raise_if_cancelling``): without this the loop would renew forever.
            raise_if_cancelling()
