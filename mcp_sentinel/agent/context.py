"""The per-run state the SDK carries through hooks, guardrails and dynamic instructions."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcp_sentinel.models import IncidentCard, ToolCallRecord
from mcp_sentinel.prompts import RenderedPrompt
from mcp_sentinel.validators.pipeline import IncidentContext, ValidationDecision

TOOL_PREFIX = "mcp_"


@dataclass(slots=True)
class RunFacts:
    """What one run did, collected as it goes (so a failed or cancelled run still has them).

    ``seen_texts`` is everything the agent was shown as data (the alert, each tool output as
    the model received it): the grounding check compares the report against it.
    """

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: dict[str, ToolCallRecord] = field(default_factory=dict)
    tool_started: dict[str, float] = field(default_factory=dict)
    decisions: list[ValidationDecision] = field(default_factory=list)
    seen_texts: list[str] = field(default_factory=list)
    # Tool call id -> the MCP result's isError flag, which the SDK does not pass on to the
    # output guardrail (it hands the model an error's text like any other output).
    tool_errors: dict[str, bool] = field(default_factory=dict)


@dataclass(slots=True)
class InvestigationContext:
    """The run context of one investigation: read by the SDK's callbacks, owned by the run."""

    card: IncidentCard
    prompt: RenderedPrompt
    facts: RunFacts
    validation: IncidentContext


def public_tool_name(server: str, tool: str) -> str:
    """The name the model sees for an MCP tool (the SDK's server-prefixed form)."""
    return f"{TOOL_PREFIX}{server}__{tool}"


def split_tool_name(name: str, servers: list[str]) -> tuple[str | None, str]:
    """``mcp_prometheus__query`` -> (``prometheus``, ``query``) for known servers."""
    for server in servers:
        prefix = f"{TOOL_PREFIX}{server}__"
        if name.startswith(prefix):
            return server, name[len(prefix) :]
    return None, name
