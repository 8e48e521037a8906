"""The ``validators`` config section: one entry per validator, each with ``enabled``/``priority``.

Every validator is enabled by default with safe defaults, so a config without ``validators:``
gets the whole pipeline. Unknown validator names and unknown keys are errors (``Section``).

```yaml
validators:
  injection_guard: {enabled: true, priority: 100, action: neutralise}   # or reject
  tool_policy: {enabled: true, priority: 90, deny: [server.tool], approval: deny,
                freeze_windows: [{days: [sat, sun], start: "00:00", end: "23:59", tz: UTC}],
                max_tool_calls: 20}
  rate_limiter: {enabled: true, priority: 50, runs_per_minute: 30, tool_calls_per_minute: 300}
  circuit_breaker: {enabled: true, priority: 40, failure_ratio: 0.5, window_seconds: 60,
                    open_seconds: 30}
  secret_redaction: {enabled: true, priority: 30}
  grounding: {enabled: true, priority: 20}
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mcp_sentinel.settings_base import Section
from mcp_sentinel.validators.freeze import FreezeWindow, parse_days, parse_hhmm, parse_zone

ApprovalMode = Literal["deny", "required", "auto"]
InjectionAction = Literal["neutralise", "reject"]


class FreezeWindowSettings(Section):
    """A weekly change-freeze window; see ``validators.freeze`` for the exact semantics."""

    days: list[str] = Field(default_factory=lambda: ["mon-sun"])
    start: str
    end: str
    tz: str = "UTC"

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        parse_days(value)
        return value

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        parse_zone(value)
        return value

    @model_validator(mode="after")
    def _distinct(self) -> FreezeWindowSettings:
        self.window()  # start == end is refused with a message saying how to mean a whole day
        return self

    def window(self) -> FreezeWindow:
        return FreezeWindow.parse(self.days, self.start, self.end, self.tz)


class InjectionGuardSettings(Section):
    """``action``: ``neutralise`` (replace suspicious spans with a marker) or ``reject``."""

    enabled: bool = True
    priority: int = 100
    action: InjectionAction = "neutralise"

    @field_validator("action", mode="before")
    @classmethod
    def _american(cls, value: object) -> object:
        return "neutralise" if value == "neutralize" else value


class ToolPolicySettings(Section):
    """Deny list (``server.tool``, ``*`` wildcards), mutating-tool approval, freezes, budget."""

    enabled: bool = True
    priority: int = 90
    deny: list[str] = Field(default_factory=list)
    approval: ApprovalMode = "deny"
    freeze_windows: list[FreezeWindowSettings] = Field(default_factory=list)
    max_tool_calls: int | None = Field(default=20, ge=1)

    @field_validator("deny")
    @classmethod
    def _qualified(cls, value: list[str]) -> list[str]:
        for entry in value:
            server, dot, tool = entry.partition(".")
            if not dot or not server or not tool:
                raise ValueError(f"deny entry {entry!r} must be server.tool (wildcards allowed)")
        return value


class RateLimiterSettings(Section):
    """Token buckets; the ``per_card_*`` limits (off when null) apply to each card on its own."""

    enabled: bool = True
    priority: int = 50
    runs_per_minute: float = Field(default=30, gt=0)
    tool_calls_per_minute: float = Field(default=300, gt=0)
    per_card_runs_per_minute: float | None = Field(default=None, gt=0)
    per_card_tool_calls_per_minute: float | None = Field(default=None, gt=0)


class CircuitBreakerSettings(Section):
    """Trips a target when ``failure_ratio`` of at least ``min_calls`` calls in the window fail."""

    enabled: bool = True
    priority: int = 40
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    window_seconds: float = Field(default=60, gt=0)
    open_seconds: float = Field(default=30, gt=0)
    min_calls: int = Field(default=5, ge=1)


class SecretRedactionSettings(Section):
    enabled: bool = True
    priority: int = 30


class GroundingSettings(Section):
    """Confidence is multiplied by ``max(min_factor, 1 - penalty_per_claim * n)``."""

    enabled: bool = True
    priority: int = 20
    penalty_per_claim: float = Field(default=0.15, ge=0, le=1)
    min_factor: float = Field(default=0.2, ge=0, le=1)


class ValidatorsSettings(Section):
    """Which validators run, their priority and parameters (keyed by validator name)."""

    injection_guard: InjectionGuardSettings = Field(default_factory=InjectionGuardSettings)
    tool_policy: ToolPolicySettings = Field(default_factory=ToolPolicySettings)
    rate_limiter: RateLimiterSettings = Field(default_factory=RateLimiterSettings)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    secret_redaction: SecretRedactionSettings = Field(default_factory=SecretRedactionSettings)
    grounding: GroundingSettings = Field(default_factory=GroundingSettings)

    def enabled_names(self) -> list[str]:
        """Names of the enabled validators, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name).enabled]
