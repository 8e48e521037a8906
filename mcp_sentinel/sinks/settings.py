"""The ``sinks`` config section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mcp_sentinel.settings_base import Section


class ConsoleSinkSettings(Section):
    enabled: bool = True


class AuditSinkSettings(Section):
    enabled: bool = True
    path: Path = Path("sentinel-audit.jsonl")


class SinksSettings(Section):
    console: ConsoleSinkSettings = Field(default_factory=ConsoleSinkSettings)
    audit: AuditSinkSettings = Field(default_factory=AuditSinkSettings)

    def enabled_names(self) -> list[str]:
        """Names of the sinks that are configured and enabled, as cards refer to them."""
        return [name for name in ("console", "audit") if getattr(self, name).enabled]
