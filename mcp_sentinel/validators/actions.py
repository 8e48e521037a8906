"""What the validator pipeline validates: four kinds of action, as frozen dataclasses.

The agent's wiring builds one of these at each crossing between the agent and the world:

* ``AgentInput``   before a model run: the card's instructions (our template, trusted) and the
                   fenced alert data (untrusted).
* ``ToolCall``     before a tool call the model asked for is executed.
* ``ToolOutput``   before a tool's output is handed back to the model.
* ``ReportCheck``  before the report goes to the sinks.

They are immutable: a validator that changes one returns a new one (``dataclasses.replace``) in
a ``Modified`` result, and the pipeline hands that to the next validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mcp_sentinel.models import IncidentReport

ActionKind = Literal["agent_input", "tool_call", "tool_output", "report"]

#: Every action kind, for validators that declare which kinds they look at.
ALL_KINDS: frozenset[ActionKind] = frozenset({"agent_input", "tool_call", "tool_output", "report"})


@dataclass(frozen=True, slots=True)
class AgentInput:
    """A model run about to start.

    ``instructions`` is the rendered card template (ours, trusted, never scanned for
    injection); ``alert_data`` is the alert as rendered by ``prompts.fence_alert_data``
    (untrusted). ``model_endpoint`` names the model endpoint for the circuit breaker
    (target ``model:<model_endpoint>``).
    """

    card: str
    incident_id: str
    instructions: str
    alert_data: str
    model_endpoint: str = "default"

    @property
    def kind(self) -> ActionKind:
        return "agent_input"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for, before it runs. ``mutating``: the tool changes things."""

    card: str
    incident_id: str
    server: str
    tool: str
    arguments: dict[str, Any]
    mutating: bool

    @property
    def kind(self) -> ActionKind:
        return "tool_call"

    @property
    def qualified_name(self) -> str:
        """``server.tool``, the spelling of the config's ``deny`` list."""
        return f"{self.server}.{self.tool}"


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a tool returned (``is_error``: the call failed), before the model sees it."""

    card: str
    incident_id: str
    server: str
    tool: str
    output: str
    is_error: bool

    @property
    def kind(self) -> ActionKind:
        return "tool_output"

    @property
    def qualified_name(self) -> str:
        return f"{self.server}.{self.tool}"


@dataclass(frozen=True, slots=True)
class ReportCheck:
    """A finished report before delivery.

    ``seen_texts`` holds every text the agent saw (the alert data and each tool output), for
    the grounding check; ``tools_available`` says whether the card offered the agent any tool.
    """

    card: str
    incident_id: str
    report: IncidentReport
    seen_texts: tuple[str, ...]
    tools_available: bool

    @property
    def kind(self) -> ActionKind:
        return "report"


Action = AgentInput | ToolCall | ToolOutput | ReportCheck


def breaker_target(action: Action) -> str | None:
    """The circuit-breaker target an action depends on, or None.

    ``model:<model_endpoint>`` for an ``AgentInput``, ``mcp:<server>`` for a ``ToolCall``. The
    caller reports the outcome of that dependency with ``ValidatorPipeline.observe(target, ok)``.
    """
    if isinstance(action, AgentInput):
        return f"model:{action.model_endpoint}"
    if isinstance(action, ToolCall):
        return f"mcp:{action.server}"
    return None
