"""The ``sinks`` config section as a user writes it: valid combinations, clear messages for the
invalid ones (naming keys, never secret values), and cards that name the new sinks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcp_sentinel.config import SentinelSettings, load_settings
from mcp_sentinel.errors import ConfigError

SECRET = "xoxb-never-print-me-0c0c"


def load(
    tmp_path: Path, sinks: dict[str, object], card_sinks: list[str] | None = None
) -> SentinelSettings:
    (tmp_path / "p.md").write_text("x")
    config = {
        "server": {"auth": {"type": "none"}},
        "incident_cards": [{"resource": "A", "prompt": "p.md", "sinks": card_sinks or ["console"]}],
        "sinks": sinks,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path, env={"SLACK_BOT_TOKEN": SECRET, "JIRA_API_TOKEN": SECRET})


def problems(tmp_path: Path, sinks: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, sinks)
    assert SECRET not in str(caught.value)
    return [str(problem) for problem in caught.value.problems]


def test_the_documented_shapes_load_and_cards_can_name_them(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        {
            "slack": {"bot_token": "${SLACK_BOT_TOKEN}", "channel": "#oncall"},
            "jira": {
                "base_url": "https://example.atlassian.net/",
                "email": "sre@example.com",
                "api_token": "${JIRA_API_TOKEN}",
                "project_key": "OPS",
                "issue_type": "Incident",
                "api_version": 3,
                "priority_map": {"CRITICAL": "Highest"},
            },
            "webhook": {"url": "https://hooks.example/sentinel", "hmac_secret": "s"},
            "dead_letter_dir": "./dead-letter",
        },
        card_sinks=["console", "audit", "slack", "jira", "webhook"],
    )
    sinks = settings.sinks
    assert sinks.jira is not None
    assert sinks.enabled_names() == ["console", "audit", "slack", "jira", "webhook"]
    assert sinks.jira.base_url == "https://example.atlassian.net"
    assert sinks.jira.priority_map == {"critical": "Highest"}
    assert settings.resolve(sinks.dead_letter_dir) == tmp_path / "dead-letter"
    assert SECRET not in repr(sinks) and SECRET not in str(sinks.model_dump())
    assert sinks.retry_for("jira").max_attempts == 5


@pytest.mark.parametrize(
    ("sinks", "expected"),
    [
        (
            {"slack": {}},
            "sinks.slack: Value error, set webhook_url (an incoming webhook) or bot_token and "
            "channel (the Web API)",
        ),
        (
            {"slack": {"bot_token": "${SLACK_BOT_TOKEN}"}},
            "sinks.slack: Value error, bot_token needs channel",
        ),
        (
            {"slack": {"webhook_url": "https://hooks.slack.com/x", "bot_token": SECRET}},
            "sinks.slack: Value error, set webhook_url or bot_token, not both",
        ),
        (
            {"slack": {"webhook_url": "https://hooks.slack.com/x", "channel_label": "team"}},
            "sinks.slack: Value error, channel, channel_by_card and channel_label need bot_token",
        ),
        (
            {"slack": {"webhook_url": SECRET}},
            "sinks.slack: Value error, webhook_url must be an http(s) URL",
        ),
        (
            {"jira": {"base_url": "https://x.atlassian.net", "project_key": "OPS", "pat": SECRET}},
            "sinks.jira: Value error, api_version 3 (Jira Cloud) needs email and api_token",
        ),
        (
            {
                "jira": {
                    "base_url": "https://jira.internal",
                    "api_version": 2,
                    "project_key": "OPS",
                    "email": "a@b.c",
                    "api_token": SECRET,
                    "pat": SECRET,
                }
            },
            "sinks.jira: Value error, email and api_token are for Jira Cloud (api_version: 3)",
        ),
        (
            {"jira": {"base_url": "https://jira.internal", "api_version": 2, "project_key": "OPS"}},
            "sinks.jira: Value error, api_version 2 (Server/Data Center) needs pat",
        ),
        (
            {"webhook": {"url": "https://h.example/x", "hmac_secret": ""}},
            "sinks.webhook: Value error, hmac_secret is empty",
        ),
        (
            {"slack": {"webhook_url": "https://h", "chanel": "#x"}},
            "sinks.slack.chanel: unknown key",
        ),
    ],
)
def test_invalid_combinations_are_named(
    tmp_path: Path, sinks: dict[str, object], expected: str
) -> None:
    found = problems(tmp_path, sinks)
    assert any(problem.startswith(expected) for problem in found), found


def test_a_card_naming_an_unconfigured_sink_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            {"slack": {"enabled": False, "webhook_url": "https://h.example/x"}},
            card_sinks=["slack"],
        )
    assert "incident_cards[0].sinks[0]: sink 'slack' is not configured or not enabled" in str(
        caught.value
    )
