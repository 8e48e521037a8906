"""Tool policy: deny list, approval of mutating tools, change freezes, per-incident budget."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcp_sentinel.validators import (
    Approved,
    IncidentContext,
    PipelineResult,
    Rejected,
    ToolCall,
    ValidatorPipeline,
)
from mcp_sentinel.validators.freeze import FreezeWindow
from mcp_sentinel.validators.tool_policy import AllowListApprover, ToolPolicy
from tests.validators.conftest import WallClock, context

READ = ToolCall("Checkout", "inc-1", "prom", "query", {"query": "up"}, mutating=False)
RESTART = ToolCall("Checkout", "inc-1", "k8s", "restart_pod", {"pod": "checkout-0"}, mutating=True)
# 2026-11-23 is a Monday.
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Approver:
    """Answers with a fixed decision and remembers what it was asked."""

    def __init__(self, decision: bool | None) -> None:
        self.decision = decision
        self.asked: list[str] = []

    def decide(self, call: ToolCall) -> bool | None:
        self.asked.append(call.qualified_name)
        return self.decision


def test_read_only_calls_pass() -> None:
    assert isinstance(ToolPolicy().validate(READ, context()), Approved)


def test_deny_list_with_wildcards() -> None:
    policy = ToolPolicy(deny=["prom.query", "k8s.delete_*"], approval="auto")
    result = policy.validate(READ, context())
    assert result == Rejected("tool prom.query is denied by tool_policy.deny (prom.query)")
    delete = ToolCall("Checkout", "inc-1", "k8s", "delete_pod", {}, mutating=True)
    assert isinstance(policy.validate(delete, context()), Rejected)
    assert isinstance(policy.validate(RESTART, context()), Approved)


def test_mutating_tool_with_approval_deny() -> None:
    result = ToolPolicy(approval="deny").validate(RESTART, context())
    assert result == Rejected(
        "mutating tool k8s.restart_pod is not allowed (tool_policy.approval: deny)"
    )


def test_mutating_tool_with_approval_auto() -> None:
    assert isinstance(ToolPolicy(approval="auto").validate(RESTART, context()), Approved)


def test_mutating_tool_with_approval_required_and_no_approver() -> None:
    result = ToolPolicy(approval="required").validate(RESTART, context())
    assert isinstance(result, Rejected)
    assert result.reason.startswith("approval required: no approver configured")


@pytest.mark.parametrize(
    ("decision", "approved", "reason"),
    [
        (True, True, ""),
        (False, False, "approval required: the approver refused mutating tool k8s.restart_pod"),
        (None, False, "approval required: no decision from the approver for k8s.restart_pod"),
    ],
)
def test_mutating_tool_with_approval_required_asks_the_approver(
    decision: bool | None, approved: bool, reason: str
) -> None:
    approver = Approver(decision)
    result = ToolPolicy(approval="required", approver=approver).validate(RESTART, context())
    assert approver.asked == ["k8s.restart_pod"]
    assert isinstance(result, Approved) if approved else result == Rejected(reason)


def test_the_approver_is_not_asked_about_read_only_calls() -> None:
    approver = Approver(False)
    ToolPolicy(approval="required", approver=approver).validate(READ, context())
    assert approver.asked == []


def test_allow_list_approver() -> None:
    approver = AllowListApprover(["k8s.restart_*"])
    assert approver.decide(RESTART) is True
    assert approver.decide(ToolCall("c", "i", "k8s", "delete_pod", {}, mutating=True)) is None


def test_read_only_tools_make_unlisted_tools_of_a_listed_server_mutating() -> None:
    policy = ToolPolicy(approval="deny", read_only_tools={"prom": frozenset({"query"})})
    assert isinstance(policy.validate(READ, context()), Approved)
    sneaky = ToolCall("Checkout", "inc-1", "prom", "delete_series", {}, mutating=False)
    assert isinstance(policy.validate(sneaky, context()), Rejected)
    other = ToolCall("Checkout", "inc-1", "logs", "search", {}, mutating=False)
    assert isinstance(policy.validate(other, context()), Approved)  # server not listed: the flag


def test_per_incident_budget_counts_calls_the_pipeline_let_through() -> None:
    pipeline = ValidatorPipeline([ToolPolicy(max_tool_calls=3)])
    ctx = context()
    results = [pipeline.check(READ, ctx) for _ in range(4)]
    assert all(isinstance(r, PipelineResult) for r in results)
    assert [r.rejected for r in results if isinstance(r, PipelineResult)] == [
        None,
        None,
        None,
        "tool-call budget exhausted: 3 of 3 calls used for this incident",
    ]
    fresh = pipeline.check(READ, context())  # another incident has its own budget
    assert isinstance(fresh, PipelineResult) and fresh.ok
    unlimited = ToolPolicy(max_tool_calls=None)
    assert isinstance(unlimited.validate(READ, IncidentContext("i", "c", 10**6)), Approved)


# --------------------------------------------------------------------------- freeze windows


def _policy(window: FreezeWindow, wall: WallClock) -> ToolPolicy:
    return ToolPolicy(approval="auto", freeze_windows=[window], wall_clock=wall)


def test_weekend_freeze_in_utc() -> None:
    wall = WallClock(datetime(2026, 11, 28, 9, 30, tzinfo=UTC))  # Saturday
    policy = _policy(FreezeWindow.parse(["sat", "sun"], "00:00", "23:59", "UTC"), wall)
    result = policy.validate(RESTART, context())
    assert result == Rejected(
        "change freeze in effect (sat,sun 00:00-23:59 UTC): mutating tool k8s.restart_pod is "
        "not allowed"
    )
    assert isinstance(policy.validate(READ, context()), Approved)  # reading is fine
    wall.now = datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)  # Sunday, last second
    assert isinstance(policy.validate(RESTART, context()), Rejected)
    wall.now = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # Monday
    assert isinstance(policy.validate(RESTART, context()), Approved)


@pytest.mark.parametrize(
    ("moment", "frozen"),
    [
        (datetime(2026, 11, 27, 21, 59, tzinfo=UTC), False),  # Friday before the start
        (datetime(2026, 11, 27, 22, 0, tzinfo=UTC), True),  # Friday at the start
        (datetime(2026, 11, 27, 23, 30, tzinfo=UTC), True),  # Friday night
        (datetime(2026, 11, 28, 3, 0, tzinfo=UTC), True),  # Saturday morning, after midnight
        (datetime(2026, 11, 28, 6, 0, 30, tzinfo=UTC), True),  # the end minute is included
        (datetime(2026, 11, 28, 6, 1, tzinfo=UTC), False),  # after the end
        (datetime(2026, 11, 28, 23, 0, tzinfo=UTC), False),  # Saturday night: not a start day
        (datetime(2026, 11, 27, 3, 0, tzinfo=UTC), False),  # Friday morning: Thursday is not
    ],
)
def test_a_window_wrapping_midnight(moment: datetime, frozen: bool) -> None:
    window = FreezeWindow.parse(["fri"], "22:00", "06:00", "UTC")
    assert window.wraps and window.contains(moment) is frozen
    result = _policy(window, WallClock(moment)).validate(RESTART, context())
    assert isinstance(result, Rejected) is frozen


@pytest.mark.parametrize(
    ("utc_moment", "frozen"),
    [
        # Europe/Paris is UTC+1 in November: 17:00-19:00 Paris is 16:00-18:00 UTC.
        (datetime(2026, 11, 23, 15, 59, tzinfo=UTC), False),
        (datetime(2026, 11, 23, 16, 0, tzinfo=UTC), True),
        (datetime(2026, 11, 23, 18, 0, tzinfo=UTC), True),
        (datetime(2026, 11, 23, 18, 1, tzinfo=UTC), False),
        # In July Paris is UTC+2: 17:00 Paris is 15:00 UTC.
        (datetime(2026, 7, 6, 15, 0, tzinfo=UTC), True),
        (datetime(2026, 7, 6, 16, 30, tzinfo=UTC), True),
        (datetime(2026, 7, 6, 17, 30, tzinfo=UTC), False),
    ],
)
def test_a_window_in_a_non_utc_zone_follows_its_wall_clock(
    utc_moment: datetime, frozen: bool
) -> None:
    window = FreezeWindow.parse(["mon-fri"], "17:00", "19:00", "Europe/Paris")
    assert window.contains(utc_moment) is frozen


def test_a_wrapping_window_in_a_zone_ahead_of_utc_crosses_the_utc_day() -> None:
    # Tokyo (UTC+9), Sunday 23:00 to Monday 02:00 local = Sunday 14:00-17:00 UTC.
    window = FreezeWindow.parse(["sunday"], "23:00", "02:00", "Asia/Tokyo")
    assert window.contains(datetime(2026, 11, 29, 14, 30, tzinfo=UTC))
    assert window.contains(datetime(2026, 11, 29, 17, 0, tzinfo=UTC))
    assert not window.contains(datetime(2026, 11, 29, 13, 59, tzinfo=UTC))
    assert not window.contains(datetime(2026, 11, 29, 17, 1, tzinfo=UTC))


def test_freeze_denies_even_with_auto_approval_and_uses_the_context_clock() -> None:
    window = FreezeWindow.parse(["mon"], "11:00", "13:00", "UTC")
    policy = ToolPolicy(approval="auto", freeze_windows=[window])  # no wall clock of its own
    ctx = IncidentContext("inc-1", "Checkout", wall_clock=WallClock(MONDAY_NOON))
    assert isinstance(policy.validate(RESTART, ctx), Rejected)


@pytest.mark.parametrize(
    ("days", "start", "end", "tz", "message"),
    [
        (["funday"], "00:00", "01:00", "UTC", "unknown day 'funday'"),
        ([], "00:00", "01:00", "UTC", "days must name at least one day"),
        (["mon"], "24:00", "01:00", "UTC", "invalid time '24:00'"),
        (["mon"], "9:00", "10:00", "UTC", "invalid time '9:00'"),
        (["mon"], "10:00", "10:00", "UTC", "start and end are both 10:00"),
        (["mon"], "10:00", "11:00", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_windows_are_refused_clearly(
    days: list[str], start: str, end: str, tz: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FreezeWindow.parse(days, start, end, tz)


def test_day_spellings_and_ranges() -> None:
    assert FreezeWindow.parse(["Mon-Wed", "SUNDAY"], "00:00", "01:00", "UTC").days == {0, 1, 2, 6}
    assert FreezeWindow.parse(["fri-mon"], "00:00", "01:00", "UTC").days == {4, 5, 6, 0}
