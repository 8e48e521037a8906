"""Rate limiter: token buckets, global and per card, deterministic with an injected clock."""

from __future__ import annotations

import pytest

from mcp_sentinel.validators import (
    AgentInput,
    Approved,
    Retry,
    ToolCall,
    ToolOutput,
    ValidatorPipeline,
)
from mcp_sentinel.validators.rate_limiter import RateLimiter, TokenBucket
from tests.validators.conftest import MonotonicClock, context


def run_for(card: str) -> AgentInput:
    return AgentInput(card, "inc-1", "Investigate.", "<alert-data>")


def call_for(card: str) -> ToolCall:
    return ToolCall(card, "inc-1", "prom", "query", {}, mutating=False)


def test_a_burst_over_the_limit_is_asked_to_retry_with_the_right_delay() -> None:
    clock = MonotonicClock()
    limiter = RateLimiter(runs_per_minute=30, clock=clock)  # one token every 2 s
    results = [limiter.validate(run_for("Checkout"), context()) for _ in range(31)]
    assert all(isinstance(result, Approved) for result in results[:30])
    assert results[30] == Retry(
        2.0, "rate limit: agent runs (all cards) over 30/min; next slot in 2.00s"
    )
    clock.advance(1.0)
    retry = limiter.validate(run_for("Checkout"), context())
    assert isinstance(retry, Retry) and retry.delay_seconds == pytest.approx(
        1.0
    )  # refusals are free
    clock.advance(1.0)
    assert isinstance(limiter.validate(run_for("Checkout"), context()), Approved)
    assert isinstance(limiter.validate(run_for("Checkout"), context()), Retry)


def test_runs_and_tool_calls_have_separate_buckets() -> None:
    clock = MonotonicClock()
    limiter = RateLimiter(runs_per_minute=1, tool_calls_per_minute=2, clock=clock)
    assert isinstance(limiter.validate(run_for("A"), context()), Approved)
    assert isinstance(limiter.validate(run_for("A"), context()), Retry)
    assert isinstance(limiter.validate(call_for("A"), context()), Approved)
    assert isinstance(limiter.validate(call_for("A"), context()), Approved)
    retry = limiter.validate(call_for("A"), context())
    assert retry == Retry(
        30.0, "rate limit: tool calls (all cards) over 2/min; next slot in 30.00s"
    )


def test_per_card_buckets_and_tokens_taken_only_when_granted() -> None:
    clock = MonotonicClock()
    limiter = RateLimiter(tool_calls_per_minute=4, per_card_tool_calls_per_minute=2, clock=clock)
    assert isinstance(limiter.validate(call_for("A"), context()), Approved)
    assert isinstance(limiter.validate(call_for("A"), context()), Approved)
    refused = limiter.validate(call_for("A"), context())
    assert refused == Retry(30.0, "rate limit: tool calls (card A) over 2/min; next slot in 30.00s")
    for _ in range(5):  # card A's refusals must not drain the shared bucket
        limiter.validate(call_for("A"), context())
    assert isinstance(limiter.validate(call_for("B"), context()), Approved)
    assert isinstance(limiter.validate(call_for("B"), context()), Approved)
    shared = limiter.validate(call_for("C"), context())
    assert isinstance(shared, Retry) and "(all cards)" in shared.reason


def test_other_actions_are_not_limited() -> None:
    limiter = RateLimiter(runs_per_minute=1, tool_calls_per_minute=1, clock=MonotonicClock())
    output = ToolOutput("A", "inc-1", "prom", "query", "up 1", is_error=False)
    assert all(isinstance(limiter.validate(output, context()), Approved) for _ in range(5))


def test_bucket_refills_to_capacity_only() -> None:
    bucket = TokenBucket(60, now=0.0)
    for _ in range(60):
        bucket.take(0.0)
    assert bucket.wait(0.0) == pytest.approx(1.0)
    assert bucket.tokens(1000.0) == 60  # a long pause does not bank more than a minute


async def test_run_waits_through_the_limit_and_the_call_is_not_dropped() -> None:
    clock = MonotonicClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)  # time passes exactly as long as the pipeline waited

    pipeline = ValidatorPipeline(
        [RateLimiter(tool_calls_per_minute=6, clock=clock)], sleep=sleep
    )  # one token every 10 s
    ctx = context()
    for _ in range(6):
        assert (await pipeline.run(call_for("A"), ctx)).ok
    assert slept == []
    result = await pipeline.run(call_for("A"), ctx)
    assert result.ok and slept == [pytest.approx(10.0)]
    assert [d.result for d in result.decisions] == ["retry", "approved"]
    assert ctx.tool_calls == 7
