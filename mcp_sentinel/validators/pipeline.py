"""The synchronous validator pipeline: every action passes each validator, highest priority first.

Contract:

* A validator returns ``Approved``, ``Modified(action, reason)``, ``Rejected(reason)`` or
  ``Retry(delay_seconds, reason)``. It must be fast and pure-CPU (no I/O, no awaiting): the
  pipeline runs it synchronously on the event loop.
* ``Modified`` counts only from a validator whose ``can_modify`` is True; from any other it is
  recorded as ``rejected`` (the validator may not modify) and the pass stops. A modified action
  must keep its kind. Each later validator sees the modified action.
* The first ``Rejected`` stops the pass; ``PipelineResult.rejected`` holds its reason verbatim.
* A ``Retry`` stops the pass: ``check`` returns it, ``run`` sleeps and checks again (bounded).
* A validator that raises is treated as a rejection ("fail closed") naming the exception type.
* A validator may declare ``kinds`` (a set of ``Action.kind`` values); it is then skipped,
  with no decision recorded, for other kinds. Without ``kinds`` it sees every action.
* Every decision is recorded with its duration and counted in
  ``metrics.validator_decisions{validator, result}``. When ``run`` gives up on retries it adds
  a final decision by the validator named ``pipeline``.
* When a ``ToolCall`` passes (not rejected), ``context.tool_calls`` is incremented: the
  per-incident budget of ``tool_policy`` counts approved calls.

Validators that learn from outcomes (the circuit breaker) implement ``OutcomeObserver``; the
caller reports each model run and MCP call outcome through ``ValidatorPipeline.observe``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from mcp_sentinel.telemetry.children import Children
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.validators.actions import Action, ActionKind, ToolCall

DecisionResult = Literal["approved", "modified", "rejected", "retry"]
#: The name under which the pipeline records its own decision (giving up on retries).
PIPELINE_NAME = "pipeline"


@dataclass(frozen=True, slots=True)
class Approved:
    """The action may proceed unchanged."""


@dataclass(frozen=True, slots=True)
class Modified:
    """The action may proceed as ``action`` (same kind), changed for ``reason``."""

    action: Action
    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """The action must not proceed; ``reason`` is safe to log and to show the model."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Not now: ask again after ``delay_seconds``."""

    delay_seconds: float
    reason: str


ValidationResult = Approved | Modified | Rejected | Retry


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class IncidentContext:
    """Per-incident mutable state shared by the validators, owned by the incident's task.

    ``tool_calls`` counts the tool calls the pipeline let through. ``clock`` (monotonic
    seconds) and ``wall_clock`` (aware UTC datetime) are injectable for tests; stateful
    validators shared across incidents (rate limiter, circuit breaker) use their own clock.
    """

    incident_id: str
    card: str
    tool_calls: int = 0
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], datetime] = _utc_now


class SyncValidator(Protocol):
    """One validator. ``validate`` is synchronous, fast and does no I/O."""

    name: str
    priority: int
    can_modify: bool

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult: ...


@runtime_checkable
class OutcomeObserver(Protocol):
    """A validator that learns from outcomes.

    ``target`` is ``model:<endpoint>`` or ``mcp:<server>`` (see ``actions.breaker_target``).
    """

    def observe(self, target: str, ok: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class ValidationDecision:
    """One validator's decision on one action; ``action`` is the action's kind."""

    validator: str
    action: str
    result: DecisionResult
    reason: str
    duration_ms: float
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, for ``IncidentReport.validation`` and the audit log."""
        return {
            "validator": self.validator,
            "action": self.action,
            "result": self.result,
            "reason": self.reason,
            "duration_ms": round(self.duration_ms, 3),
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """The outcome of a pipeline run.

    ``action`` is the action as the validators left it (possibly modified); ``rejected`` is
    the first rejection's reason, or None when the action may proceed.
    """

    action: Action
    rejected: str | None
    decisions: tuple[ValidationDecision, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.rejected is None

    @property
    def modified(self) -> bool:
        return any(decision.result == "modified" for decision in self.decisions)


class ValidatorPipeline:
    """Runs validators by priority (highest first; ties keep the given order). Stateless itself."""

    def __init__(
        self,
        validators: Sequence[SyncValidator],
        metrics: SentinelMetrics | None = None,
        *,
        max_retries: int = 5,
        max_retry_wait_seconds: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        names = [validator.name for validator in validators]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"duplicate validator name(s): {', '.join(duplicated)}")
        if max_retries < 0 or max_retry_wait_seconds < 0:
            raise ValueError("max_retries and max_retry_wait_seconds must not be negative")
        # sorted() is stable, so validators of equal priority keep the order they were given.
        self._validators = tuple(sorted(validators, key=lambda v: -v.priority))
        # Asked once: an isinstance check against a runtime Protocol walks the class each time
        # (some 20 µs), and observe() runs after every model run and MCP call.
        self._observers = tuple(v for v in self._validators if isinstance(v, OutcomeObserver))
        self._kinds: tuple[frozenset[ActionKind] | None, ...] = tuple(
            getattr(v, "kinds", None) for v in self._validators
        )
        self._decisions = None if metrics is None else Children(metrics.validator_decisions)
        self._max_retries = max_retries
        self._max_retry_wait = max_retry_wait_seconds
        self._sleep = sleep

    @property
    def validators(self) -> tuple[SyncValidator, ...]:
        """The validators in the order they run."""
        return self._validators

    def check(self, action: Action, context: IncidentContext) -> PipelineResult | Retry:
        """One synchronous pass; a ``Retry`` from a validator is returned as it is."""
        outcome, _ = self._pass(action, context)
        return outcome

    async def run(self, action: Action, context: IncidentContext) -> PipelineResult:
        """``check`` until it yields a result, sleeping as each ``Retry`` asks.

        At most ``max_retries`` sleeps, and at most ``max_retry_wait_seconds`` slept in total:
        a Retry that would exceed either is turned into a rejection saying so (without
        sleeping in vain). The result's decisions span every pass.
        """
        decisions: list[ValidationDecision] = []
        waited = 0.0
        retries = 0
        while True:
            outcome, passed = self._pass(action, context)
            decisions.extend(passed)
            if isinstance(outcome, PipelineResult):
                return PipelineResult(outcome.action, outcome.rejected, tuple(decisions))
            delay = max(0.0, outcome.delay_seconds)
            reason: str | None = None
            if retries >= self._max_retries:
                reason = f"gave up after {retries} retries: {outcome.reason}"
            elif waited + delay > self._max_retry_wait:
                reason = (
                    f"gave up: waiting {delay:.2f}s more would exceed "
                    f"max_retry_wait_seconds={self._max_retry_wait:g} "
                    f"(waited {waited:.2f}s): {outcome.reason}"
                )
            if reason is not None:
                decisions.append(
                    self._record(
                        PIPELINE_NAME, action, "rejected", reason, duration_ms=0.0, context=context
                    )
                )
                return PipelineResult(action, reason, tuple(decisions))
            await self._sleep(delay)
            waited += delay
            retries += 1

    def observe(self, target: str, ok: bool) -> None:
        """Report an outcome (``model:<endpoint>`` / ``mcp:<server>``) to every observer."""
        for observer in self._observers:
            observer.observe(target, ok)

    # ----------------------------------------------------------------------- internals

    def _pass(
        self, action: Action, context: IncidentContext
    ) -> tuple[PipelineResult | Retry, list[ValidationDecision]]:
        current = action
        decisions: list[ValidationDecision] = []
        for validator, kinds in zip(self._validators, self._kinds, strict=True):
            if kinds is not None and current.kind not in kinds:
                continue
            started = time.perf_counter()
            try:
                result = validator.validate(current, context)
            except Exception as exc:  # fail closed: a broken validator must not wave through
                result = Rejected(f"validator {validator.name} failed: {type(exc).__name__}")
            duration_ms = (time.perf_counter() - started) * 1000
            name = validator.name
            if isinstance(result, Approved):
                decisions.append(
                    self._record(
                        name, current, "approved", "", duration_ms=duration_ms, context=context
                    )
                )
            elif isinstance(result, Modified):
                problem = None
                if not validator.can_modify:
                    problem = f"validator {name} may not modify actions ({result.reason})"
                elif result.action.kind != current.kind:
                    problem = (
                        f"validator {name} turned a {current.kind} into a {result.action.kind}"
                    )
                if problem is not None:
                    decisions.append(
                        self._record(
                            name,
                            current,
                            "rejected",
                            problem,
                            duration_ms=duration_ms,
                            context=context,
                        )
                    )
                    return PipelineResult(current, problem, tuple(decisions)), decisions
                decisions.append(
                    self._record(
                        name,
                        current,
                        "modified",
                        result.reason,
                        duration_ms=duration_ms,
                        context=context,
                    )
                )
                current = result.action
            elif isinstance(result, Rejected):
                decisions.append(
                    self._record(
                        name,
                        current,
                        "rejected",
                        result.reason,
                        duration_ms=duration_ms,
                        context=context,
                    )
                )
                return PipelineResult(current, result.reason, tuple(decisions)), decisions
            else:
                decisions.append(
                    self._record(
                        name,
                        current,
                        "retry",
                        result.reason,
                        duration_ms=duration_ms,
                        context=context,
                    )
                )
                return result, decisions
        if isinstance(current, ToolCall):
            context.tool_calls += 1
        return PipelineResult(current, None, tuple(decisions)), decisions

    def _record(
        self,
        validator: str,
        action: Action,
        result: DecisionResult,
        reason: str,
        *,
        duration_ms: float,
        context: IncidentContext,
    ) -> ValidationDecision:
        if self._decisions is not None:
            self._decisions(validator, result).inc()
        return ValidationDecision(
            validator=validator,
            action=action.kind,
            result=result,
            reason=reason,
            duration_ms=duration_ms,
            at=context.wall_clock(),
        )
