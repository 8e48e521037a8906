"""The exception tree of mcp_sentinel.

::

    SentinelError                 every error raised on purpose by this package
    ├── ConfigError               the configuration is invalid; carries every problem found
    ├── RetryableError            a transient failure of an outside party (5xx, 429, timeout,
    │                             connection reset); ``retry_after`` is the delay it asked for
    └── PermanentError            a failure that retrying will not fix (4xx, bad output)

Messages never carry a secret: whoever raises one of these builds the message from facts
that are safe to log (a status code, a field name, a host), never from credentials or headers.
"""

from __future__ import annotations

from dataclasses import dataclass


class SentinelError(Exception):
    """Base of every error that mcp_sentinel raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a configuration: where it is (``incident_cards[2].prompt``) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(SentinelError):
    """The configuration cannot be used; ``problems`` lists every problem found, not the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


class RetryableError(SentinelError):
    """A transient failure; the caller may try again, after ``retry_after`` seconds if set."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(SentinelError):
    """A failure that trying again will not fix."""
