"""Validator decisions as span events, so a trace shows what the pipeline decided and why."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import trace

from mcp_sentinel.validators.pipeline import ValidationDecision


def record_decisions(decisions: Iterable[ValidationDecision]) -> None:
    """Add one ``validator.decision`` event per decision to the current span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for decision in decisions:
        span.add_event(
            "validator.decision",
            {
                "sentinel.validator": decision.validator,
                "sentinel.validator.action": decision.action,
                "sentinel.validator.result": decision.result,
                "sentinel.validator.reason": decision.reason,
                "sentinel.validator.duration_ms": decision.duration_ms,
            },
        )
