"""The Redis connection of the ``redis`` backend, its key names and its health.

``RedisConnection`` owns one ``redis.asyncio`` client (a pool: every worker's blocking read
holds a connection of its own). Commands fail fast (one immediate retry on a broken
connection, none on a timeout; short socket timeouts): a refused payload is Alertmanager's to
retry, so waiting on a dead Redis would only hold the webhook open.

Health contract: ``problem`` is None while the last probe (``PING``, every ``probe_interval``
seconds, run by the queue's maintenance task) and every command since succeeded; a failed
command or probe sets it, and only a successful probe clears it. While it is set the dispatcher
refuses intake (503) and ``/readyz`` answers 503.

The password (in the URL or ``dispatcher.redis_password``) never appears in a log line or a
problem: ``redacted_url`` drops it, and errors are reported by their class and message, which
redis-py does not fill with credentials.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis_asyncio
from loguru import logger
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

# Longer than any blocking read (``BLOCK``) the queue issues, so a block is never a timeout.
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0


def redacted_url(url: str) -> str:
    """``url`` without its password (and user), for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RedisKeys:
    """Key names under one prefix. The prefix is wrapped in a hash tag (``{prefix}``) so every
    key of one deployment hashes to one cluster slot and a script may touch them all."""

    def __init__(self, prefix: str) -> None:
        self.base = "{" + prefix + "}"
        self.stream = f"{self.base}:incidents"
        self.unreadable = f"{self.base}:unreadable"
        self.group = "sentinel-workers"

    def dedupe(self, fingerprint: str, starts_at: str, status: str) -> str:
        return f"{self.base}:dedupe:{fingerprint}|{starts_at}|{status}"


def cancellation_pending() -> bool:
    """True when the current task has been asked to cancel (see ``raise_if_cancelling``)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` when the current task has a cancellation pending.

    redis-py can lose a cancellation that arrives during a command: the command then returns
    its reply, or fails with a redis error, and the task goes on as if never cancelled
    (redis/redis-py#2028, #2551; seen with 8.1 on a busy core: the queue's maintenance loop
    went on forever and the shutdown waited on it). A loop around redis calls calls this
    after each of them, so a cancellation ends it whatever redis-py did with it.
    """
    if cancellation_pending():
        raise asyncio.CancelledError


class RedisConnection:
    """One client and its health. Owned by the backend; ``aclose`` releases the pool."""

    def __init__(
        self,
        url: str,
        *,
        password: SecretStr | None = None,
        key_prefix: str,
        probe_interval: float = 1.0,
    ) -> None:
        self.client: redis_asyncio.Redis = redis_asyncio.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # One immediate retry on a broken connection (a pooled one gone stale across a
            # Redis restart); none on a timeout. Safe for every command here: the intake
            # script run twice finds its dedupe keys set and adds nothing the second time.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            protocol=2,
            # A password in the URL wins over this one.
            password=password.get_secret_value() if password is not None else None,
        )
        self.keys = RedisKeys(key_prefix)
        self.display_url = redacted_url(url)
        self.probe_interval = probe_interval
        self._problem: str | None = None
        self._last_probe = 0.0

    @property
    def problem(self) -> str | None:
        """Why Redis cannot be used now, or None."""
        return self._problem

    def failed(self, exc: BaseException, *, doing: str) -> None:
        """Record that a command failed: intake is refused until a probe succeeds.

        Raises ``CancelledError`` instead, recording nothing, when the current task has a
        cancellation pending: the failure is then how redis-py surfaced the cancellation it
        lost (``raise_if_cancelling``), not a Redis problem, and the caller stops as asked.
        """
        raise_if_cancelling()
        message = f"redis at {self.display_url} failed to {doing}: {type(exc).__name__}: {exc}"
        if self._problem is None:
            logger.error("{message}; refusing alerts until it answers again", message=message)
        self._problem = message

    async def probe(self) -> bool:
        """``PING``; sets or clears ``problem``. True when Redis answered."""
        self._last_probe = time.monotonic()
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self.failed(exc, doing="answer PING")
            return False
        if self._problem is not None:
            logger.info("redis at {url} answers again: accepting alerts", url=self.display_url)
            self._problem = None
        return True

    def probe_due(self) -> bool:
        return time.monotonic() - self._last_probe >= self.probe_interval

    async def aclose(self) -> None:
        await self.client.aclose()
