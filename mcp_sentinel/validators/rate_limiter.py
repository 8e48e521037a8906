"""Rate limiter: token buckets for agent runs and tool calls, global and per card.

Each limit is a bucket holding up to one minute's worth of tokens (so a burst of
``runs_per_minute`` is allowed after a quiet minute) that refills continuously at
``rate / 60`` tokens per second. An ``AgentInput`` needs one token from the global run bucket
and, when ``per_card_runs_per_minute`` is set, one from the card's; a ``ToolCall`` likewise
from the tool-call buckets. Tokens are taken only when every bucket involved has one, so a
refused request costs nothing. Over budget -> ``Retry`` with the delay until every bucket
involved will have a token again.

Shared by every incident (the buckets are daemon-wide); one event loop runs it, so no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mcp_sentinel.validators.actions import Action, ActionKind, AgentInput, ToolCall
from mcp_sentinel.validators.pipeline import (
    Approved,
    IncidentContext,
    Retry,
    ValidationResult,
)

# Refill arithmetic in floats: a token "due" at t is granted at t even if rounding says 0.9999.
_EPSILON = 1e-9


class TokenBucket:
    """``capacity`` tokens at most, refilled at ``rate_per_minute / 60`` per second."""

    def __init__(self, rate_per_minute: float, now: float, capacity: float | None = None) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_minute = rate_per_minute
        self.capacity = max(1.0, rate_per_minute if capacity is None else capacity)
        self._per_second = rate_per_minute / 60.0
        self._tokens = self.capacity
        self._updated = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (refilled lazily)."""
        if now > self._updated:
            self._tokens = min(
                self.capacity, self._tokens + (now - self._updated) * self._per_second
            )
            self._updated = now
        return self._tokens

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0.0 when one is available now)."""
        missing = 1.0 - self.tokens(now)
        return 0.0 if missing <= _EPSILON else missing / self._per_second

    def take(self, now: float) -> None:
        """Take one token; call only after ``wait(now)`` returned 0."""
        self._tokens = max(0.0, self.tokens(now) - 1.0)


class RateLimiter:
    """The ``rate_limiter`` validator. ``clock`` is monotonic seconds (injectable for tests)."""

    name = "rate_limiter"
    can_modify = False
    kinds: frozenset[ActionKind] = frozenset({"agent_input", "tool_call"})

    def __init__(
        self,
        *,
        priority: int = 50,
        runs_per_minute: float = 30,
        tool_calls_per_minute: float = 300,
        per_card_runs_per_minute: float | None = None,
        per_card_tool_calls_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.priority = priority
        self._clock = clock
        now = clock()
        self._runs = TokenBucket(runs_per_minute, now)
        self._tools = TokenBucket(tool_calls_per_minute, now)
        self._card_runs_rate = per_card_runs_per_minute
        self._card_tools_rate = per_card_tool_calls_per_minute
        self._card_runs: dict[str, TokenBucket] = {}
        self._card_tools: dict[str, TokenBucket] = {}

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        now = self._clock()
        if isinstance(action, AgentInput):
            what = "agent runs"
            buckets = self._buckets(self._runs, self._card_runs, self._card_runs_rate, action.card)
        elif isinstance(action, ToolCall):
            what = "tool calls"
            buckets = self._buckets(
                self._tools, self._card_tools, self._card_tools_rate, action.card
            )
        else:
            return Approved()
        waits = [(bucket.wait(now), scope, bucket) for scope, bucket in buckets]
        delay, scope, bucket = max(waits, key=lambda item: item[0])
        if delay > 0:
            return Retry(
                delay,
                f"rate limit: {what} {scope} over {bucket.rate_per_minute:g}/min; "
                f"next slot in {delay:.2f}s",
            )
        for _, _, granted in waits:
            granted.take(now)
        return Approved()

    def _buckets(
        self,
        shared: TokenBucket,
        per_card: dict[str, TokenBucket],
        card_rate: float | None,
        card: str,
    ) -> list[tuple[str, TokenBucket]]:
        buckets = [("(all cards)", shared)]
        if card_rate is not None:
            bucket = per_card.get(card)
            if bucket is None:
                bucket = per_card[card] = TokenBucket(card_rate, self._clock())
            buckets.append((f"(card {card})", bucket))
        return buckets
