"""The retry rules every sink shares: classification, Retry-After, backoff, giving up."""

from __future__ import annotations

import email.utils

import pytest

from mcp_sentinel.errors import PermanentError, RetryableError
from mcp_sentinel.sinks.retry import RetryPolicy, error_for_status, parse_retry_after
from tests.sinks.support import RecordingSleep


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), (" 1.5 ", 1.5), ("0", 0.0), ("-3", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = 1_763_700_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, None), (204, None), (429, RetryableError), (408, RetryableError),
     (500, RetryableError), (503, RetryableError), (400, PermanentError),
     (401, PermanentError), (404, PermanentError), (410, PermanentError)],
)  # fmt: skip
def test_status_classification(status: int, kind: type[Exception] | None) -> None:
    error = error_for_status(status, {"retry-after": "2"}, what="jira at h")
    assert (type(error) if error is not None else None) is kind
    if isinstance(error, RetryableError):
        assert error.retry_after == 2.0
        assert str(error) == f"jira at h answered HTTP {status}"


async def test_backoff_grows_is_capped_and_retry_after_wins() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=6, max_wait=1.0, initial_wait=0.1, sleep=sleep)
    failures = [None, None, 3.0 / 4, None, None]  # retry_after of each failing attempt

    async def attempt() -> str:
        if failures:
            raise RetryableError("x answered HTTP 503", retry_after=failures.pop(0))
        return "done"

    assert await policy.call(attempt, what="x") == "done"
    first, second, third, fourth, fifth = sleep.waits
    assert 0.1 <= first <= 0.2 and 0.2 <= second <= 0.3  # 0.1 * 2**n plus up to 0.1 jitter
    assert third == 0.75  # the server's Retry-After, exactly
    assert 0.8 <= fourth <= 0.9 and fifth == 1.0  # capped at max_wait


async def test_gives_up_after_the_attempts_or_an_over_long_retry_after() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=3, max_wait=60, initial_wait=0.01, sleep=sleep)
    calls = 0

    async def failing(retry_after: float | None) -> None:
        nonlocal calls
        calls += 1
        raise RetryableError("slack at h answered HTTP 429", retry_after=retry_after)

    with pytest.raises(RetryableError, match=r"HTTP 429 \(gave up after 3 attempt\(s\)\)$"):
        await policy.call(lambda: failing(None), what="slack")
    assert calls == 3 and len(sleep.waits) == 2

    calls = 0
    with pytest.raises(RetryableError, match=r"Retry-After 120s is over the 60s limit"):
        await policy.call(lambda: failing(120), what="slack")
    assert calls == 1  # waiting less than asked would only earn another 429

    async def rejected() -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("jira at h answered HTTP 403")

    calls = 0
    with pytest.raises(PermanentError):
        await policy.call(rejected, what="jira")
    assert calls == 1
