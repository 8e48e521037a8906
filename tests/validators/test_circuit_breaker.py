"""Circuit breaker: a flapping target goes closed -> open -> half-open -> closed/open."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.validators import (
    AgentInput,
    Approved,
    Rejected,
    ToolCall,
    ValidatorPipeline,
    breaker_target,
)
from mcp_sentinel.validators.circuit_breaker import CircuitBreaker
from tests.validators.conftest import MonotonicClock, context

PROM = ToolCall("Checkout", "inc-1", "prom", "query", {}, mutating=False)
LOKI = ToolCall("Checkout", "inc-1", "loki", "query", {}, mutating=False)


def gauge(metrics: SentinelMetrics, target: str) -> float | None:
    return metrics.registry.get_sample_value("sentinel_circuit_breaker_state", {"breaker": target})


def test_targets() -> None:
    assert breaker_target(PROM) == "mcp:prom"
    assert breaker_target(AgentInput("c", "i", "x", "y")) == "model:default"
    assert breaker_target(AgentInput("c", "i", "x", "y", model_endpoint="azure-east")) == (
        "model:azure-east"
    )


def test_a_flapping_target_trips_probes_and_recovers() -> None:
    clock = MonotonicClock()
    metrics = SentinelMetrics(CollectorRegistry())
    breaker = CircuitBreaker(
        failure_ratio=0.5, window_seconds=60, open_seconds=30, metrics=metrics, clock=clock
    )
    pipeline = ValidatorPipeline([breaker], metrics)

    # Closed: calls pass while outcomes accumulate; 2 failures of 4 is below min_calls (5).
    for ok in (True, False, True, False):
        assert isinstance(breaker.validate(PROM, context()), Approved)
        pipeline.observe("mcp:prom", ok)
        clock.advance(1)
    assert breaker.state("mcp:prom") == "closed" and gauge(metrics, "mcp:prom") == 0
    # The fifth outcome makes 3/5 failures: open.
    pipeline.observe("mcp:prom", False)
    assert breaker.state("mcp:prom") == "open" and gauge(metrics, "mcp:prom") == 2

    clock.advance(7)
    assert breaker.validate(PROM, context()) == Rejected(
        "circuit open for mcp:prom after 3/5 failures; retry after 23s"
    )
    assert isinstance(breaker.validate(LOKI, context()), Approved)  # other targets unaffected
    pipeline.observe("mcp:prom", True)  # a late outcome of an earlier call changes nothing
    assert breaker.state("mcp:prom") == "open"

    # Half-open after open_seconds: one probe goes through, the rest wait for it.
    clock.advance(23)
    assert isinstance(breaker.validate(PROM, context()), Approved)
    assert breaker.state("mcp:prom") == "half_open" and gauge(metrics, "mcp:prom") == 1
    second = breaker.validate(PROM, context())
    assert isinstance(second, Rejected) and "a probe call is in flight" in second.reason

    # The probe fails: open again for open_seconds.
    pipeline.observe("mcp:prom", False)
    assert breaker.state("mcp:prom") == "open" and gauge(metrics, "mcp:prom") == 2
    assert breaker.validate(PROM, context()) == Rejected(
        "circuit open for mcp:prom after a failed half-open probe; retry after 30s"
    )

    # Next probe succeeds: closed, with a clean window.
    clock.advance(30)
    assert isinstance(breaker.validate(PROM, context()), Approved)
    pipeline.observe("mcp:prom", True)
    assert breaker.state("mcp:prom") == "closed" and gauge(metrics, "mcp:prom") == 0
    assert isinstance(breaker.validate(PROM, context()), Approved)
    pipeline.observe("mcp:prom", False)  # one failure after recovery is not a trip
    assert breaker.state("mcp:prom") == "closed"


def test_old_outcomes_slide_out_of_the_window() -> None:
    clock = MonotonicClock()
    breaker = CircuitBreaker(failure_ratio=0.5, window_seconds=10, min_calls=4, clock=clock)
    for _ in range(3):
        breaker.observe("mcp:prom", False)
    clock.advance(11)  # those three failures are now outside the window
    for ok in (True, True, True, False):
        breaker.observe("mcp:prom", ok)
    assert breaker.state("mcp:prom") == "closed"  # 1/4 in the window


def test_a_probe_that_never_reports_is_replaced() -> None:
    clock = MonotonicClock()
    breaker = CircuitBreaker(min_calls=1, failure_ratio=1.0, open_seconds=30, clock=clock)
    breaker.observe("mcp:prom", False)
    clock.advance(30)
    assert isinstance(breaker.validate(PROM, context()), Approved)  # probe 1, lost
    clock.advance(10)
    assert isinstance(breaker.validate(PROM, context()), Rejected)
    clock.advance(20)
    assert isinstance(breaker.validate(PROM, context()), Approved)  # probe 2


def test_the_model_endpoint_is_a_target_too() -> None:
    clock = MonotonicClock()
    breaker = CircuitBreaker(min_calls=2, failure_ratio=1.0, clock=clock)
    run = AgentInput("Checkout", "inc-1", "Investigate.", "<alert-data>")
    breaker.observe("model:default", False)
    breaker.observe("model:default", False)
    result = breaker.validate(run, context())
    assert result == Rejected("circuit open for model:default after 2/2 failures; retry after 30s")
    assert isinstance(breaker.validate(PROM, context()), Approved)
