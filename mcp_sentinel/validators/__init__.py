"""The synchronous validator pipeline between the agent and the world.

Every crossing (a model run starting, a tool call, a tool output, a finished report) becomes an
``Action`` that ``ValidatorPipeline`` passes through the enabled validators, highest priority
first: ``injection_guard``, ``tool_policy``, ``rate_limiter``, ``circuit_breaker``,
``secret_redaction``, ``grounding``. ``validators.factory.build_pipeline`` builds it from the
config; see docs/security.md for what each one guarantees and what it does not.

The package itself exports only the action and decision types: the validators are imported by
the factory, with the agent, so that reading the config (``validators.settings``) stays cheap.
"""

from mcp_sentinel.validators.actions import (
    Action,
    ActionKind,
    AgentInput,
    ReportCheck,
    ToolCall,
    ToolOutput,
    breaker_target,
)
from mcp_sentinel.validators.pipeline import (
    Approved,
    IncidentContext,
    Modified,
    OutcomeObserver,
    PipelineResult,
    Rejected,
    Retry,
    SyncValidator,
    ValidationDecision,
    ValidationResult,
    ValidatorPipeline,
)

__all__ = [
    "Action",
    "ActionKind",
    "AgentInput",
    "Approved",
    "IncidentContext",
    "Modified",
    "OutcomeObserver",
    "PipelineResult",
    "Rejected",
    "ReportCheck",
    "Retry",
    "SyncValidator",
    "ToolCall",
    "ToolOutput",
    "ValidationDecision",
    "ValidationResult",
    "ValidatorPipeline",
    "breaker_target",
]
