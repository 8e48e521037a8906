"""The pipeline's contract: order, modification rights, short-circuits, retries, metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pytest
from prometheus_client import CollectorRegistry

from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.validators import (
    Action,
    AgentInput,
    Approved,
    IncidentContext,
    Modified,
    PipelineResult,
    Rejected,
    Retry,
    ToolCall,
    ToolOutput,
    ValidationResult,
    ValidatorPipeline,
)
from tests.validators.conftest import WallClock, context

CALL = ToolCall("Checkout", "inc-1", "prom", "query", {"query": "up"}, mutating=False)
OUTPUT = ToolOutput("Checkout", "inc-1", "prom", "query", "up 1", is_error=False)


@dataclass
class Recorder:
    """A validator that records what it saw and answers with a fixed result."""

    name: str
    priority: int
    seen: list[tuple[str, Action]]
    result: ValidationResult = field(default_factory=Approved)
    can_modify: bool = False

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        self.seen.append((self.name, action))
        return self.result


class Suffixer:
    """Appends a suffix to tool output: a modifying validator."""

    can_modify = True

    def __init__(self, name: str, priority: int, suffix: str) -> None:
        self.name, self.priority, self.suffix = name, priority, suffix

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        if isinstance(action, ToolOutput):
            return Modified(replace(action, output=action.output + self.suffix), f"+{self.suffix}")
        return Approved()


class Sleeps:
    """The injected sleep: records each delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def decisions_count(metrics: SentinelMetrics, validator: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "sentinel_validator_decisions_total", {"validator": validator, "result": result}
    )
    return value or 0.0


def test_validators_run_by_priority_highest_first_ties_keep_order() -> None:
    seen: list[tuple[str, Action]] = []
    low, high = Recorder("low", 10, seen), Recorder("high", 100, seen)
    tie_a, tie_b = Recorder("tie_a", 50, seen), Recorder("tie_b", 50, seen)
    pipeline = ValidatorPipeline([low, tie_a, high, tie_b])
    assert [v.name for v in pipeline.validators] == ["high", "tie_a", "tie_b", "low"]
    result = pipeline.check(CALL, context())
    assert isinstance(result, PipelineResult) and result.ok
    assert [name for name, _ in seen] == ["high", "tie_a", "tie_b", "low"]
    assert [d.validator for d in result.decisions] == ["high", "tie_a", "tie_b", "low"]


def test_each_later_validator_sees_the_modified_action() -> None:
    seen: list[tuple[str, Action]] = []
    pipeline = ValidatorPipeline(
        [Suffixer("first", 90, "-a"), Suffixer("second", 80, "-b"), Recorder("last", 10, seen)]
    )
    result = pipeline.check(OUTPUT, context())
    assert isinstance(result, PipelineResult) and result.ok and result.modified
    assert isinstance(result.action, ToolOutput) and result.action.output == "up 1-a-b"
    assert seen[0][1] == result.action
    assert [d.result for d in result.decisions] == ["modified", "modified", "approved"]
    assert result.decisions[0].reason == "+-a"


def test_modified_from_a_validator_that_may_not_modify_is_a_rejection() -> None:
    seen: list[tuple[str, Action]] = []
    sneaky = Recorder("sneaky", 90, seen, Modified(replace(OUTPUT, output="changed"), "why not"))
    after = Recorder("after", 10, seen)
    metrics = SentinelMetrics(CollectorRegistry())
    result = ValidatorPipeline([sneaky, after], metrics).check(OUTPUT, context())
    assert isinstance(result, PipelineResult)
    assert result.rejected == "validator sneaky may not modify actions (why not)"
    assert result.action == OUTPUT  # the change was not taken
    assert [name for name, _ in seen] == ["sneaky"]
    assert [(d.validator, d.result) for d in result.decisions] == [("sneaky", "rejected")]
    assert decisions_count(metrics, "sneaky", "rejected") == 1


def test_a_modification_may_not_change_the_kind_of_action() -> None:
    class Morph:
        name, priority, can_modify = "morph", 1, True

        def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
            return Modified(OUTPUT, "became output")

    result = ValidatorPipeline([Morph()]).check(CALL, context())
    assert isinstance(result, PipelineResult)
    assert result.rejected == "validator morph turned a tool_call into a tool_output"


def test_first_rejection_short_circuits() -> None:
    seen: list[tuple[str, Action]] = []
    pipeline = ValidatorPipeline(
        [
            Recorder("ok", 100, seen),
            Recorder("no", 50, seen, Rejected("not today")),
            Recorder("never", 10, seen, Rejected("unreached")),
        ]
    )
    ctx = context()
    result = pipeline.check(CALL, ctx)
    assert isinstance(result, PipelineResult)
    assert result.rejected == "not today" and not result.ok
    assert [name for name, _ in seen] == ["ok", "no"]
    assert ctx.tool_calls == 0  # a rejected call is not counted against the budget


def test_approved_tool_calls_are_counted_in_the_context() -> None:
    ctx = context()
    pipeline = ValidatorPipeline([Recorder("ok", 1, [])])
    pipeline.check(CALL, ctx)
    pipeline.check(CALL, ctx)
    pipeline.check(OUTPUT, ctx)  # outputs are not calls
    assert ctx.tool_calls == 2


def test_a_validator_that_raises_fails_closed() -> None:
    class Broken:
        name, priority, can_modify = "broken", 1, False

        def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
            raise KeyError("boom")

    result = ValidatorPipeline([Broken()]).check(CALL, context())
    assert isinstance(result, PipelineResult)
    assert result.rejected == "validator broken failed: KeyError"


def test_validators_declaring_kinds_are_skipped_for_other_kinds() -> None:
    seen: list[tuple[str, Action]] = []

    class ReportsOnly(Recorder):
        kinds = frozenset({"report"})

    pipeline = ValidatorPipeline([ReportsOnly("reports", 10, seen), Recorder("all", 5, seen)])
    result = pipeline.check(CALL, context())
    assert isinstance(result, PipelineResult)
    assert [name for name, _ in seen] == ["all"]
    assert [d.validator for d in result.decisions] == ["all"]


def test_decisions_are_recorded_with_duration_time_and_json_ready() -> None:
    wall = WallClock()
    ctx = IncidentContext("inc-1", "Checkout", wall_clock=wall)
    pipeline = ValidatorPipeline([Recorder("ok", 1, []), Recorder("no", 0, [], Rejected("x"))])
    result = pipeline.check(CALL, ctx)
    assert isinstance(result, PipelineResult)
    first = result.decisions[0]
    assert first.action == "tool_call" and first.at == wall.now and first.duration_ms >= 0
    payload = json.loads(json.dumps([d.to_dict() for d in result.decisions]))
    assert payload[1] == {
        "validator": "no",
        "action": "tool_call",
        "result": "rejected",
        "reason": "x",
        "duration_ms": payload[1]["duration_ms"],
        "at": wall.now.isoformat(),
    }


def test_every_decision_is_counted_in_a_fresh_registry() -> None:
    metrics = SentinelMetrics(CollectorRegistry())
    seen: list[tuple[str, Action]] = []
    pipeline = ValidatorPipeline(
        [Recorder("a", 3, seen), Suffixer("b", 2, "!"), Recorder("c", 1, seen, Rejected("no"))],
        metrics,
    )
    pipeline.check(OUTPUT, context())
    pipeline.check(OUTPUT, context())
    assert decisions_count(metrics, "a", "approved") == 2
    assert decisions_count(metrics, "b", "modified") == 2
    assert decisions_count(metrics, "c", "rejected") == 2


class Flaky:
    """Asks for a retry ``times`` times, then approves."""

    name, priority, can_modify = "flaky", 1, False

    def __init__(self, times: int, delay: float = 2.0) -> None:
        self.left, self.delay = times, delay

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        if self.left > 0:
            self.left -= 1
            return Retry(self.delay, "busy")
        return Approved()


def test_check_returns_the_retry_and_run_waits_through_it() -> None:
    sleeps = Sleeps()
    metrics = SentinelMetrics(CollectorRegistry())
    pipeline = ValidatorPipeline([Flaky(2)], metrics, sleep=sleeps)
    assert pipeline.check(CALL, context()) == Retry(2.0, "busy")


async def test_run_sleeps_the_asked_delay_then_succeeds() -> None:
    sleeps = Sleeps()
    metrics = SentinelMetrics(CollectorRegistry())
    pipeline = ValidatorPipeline([Flaky(2)], metrics, sleep=sleeps)
    result = await pipeline.run(CALL, context())
    assert result.ok
    assert sleeps.delays == [2.0, 2.0]
    assert [d.result for d in result.decisions] == ["retry", "retry", "approved"]
    assert decisions_count(metrics, "flaky", "retry") == 2


async def test_run_gives_up_after_max_retries() -> None:
    sleeps = Sleeps()
    metrics = SentinelMetrics(CollectorRegistry())
    pipeline = ValidatorPipeline([Flaky(100, 1.0)], metrics, max_retries=3, sleep=sleeps)
    result = await pipeline.run(CALL, context())
    assert result.rejected == "gave up after 3 retries: busy"
    assert sleeps.delays == [1.0, 1.0, 1.0]
    assert result.decisions[-1].validator == "pipeline"
    assert decisions_count(metrics, "pipeline", "rejected") == 1


async def test_run_does_not_sleep_past_the_wait_budget() -> None:
    sleeps = Sleeps()
    pipeline = ValidatorPipeline([Flaky(100, 25.0)], max_retry_wait_seconds=60, sleep=sleeps)
    result = await pipeline.run(CALL, context())
    assert sleeps.delays == [25.0, 25.0]  # a third 25 s wait would pass 60 s
    assert result.rejected is not None
    assert "max_retry_wait_seconds=60" in result.rejected and result.rejected.endswith("busy")


def test_observe_reaches_only_outcome_observers() -> None:
    class Observer(Recorder):
        def __init__(self) -> None:
            super().__init__("observer", 1, [])
            self.outcomes: list[tuple[str, bool]] = []

        def observe(self, target: str, ok: bool) -> None:
            self.outcomes.append((target, ok))

    observer = Observer()
    pipeline = ValidatorPipeline([observer, Recorder("plain", 2, [])])
    pipeline.observe("mcp:prom", False)
    assert observer.outcomes == [("mcp:prom", False)]


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate validator name"):
        ValidatorPipeline([Recorder("a", 1, []), Recorder("a", 2, [])])


def test_action_kinds() -> None:
    agent_input = AgentInput("Checkout", "inc-1", "instructions", "<alert-data>")
    assert (agent_input.kind, CALL.kind, OUTPUT.kind) == ("agent_input", "tool_call", "tool_output")
    assert CALL.qualified_name == "prom.query"
