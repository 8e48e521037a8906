"""Tool policy: what the agent may call, checked again just before each call runs.

The card's allowlist is enforced where tools are offered (``agent/tools.py``); this validator is
the second line, for ``ToolCall`` actions only, in this order:

1. ``deny``: ``server.tool`` patterns (``fnmatch`` wildcards: ``prom.delete_*``) -> Rejected.
2. ``max_tool_calls``: the per-incident budget (``context.tool_calls`` counts calls already
   let through by the pipeline) -> Rejected once it is used up.
3. Mutating tools only:
   a. inside a change-freeze window -> Rejected, whatever the approval mode;
   b. ``approval: deny`` -> Rejected; ``auto`` -> Approved; ``required`` -> the ``Approver``
      decides: True approves, False or None (no decision) or no approver -> Rejected with a
      reason starting "approval required".

A call is mutating when ``ToolCall.mutating`` says so, or when ``read_only_tools`` lists the
call's server and not the tool (a server listed there has *only* those read-only tools). The
combination can only make the policy stricter than the flag alone.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Literal, Protocol

from mcp_sentinel.validators.actions import Action, ActionKind, ToolCall
from mcp_sentinel.validators.freeze import FreezeWindow
from mcp_sentinel.validators.pipeline import (
    Approved,
    IncidentContext,
    Rejected,
    ValidationResult,
)

ApprovalMode = Literal["deny", "required", "auto"]


class Approver(Protocol):
    """Decides on a mutating call under ``approval: required``; None means "no decision".

    Called synchronously on the event loop: it must answer from what it already knows (a
    pre-approved list, a flag set by a human through another channel), never wait for one.
    """

    def decide(self, call: ToolCall) -> bool | None: ...


class AllowListApprover:
    """Approves a mutating call whose ``server.tool`` matches a pattern; otherwise no decision."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = tuple(patterns)

    def decide(self, call: ToolCall) -> bool | None:
        name = call.qualified_name
        return True if any(fnmatch.fnmatchcase(name, p) for p in self._patterns) else None


class ToolPolicy:
    """The ``tool_policy`` validator. Holds no per-incident state; never modifies."""

    name = "tool_policy"
    can_modify = False
    kinds: frozenset[ActionKind] = frozenset({"tool_call"})

    def __init__(
        self,
        *,
        priority: int = 90,
        deny: Iterable[str] = (),
        approval: ApprovalMode = "deny",
        freeze_windows: Iterable[FreezeWindow] = (),
        max_tool_calls: int | None = 20,
        approver: Approver | None = None,
        read_only_tools: Mapping[str, frozenset[str]] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        if approval not in ("deny", "required", "auto"):
            raise ValueError(f"approval must be deny, required or auto, not {approval!r}")
        self.priority = priority
        self._deny = tuple(deny)
        self._approval: ApprovalMode = approval
        self._windows = tuple(freeze_windows)
        self._max_tool_calls = max_tool_calls
        self._approver = approver
        self._read_only = dict(read_only_tools or {})
        self._wall_clock = wall_clock  # None: the incident context's wall clock

    def is_mutating(self, call: ToolCall) -> bool:
        """The flag, made stricter by ``read_only_tools`` (see the module docstring)."""
        if call.mutating:
            return True
        read_only = self._read_only.get(call.server)
        return read_only is not None and call.tool not in read_only

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        if not isinstance(action, ToolCall):
            return Approved()
        name = action.qualified_name
        for pattern in self._deny:
            if fnmatch.fnmatchcase(name, pattern):
                return Rejected(f"tool {name} is denied by tool_policy.deny ({pattern})")
        if self._max_tool_calls is not None and context.tool_calls >= self._max_tool_calls:
            return Rejected(
                f"tool-call budget exhausted: {context.tool_calls} of {self._max_tool_calls} "
                "calls used for this incident"
            )
        if not self.is_mutating(action):
            return Approved()
        now = (self._wall_clock or context.wall_clock)()
        for window in self._windows:
            if window.contains(now):
                return Rejected(
                    f"change freeze in effect ({window.describe()}): "
                    f"mutating tool {name} is not allowed"
                )
        if self._approval == "auto":
            return Approved()
        if self._approval == "deny":
            return Rejected(f"mutating tool {name} is not allowed (tool_policy.approval: deny)")
        if self._approver is None:
            return Rejected(f"approval required: no approver configured for mutating tool {name}")
        decision = self._approver.decide(action)
        if decision is True:
            return Approved()
        if decision is False:
            return Rejected(f"approval required: the approver refused mutating tool {name}")
        return Rejected(f"approval required: no decision from the approver for {name}")
