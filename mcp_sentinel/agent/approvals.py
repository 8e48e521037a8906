"""Approval of mutating tool calls that the tool policy marks ``approval: required``.

Such a call interrupts the agent run (the SDK's approval interruption); the orchestrator asks
the ``ApprovalGate`` and resumes the run with the call approved or rejected. A gate may take
its time (a person answering in chat), so it is async. The daemon ships ``NoApprover``, which
rejects with a reason the model sees: nothing mutating runs unless someone built a gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from mcp_sentinel.validators.actions import ToolCall


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """One pending call: which incident and card, which tool, with what arguments."""

    incident_id: str
    card: str
    server: str | None
    tool: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    approved: bool
    reason: str


class ApprovalGate(Protocol):
    async def decide(self, request: ApprovalRequest) -> ApprovalDecision: ...


class NoApprover:
    """Rejects every request: approval is required and nobody is configured to give it."""

    async def decide(self, request: ApprovalRequest) -> ApprovalDecision:
        return ApprovalDecision(
            False,
            f"approval required for {request.tool}: no approver is configured, so mutating "
            "tools do not run; recommend the action to the on-call engineer instead",
        )


def approval_arguments(raw_item: Any) -> str:
    """The JSON arguments of an approval item's raw tool call, whatever its shape."""
    arguments = getattr(raw_item, "arguments", None)
    if arguments is None and isinstance(raw_item, dict):
        arguments = raw_item.get("arguments")
    return str(arguments or "")


class GateApprovedCalls:
    """The tool policy's ``Approver`` under ``approval: required``: it approves exactly the
    calls the ``ApprovalGate`` approved, once each, so no mutating call bypasses the gate.

    The orchestrator ``grant``s a call when the gate approves its interruption; the input
    guardrail that then runs the pipeline finds the grant here.
    """

    def __init__(self) -> None:
        self._granted: set[tuple[str, str, str, str]] = set()

    @staticmethod
    def _key(
        incident_id: str, server: str, tool: str, arguments: dict[str, Any]
    ) -> tuple[str, str, str, str]:
        return (incident_id, server, tool, json.dumps(arguments, sort_keys=True, default=str))

    def grant(self, incident_id: str, server: str, tool: str, arguments: dict[str, Any]) -> None:
        self._granted.add(self._key(incident_id, server, tool, arguments))

    def decide(self, call: ToolCall) -> bool | None:
        key = self._key(call.incident_id, call.server, call.tool, call.arguments)
        if key in self._granted:
            self._granted.discard(key)
            return True
        return None
