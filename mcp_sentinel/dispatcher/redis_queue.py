"""``RedisQueueBackend``: the queue shared by every replica, on a Redis Stream.

An incident lives as one stream entry (its fields: ``redis_entries``), read through one
consumer group shared by all replicas;
each process is a consumer of its own (``host:pid:random``):

- ``put_all`` runs the ``INTAKE`` script (``redis_scripts``): in one atomic step it checks the
  shared capacity, sets every dedupe key with ``SET NX`` and a TTL, and ``XADD``s the incidents
  whose key it set. True means Redis holds them; False (queue full, Redis unreachable) means
  nothing of the payload was written, and the webhook answers 503.
- ``get`` hands out an entry with ``XREADGROUP``: Redis delivers each entry to one consumer,
  so one replica investigates it. Every ``visibility_timeout / 4`` (at most 5 s) a worker first
  tries ``XAUTOCLAIM``: an entry pending longer than the visibility timeout belongs to a
  replica that stopped renewing (killed, partitioned), and is taken over.
- While an incident is investigated its claim is renewed every ``visibility_timeout / 3``
  (``RENEW``: ``XCLAIM ... JUSTID`` on the entries still ours), so a long investigation is not
  taken over.
- ``task_done`` acknowledges and deletes the entry (``XACK`` + ``XDEL`` in ``MULTI/EXEC``);
  ``release`` (a worker cancelled at shutdown) puts it back at the tail for any replica. Both
  run in the background and retry while Redis is away; the claim is renewed meanwhile.
- ``join`` (shutdown) stops taking new entries and waits for this process's own incidents:
  what still waits in the stream is the other replicas' to take, or the next start's.

Delivery is at least once: an incident whose replica died, or whose acknowledgement never
reached Redis, is investigated again after the visibility timeout. Priority is not kept
across the shared stream: entries are taken in arrival order.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

from loguru import logger
from redis.exceptions import RedisError, ResponseError

from mcp_sentinel.dispatcher.codec import key_to_row, notifications_to_json
from mcp_sentinel.dispatcher.queue import Unfinished
from mcp_sentinel.dispatcher.redis_connection import (
    RedisConnection,
    cancellation_pending,
    raise_if_cancelling,
)
from mcp_sentinel.dispatcher.redis_entries import (
    Entry,
    Unusable,
    decode_entry,
    first_entry,
    incident_fields,
)
from mcp_sentinel.dispatcher.redis_scripts import INTAKE, RENEW, REQUEUE
from mcp_sentinel.models import Incident, IncidentCard, PayloadOrigin

_BLOCK_MS = 1000  # one blocking read; below the socket timeout
_CLOSE_WAIT_SECONDS = 5.0
_FAILURES = (RedisError, OSError)
#: How often (at most) the consumer group is swept of consumers left by killed replicas.
_FORGET_EVERY_SECONDS = 60.0


class RedisQueueBackend:
    """Implements ``QueueBackend`` on a Redis Stream; see the module docstring. Owned by the
    app: ``open`` before the workers start (it starts the maintenance task: health probe,
    claim renewal, depth), ``aclose`` after they stopped. ``capacity`` bounds the entries
    waiting in the shared stream (all replicas together); ``dedupe_ttl_seconds`` is the TTL of
    the dedupe keys the intake sets."""

    writes_at_once = False  # put_all awaits its commit

    def __init__(
        self,
        connection: RedisConnection,
        *,
        capacity: int,
        dedupe_ttl_seconds: float,
        visibility_timeout: float,
        cards: Sequence[IncidentCard],
        default_card: IncidentCard | None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._connection = connection
        self._client = connection.client
        self._keys = connection.keys
        self._capacity = capacity
        self._ttl_ms = max(1, int(dedupe_ttl_seconds * 1000))
        self._visibility_ms = max(1, int(visibility_timeout * 1000))
        self._renew_every = visibility_timeout / 3
        self._autoclaim_every = min(visibility_timeout / 4, 5.0)
        self._next_forget = 0.0
        self._cards = {card.resource: card for card in cards}
        self._default_card = default_card
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._intake = self._client.register_script(INTAKE)
        self._renew = self._client.register_script(RENEW)
        self._requeue_script = self._client.register_script(REQUEUE)
        self._claimed: dict[str, str] = {}  # incident_id -> entry id, until acknowledged
        self._unfinished = Unfinished()  # handed to a worker, not yet task_done / release
        self._draining = False
        self._depth = 0
        self._next_autoclaim = 0.0
        self._autoclaim_cursor = "0-0"
        self._next_renew = 0.0
        self._background: set[asyncio.Task[None]] = set()
        self._maintenance: asyncio.Task[None] | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    def depth(self) -> int:
        """Entries waiting in the shared stream, as of the last refresh (about a second ago)."""
        return self._depth

    def in_progress(self) -> int:
        return self._unfinished.count

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Probe Redis, create the consumer group if missing, start the maintenance task. An
        unreachable Redis is not fatal: the daemon starts unready and recovers with it."""
        if await self._connection.probe():
            await self._ensure_group()
            await self._refresh_depth()
        self._maintenance = asyncio.create_task(self._maintain(), name="sentinel-redis-queue")
        logger.info(
            "redis queue at {url}: stream {stream}, consumer {consumer}, visibility timeout "
            "{timeout}s, {depth} incident(s) waiting",
            url=self._connection.display_url,
            stream=self._keys.stream,
            consumer=self.consumer,
            timeout=self._visibility_ms / 1000,
            depth=self._depth,
        )

    async def aclose(self) -> None:
        """Stop the maintenance task, let acknowledgements finish (bounded), leave the group
        when nothing is pending for this consumer, and close the connection."""
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
        if self._background:
            _, late = await asyncio.wait(self._background, timeout=_CLOSE_WAIT_SECONDS)
            for task in late:
                task.cancel()
            if late:
                logger.warning(
                    "{count} acknowledgement(s) did not reach redis; those incidents are "
                    "investigated again after the visibility timeout",
                    count=len(late),
                )
        try:
            mine = await self._client.xpending_range(
                self._keys.stream, self._keys.group, "-", "+", 1, consumername=self.consumer
            )
            if not mine:
                await self._client.xgroup_delconsumer(
                    self._keys.stream, self._keys.group, self.consumer
                )
        except _FAILURES:
            pass
        await self._connection.aclose()

    async def _ensure_group(self) -> None:
        try:
            await self._client.xgroup_create(
                self._keys.stream, self._keys.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- intake ----------------------------------------------------------------------------

    async def put_all(
        self, incidents: Sequence[Incident], origin: PayloadOrigin | None = None
    ) -> bool:
        """All or nothing, atomically in Redis; see the module docstring. An incident whose
        dedupe key another replica set first is not added (it is that replica's). ``origin``
        is not used: each incident is its own stream entry."""
        if not incidents:
            return True
        if self._connection.problem is not None:
            return False
        keys = [self._keys.stream]
        args: list[str | int] = [self._keys.group, self._capacity, self._ttl_ms]
        now = time.time()
        texts = notifications_to_json([incident.notification for incident in incidents])
        for incident, text in zip(incidents, texts, strict=True):
            keys.append(self._keys.dedupe(*key_to_row(incident.notification.dedupe_key)))
            args += incident_fields(incident, text, now)
        try:
            added = int(await self._intake(keys=keys, args=args))
        except _FAILURES as exc:
            self._connection.failed(exc, doing="queue incidents")
            return False
        if added < 0:
            return False
        self._depth += added
        if added < len(incidents):
            logger.info(
                "{count} incident(s) already taken by another replica (same dedupe key)",
                count=len(incidents) - added,
            )
        return True

    # -- workers ---------------------------------------------------------------------------

    async def get(self) -> Incident:
        while True:
            if self._draining:
                await asyncio.Future()  # until the worker is cancelled
            entry = await self._next_entry()
            if cancellation_pending():
                # A cancellation lost during the read (``raise_if_cancelling``): honour it, or
                # the worker would wait forever and the shutdown with it. An entry already
                # read goes back to the stream.
                if entry is not None:
                    self._spawn(self._requeue(entry[0]), what=f"requeue entry {entry[0]}")
                raise asyncio.CancelledError
            if entry is None:
                continue
            entry_id, fields = entry
            if self._draining:
                self._spawn(self._requeue(entry_id), what=f"requeue entry {entry_id}")
                continue
            incident = decode_entry(entry_id, fields, self._cards, self._default_card)
            if isinstance(incident, Unusable):
                unreadable = json.dumps(fields) if incident.unreadable else None
                await self._settle(entry_id, unreadable=unreadable)
                continue
            self._claimed[incident.incident_id] = entry_id
            self._unfinished.add(1)
            return incident

    async def _next_entry(self) -> Entry | None:
        if self._connection.problem is not None:
            await asyncio.sleep(self._connection.probe_interval)
            return None
        client, stream, group = self._client, self._keys.stream, self._keys.group
        try:
            now = time.monotonic()
            if now >= self._next_autoclaim:
                self._next_autoclaim = now + self._autoclaim_every
                cursor, entries, *_ = await client.xautoclaim(
                    stream,
                    group,
                    self.consumer,
                    self._visibility_ms,
                    start_id=self._autoclaim_cursor,
                    count=1,
                )
                self._autoclaim_cursor = cursor
                if cursor != "0-0":
                    self._next_autoclaim = now  # more to scan
                for entry_id, fields in entries:
                    if fields:
                        logger.warning(
                            "taking over incident {incident_id}: its replica did not renew "
                            "its claim within the visibility timeout",
                            incident_id=fields.get("incident_id", entry_id),
                        )
                        return entry_id, fields
            reply = await client.xreadgroup(
                group, self.consumer, {stream: ">"}, count=1, block=_BLOCK_MS
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis restarted empty or was flushed
                await self._quietly(self._ensure_group(), doing="create the consumer group")
                return None
            self._connection.failed(exc, doing="read the queue")
            return None
        except _FAILURES as exc:
            self._connection.failed(exc, doing="read the queue")
            return None
        if not reply:
            return None
        return first_entry(reply)

    def task_done(self, incident: Incident) -> None:
        self._unfinished.finish()
        entry_id = self._claimed.get(incident.incident_id)
        if entry_id is not None:
            self._spawn(self._acknowledge(incident.incident_id, entry_id), what="acknowledge")

    def release(self, incident: Incident) -> None:
        self._unfinished.finish()
        entry_id = self._claimed.get(incident.incident_id)
        if entry_id is not None:
            self._spawn(self._requeue(entry_id, incident.incident_id), what="requeue")

    async def join(self) -> None:
        """Stop taking entries; return when this process's own incidents are finished."""
        self._draining = True
        await self._unfinished.wait_idle()

    # -- background ------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], *, what: str) -> None:
        task = asyncio.create_task(work, name=f"sentinel-redis-{what}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _acknowledge(self, incident_id: str, entry_id: str) -> None:
        async def ack() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xack(self._keys.stream, self._keys.group, entry_id)
                pipe.xdel(self._keys.stream, entry_id)
                await pipe.execute()

        await self._retrying(ack, doing=f"acknowledge incident {incident_id}")
        self._claimed.pop(incident_id, None)

    async def _requeue(self, entry_id: str, incident_id: str | None = None) -> None:
        async def requeue() -> None:
            keys = [self._keys.stream]
            await self._requeue_script(keys=keys, args=[self._keys.group, self.consumer, entry_id])

        await self._retrying(requeue, doing=f"requeue entry {entry_id}")
        if incident_id is not None:
            self._claimed.pop(incident_id, None)

    async def _settle(self, entry_id: str, *, unreadable: str | None = None) -> None:
        async def settle() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                if unreadable is not None:
                    pipe.rpush(self._keys.unreadable, unreadable)
                pipe.xack(self._keys.stream, self._keys.group, entry_id)
                pipe.xdel(self._keys.stream, entry_id)
                await pipe.execute()

        await self._quietly(settle(), doing=f"set aside entry {entry_id}")

    async def _retrying(self, step: Any, *, doing: str) -> None:
        """Run ``step()`` until it succeeds, for up to one visibility timeout (after that the
        entry is another replica's anyway)."""
        deadline = time.monotonic() + self._visibility_ms / 1000
        while True:
            try:
                await step()
                return
            except _FAILURES as exc:
                self._connection.failed(exc, doing=doing)
                if time.monotonic() >= deadline:
                    return
                await asyncio.sleep(self._connection.probe_interval)

    async def _quietly(self, work: Coroutine[Any, Any, None], *, doing: str) -> None:
        try:
            await work
        except _FAILURES as exc:
            self._connection.failed(exc, doing=doing)

    async def _maintain(self) -> None:
        """Probe, renew claims, refresh the depth; never stops before ``aclose``."""
        tick = min(self._connection.probe_interval, self._renew_every)
        while True:
            try:
                healthy = (
                    await self._connection.probe()
                    if self._connection.probe_due()
                    else self._connection.problem is None
                )
                if healthy and self._claimed and time.monotonic() >= self._next_renew:
                    await self._renew_claims()
                if healthy:
                    await self._refresh_depth()
                if healthy and time.monotonic() >= self._next_forget:
                    self._next_forget = time.monotonic() + min(
                        _FORGET_EVERY_SECONDS, self._visibility_ms / 1000
                    )
                    await self._forget_dead_consumers()
            except _FAILURES as exc:
                self._connection.failed(exc, doing="maintain the queue")
            except Exception:
                logger.exception("redis queue maintenance failed; trying again")
            # Also after a round that went well: redis-py may have returned a reply in place
            # of the cancellation that ``aclose`` sent, and this loop would then never end.
            raise_if_cancelling()
            await asyncio.sleep(tick)

    async def _renew_claims(self) -> None:
        self._next_renew = time.monotonic() + self._renew_every
        owned = dict(self._claimed)
        ids = list(owned.values())
        lost = await self._renew(
            keys=[self._keys.stream], args=[self._keys.group, self.consumer, *ids]
        )
        for incident_id, entry_id in owned.items():
            if entry_id in lost:
                logger.warning(
                    "the claim on incident {incident_id} was lost (taken over after the "
                    "visibility timeout, or redis lost its data): another replica may "
                    "investigate it too",
                    incident_id=incident_id,
                )
                self._claimed.pop(incident_id, None)

    async def _forget_dead_consumers(self) -> None:
        """Remove the group's consumers that hold nothing and have not read for longer than
        the visibility timeout: replicas that were killed (a clean stop removes its own). A
        live replica reads every second, so it is never one of them; and a consumer removed by
        mistake is created again by its next read."""
        stream, group = self._keys.stream, self._keys.group
        try:
            consumers = await self._client.xinfo_consumers(stream, group)
        except ResponseError:
            return  # no group yet
        for consumer in consumers:
            name = str(consumer["name"])
            if name == self.consumer or int(consumer["pending"]) > 0:
                continue
            if int(consumer["idle"]) > max(self._visibility_ms, 2_000):
                await self._client.xgroup_delconsumer(stream, group, name)
                logger.info(
                    "redis queue: removed consumer {name} (gone, nothing pending)", name=name
                )

    async def _refresh_depth(self) -> None:
        stream, group = self._keys.stream, self._keys.group
        length = int(await self._client.xlen(stream))
        try:
            summary = await self._client.xpending(stream, group)
            pending = int(summary["pending"])
        except ResponseError:
            pending = 0
        self._depth = max(0, length - pending)
