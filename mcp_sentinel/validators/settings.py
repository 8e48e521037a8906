"""The ``validators`` config section."""

from __future__ import annotations

from mcp_sentinel.settings_base import Section


class ValidatorsSettings(Section):
    """Which validators run, their priority and parameters (keyed by validator name)."""
