"""Docs that are generated from code must match it."""

from __future__ import annotations

from mcp_sentinel.config_reference import render
from tests.conftest import REPO_ROOT


def test_configuration_reference_is_current() -> None:
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), (
        "docs/configuration.md is stale: run "
        "`uv run python -m mcp_sentinel.config_reference > docs/configuration.md`"
    )


def test_reference_names_every_top_level_section() -> None:
    text = render()
    for section in (
        "server",
        "dispatcher",
        "openai",
        "mcp_servers",
        "incident_cards",
        "validators",
        "sinks",
        "watchers",
        "telemetry",
    ):
        assert f"| `{section}` |" in text
    assert "`server.auth (type: bearer).token` | secret string" in text
