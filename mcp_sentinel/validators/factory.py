"""Build the validator pipeline from the ``validators`` config section.

``app.py`` calls ``build_pipeline`` once; the pipeline and its stateful validators (rate
limiter, circuit breaker) are shared by every incident of the daemon. ``clock`` (monotonic
seconds) drives the rate limiter and the circuit breaker, ``wall_clock`` the change-freeze
windows; tests inject both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.validators.circuit_breaker import CircuitBreaker
from mcp_sentinel.validators.grounding import GroundingCheck
from mcp_sentinel.validators.injection_guard import InjectionGuard
from mcp_sentinel.validators.injection_scan import InjectionClassifier
from mcp_sentinel.validators.pipeline import SyncValidator, ValidatorPipeline
from mcp_sentinel.validators.rate_limiter import RateLimiter
from mcp_sentinel.validators.secret_redaction import SecretRedactor
from mcp_sentinel.validators.settings import ValidatorsSettings
from mcp_sentinel.validators.tool_policy import Approver, ToolPolicy


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_validators(
    settings: ValidatorsSettings,
    metrics: SentinelMetrics | None = None,
    *,
    read_only_tools: Mapping[str, frozenset[str]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], datetime] = _utc_now,
    approver: Approver | None = None,
    classifier: InjectionClassifier | None = None,
) -> list[SyncValidator]:
    """The enabled validators, configured, in declaration order (the pipeline sorts them)."""
    validators: list[SyncValidator] = []
    guard = settings.injection_guard
    if guard.enabled:
        validators.append(
            InjectionGuard(priority=guard.priority, action=guard.action, classifier=classifier)
        )
    policy = settings.tool_policy
    if policy.enabled:
        validators.append(
            ToolPolicy(
                priority=policy.priority,
                deny=policy.deny,
                approval=policy.approval,
                freeze_windows=[window.window() for window in policy.freeze_windows],
                max_tool_calls=policy.max_tool_calls,
                approver=approver,
                read_only_tools=read_only_tools,
                wall_clock=wall_clock,
            )
        )
    limits = settings.rate_limiter
    if limits.enabled:
        validators.append(
            RateLimiter(
                priority=limits.priority,
                runs_per_minute=limits.runs_per_minute,
                tool_calls_per_minute=limits.tool_calls_per_minute,
                per_card_runs_per_minute=limits.per_card_runs_per_minute,
                per_card_tool_calls_per_minute=limits.per_card_tool_calls_per_minute,
                clock=clock,
            )
        )
    breaker = settings.circuit_breaker
    if breaker.enabled:
        validators.append(
            CircuitBreaker(
                priority=breaker.priority,
                failure_ratio=breaker.failure_ratio,
                window_seconds=breaker.window_seconds,
                open_seconds=breaker.open_seconds,
                min_calls=breaker.min_calls,
                metrics=metrics,
                clock=clock,
            )
        )
    if settings.secret_redaction.enabled:
        validators.append(SecretRedactor(priority=settings.secret_redaction.priority))
    grounding = settings.grounding
    if grounding.enabled:
        validators.append(
            GroundingCheck(
                priority=grounding.priority,
                penalty_per_claim=grounding.penalty_per_claim,
                min_factor=grounding.min_factor,
            )
        )
    return validators


def build_pipeline(
    settings: ValidatorsSettings,
    metrics: SentinelMetrics | None = None,
    *,
    read_only_tools: Mapping[str, frozenset[str]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], datetime] = _utc_now,
    approver: Approver | None = None,
    classifier: InjectionClassifier | None = None,
) -> ValidatorPipeline:
    """The pipeline of every enabled validator, counting decisions in ``metrics``.

    ``read_only_tools``: server -> the tools known to be read-only; for a server listed, any
    other tool is treated as mutating by ``tool_policy`` (see ``ToolPolicy.is_mutating``).
    ``approver`` decides mutating calls under ``approval: required``; ``classifier`` is
    consulted by ``injection_guard`` in addition to its heuristics.
    """
    validators = build_validators(
        settings,
        metrics,
        read_only_tools=read_only_tools,
        clock=clock,
        wall_clock=wall_clock,
        approver=approver,
        classifier=classifier,
    )
    return ValidatorPipeline(validators, metrics)
