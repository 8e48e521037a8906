"""Retry rules for every outbound sink call, written once.

Classification (``error_for_status``, ``transport_error``):

* 2xx: success.
* 429, 408 and 5xx: ``RetryableError`` with ``retry_after`` from the ``Retry-After`` header
  (seconds or an HTTP date) when the server sent one.
* any other status: ``PermanentError``; retrying a 400 or a 403 cannot help.
* a connection error or a timeout: ``RetryableError`` without ``retry_after``.

Waiting (``WaitRetryAfter``): exactly the server's ``Retry-After`` when it gave one, else
exponential backoff with jitter (``initial * 2**(n-1)`` plus up to ``initial`` of jitter) capped
at ``max_wait``. Stopping: after ``max_attempts`` attempts, or at once when the server asks for
a wait longer than ``max_wait`` (a shorter wait would only earn another 429).

Messages are built from a ``what`` the caller gives ("slack chat.postMessage at slack.com"),
status codes and exception type names: never from a URL, a header or an exception's text, which
may carry credentials.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
from loguru import logger
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.stop import stop_after_attempt, stop_base
from tenacity.wait import wait_base

from mcp_sentinel.errors import PermanentError, RetryableError, SentinelError
from mcp_sentinel.sinks.settings import RetrySettings

T = TypeVar("T")

_RETRYABLE_STATUSES = frozenset({408, 429})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def is_retryable_status(status: int) -> bool:
    return status in _RETRYABLE_STATUSES or 500 <= status <= 599


def error_for_status(
    status: int, headers: Mapping[str, str], *, what: str, detail: str = ""
) -> SentinelError | None:
    """None for a 2xx; else the error to raise, retryable or not. ``detail`` must be safe to log
    (an error code, field names)."""
    if 200 <= status <= 299:
        return None
    suffix = f": {detail}" if detail else ""
    if is_retryable_status(status):
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        return RetryableError(f"{what} answered HTTP {status}{suffix}", retry_after=retry_after)
    return PermanentError(f"{what} answered HTTP {status}{suffix}")


def transport_error(exc: BaseException, *, what: str) -> RetryableError:
    """A connection failure or timeout as a ``RetryableError`` naming only its kind.

    The exception's own text is left out: aiohttp's can include the full URL (a Slack webhook
    URL is a credential).
    """
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return RetryableError(f"{what}: timed out")
    return RetryableError(f"{what}: connection failed ({type(exc).__name__})")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


class WaitRetryAfter(wait_base):
    """The server's ``Retry-After`` when the last error carried one, else exponential backoff
    with jitter, capped at ``maximum``."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        retry_after = _retry_after_of(retry_state)
        if retry_after is not None:
            return retry_after
        exponent = min(retry_state.attempt_number - 1, 32)  # 2**32 * anything is past any cap
        backoff = self._initial * 2.0**exponent + random.uniform(0, self._initial)
        return min(self._maximum, backoff)


class StopWhenRetryAfterTooLong(stop_base):
    """Stop when the server asks for a longer wait than ``maximum``."""

    def __init__(self, maximum: float) -> None:
        self._maximum = maximum

    def __call__(self, retry_state: RetryCallState) -> bool:
        retry_after = _retry_after_of(retry_state)
        return retry_after is not None and retry_after > self._maximum


def _retry_after_of(retry_state: RetryCallState) -> float | None:
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc.retry_after if isinstance(exc, RetryableError) else None


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of ``RetryableError``. ``sleep`` is the clock's seam (tests record the
    waits instead of sleeping); everything else comes from ``RetrySettings``."""

    max_attempts: int = 5
    max_wait: float = 60.0
    initial_wait: float = 0.5
    sleep: Callable[[float], Awaitable[None]] = field(default=_sleep, compare=False)

    @classmethod
    def from_settings(
        cls, settings: RetrySettings, *, sleep: Callable[[float], Awaitable[None]] | None = None
    ) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            max_wait=settings.max_wait_seconds,
            initial_wait=settings.initial_wait_seconds,
            sleep=sleep or _sleep,
        )

    async def call(self, attempt: Callable[[], Awaitable[T]], *, what: str) -> T:
        """Run ``attempt`` until it succeeds, raises a non-retryable error, or the policy gives
        up; then the last ``RetryableError`` is raised, saying how many attempts were made."""
        retrying = AsyncRetrying(
            sleep=self.sleep,
            stop=stop_after_attempt(self.max_attempts) | StopWhenRetryAfterTooLong(self.max_wait),
            wait=WaitRetryAfter(self.initial_wait, self.max_wait),
            retry=retry_if_exception_type(RetryableError),
            before_sleep=self._log_retry(what),
            reraise=True,
        )

        async def run() -> T:
            # tenacity awaits only coroutine functions; a lambda returning an awaitable
            # would come back un-awaited, so always hand it one.
            return await attempt()

        try:
            result: T = await retrying(run)
        except RetryableError as exc:
            made = retrying.statistics.get("attempt_number", 1)
            reason = (
                f"Retry-After {exc.retry_after:g}s is over the {self.max_wait:g}s limit"
                if exc.retry_after is not None and exc.retry_after > self.max_wait
                else f"gave up after {made} attempt(s)"
            )
            raise RetryableError(f"{exc} ({reason})", retry_after=exc.retry_after) from None
        return result

    def _log_retry(self, what: str) -> Callable[[RetryCallState], None]:
        def log(state: RetryCallState) -> None:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            logger.warning(
                "{what}: attempt {attempt}/{attempts} failed ({error}); retrying in {wait:.1f}s",
                what=what,
                attempt=state.attempt_number,
                attempts=self.max_attempts,
                error=error,
                wait=state.upcoming_sleep,
            )

        return log
