"""Circuit breaker: stop calling a model endpoint or MCP server that keeps failing.

Targets are ``model:<endpoint>`` (an ``AgentInput``; see ``AgentInput.model_endpoint``) and
``mcp:<server>`` (a ``ToolCall``); ``actions.breaker_target`` names them. The caller reports
each outcome with ``observe(target, ok)`` (through ``ValidatorPipeline.observe``).

States, per target:

* closed     every call passes. Outcomes go into a sliding window of ``window_seconds``; when
             it holds at least ``min_calls`` outcomes and the failed share reaches
             ``failure_ratio``, the circuit opens.
* open       calls are Rejected ("circuit open for mcp:prom after 6/8 failures; retry after
             23s") until ``open_seconds`` have passed; late outcomes of calls made before it
             opened are ignored.
* half-open  after ``open_seconds`` the next call is let through as a probe and the others are
             Rejected while it is in flight. The probe's outcome decides: success closes the
             circuit (with an empty window), failure opens it again for ``open_seconds``. A
             probe whose outcome never arrives is replaced after ``open_seconds``.

``metrics.circuit_breaker_state{breaker=<target>}`` is 0 closed, 1 half-open, 2 open. The open
-> half-open move happens when a call arrives, so the gauge shows 2 until then.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.validators.actions import Action, ActionKind, breaker_target
from mcp_sentinel.validators.pipeline import (
    Approved,
    IncidentContext,
    Rejected,
    ValidationResult,
)

State = Literal["closed", "half_open", "open"]
_GAUGE: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(slots=True)
class _Circuit:
    state: State = "closed"
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    opened_at: float = 0.0
    why: str = ""
    probe_started: float | None = None


class CircuitBreaker:
    """The ``circuit_breaker`` validator; also an ``OutcomeObserver``. Shared daemon-wide."""

    name = "circuit_breaker"
    can_modify = False
    kinds: frozenset[ActionKind] = frozenset({"agent_input", "tool_call"})

    def __init__(
        self,
        *,
        priority: int = 40,
        failure_ratio: float = 0.5,
        window_seconds: float = 60,
        open_seconds: float = 30,
        min_calls: int = 5,
        metrics: SentinelMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if window_seconds <= 0 or open_seconds <= 0 or min_calls < 1:
            raise ValueError("window_seconds and open_seconds must be positive, min_calls >= 1")
        self.priority = priority
        self._ratio = failure_ratio
        self._window = window_seconds
        self._open_for = open_seconds
        self._min_calls = min_calls
        self._metrics = metrics
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, target: str) -> State:
        """The target's state as last updated (an unknown target is closed)."""
        circuit = self._circuits.get(target)
        return "closed" if circuit is None else circuit.state

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        target = breaker_target(action)
        circuit = None if target is None else self._circuits.get(target)
        if target is None or circuit is None or circuit.state == "closed":
            return Approved()
        now = self._clock()
        if circuit.state == "open":
            remaining = circuit.opened_at + self._open_for - now
            if remaining > 0:
                return Rejected(
                    f"circuit open for {target} after {circuit.why}; "
                    f"retry after {math.ceil(remaining)}s"
                )
            self._move(target, circuit, "half_open")
            circuit.probe_started = now
            return Approved()  # this call is the probe
        started = circuit.probe_started
        if started is not None and now - started < self._open_for:
            wait = math.ceil(started + self._open_for - now)
            return Rejected(
                f"circuit half-open for {target}: a probe call is in flight; retry after {wait}s"
            )
        circuit.probe_started = now  # the previous probe never reported back: send another
        return Approved()

    def observe(self, target: str, ok: bool) -> None:
        """Record one outcome for ``target`` and move its state as the rules above say."""
        now = self._clock()
        circuit = self._circuits.get(target)
        if circuit is None:
            circuit = self._circuits[target] = _Circuit()
            self._export(target, circuit)
        if circuit.state == "open":
            return
        if circuit.state == "half_open":
            circuit.probe_started = None
            if ok:
                circuit.outcomes.clear()
                self._move(target, circuit, "closed")
            else:
                self._open(target, circuit, now, "a failed half-open probe")
            return
        outcomes = circuit.outcomes
        outcomes.append((now, ok))
        while outcomes and outcomes[0][0] <= now - self._window:
            outcomes.popleft()
        failures = sum(1 for _, good in outcomes if not good)
        if len(outcomes) >= self._min_calls and failures / len(outcomes) >= self._ratio:
            self._open(target, circuit, now, f"{failures}/{len(outcomes)} failures")

    def _open(self, target: str, circuit: _Circuit, now: float, why: str) -> None:
        circuit.opened_at = now
        circuit.why = why
        circuit.outcomes.clear()
        self._move(target, circuit, "open")

    def _move(self, target: str, circuit: _Circuit, state: State) -> None:
        circuit.state = state
        self._export(target, circuit)

    def _export(self, target: str, circuit: _Circuit) -> None:
        if self._metrics is not None:
            self._metrics.circuit_breaker_state.labels(target).set(_GAUGE[circuit.state])
