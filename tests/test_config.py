from __future__ import annotations

from pathlib import Path

import pytest

from mcp_sentinel.config import config_path_from, load_settings
from mcp_sentinel.errors import ConfigError
from mcp_sentinel.settings_base import BearerAuth
from tests.conftest import REPO_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    if "server:" not in text:
        text = "server: {auth: {type: none}}\n" + text  # server.auth is required
    path.write_text(text)
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env or {})
    return [str(problem) for problem in caught.value.problems]


def test_example_config_loads_and_resolves_paths() -> None:
    settings = load_settings(REPO_ROOT / "config.example.yaml", env={"SENTINEL_WEBHOOK_TOKEN": "t"})
    assert settings.server.port == 9095
    assert settings.server.host == "127.0.0.1"
    assert isinstance(settings.server.auth, BearerAuth)
    assert settings.server.auth.token.get_secret_value() == "t"
    assert [card.resource for card in settings.incident_cards][:2] == [
        "TargetDown",
        "HighErrorRate",
    ]
    assert settings.resolve(settings.sinks.audit.path) == REPO_ROOT / "sentinel-audit.jsonl"
    assert settings.openai.api_key is not None
    assert settings.openai.api_key.get_secret_value() == ""


def test_env_overrides_yaml_and_expands_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        'dispatcher: {queue_size: 10}\nopenai: {api_key: "${KEY}", model: "${MODEL:-gpt-x}"}\n',
    )
    monkeypatch.setenv("SENTINEL__DISPATCHER__QUEUE_SIZE", "77")
    monkeypatch.setenv("SENTINEL__SERVER__PORT", "9200")
    settings = load_settings(path, env={"KEY": "sk-secret"})
    assert settings.dispatcher.queue_size == 77
    assert settings.server.port == 9200
    assert settings.openai.model == "gpt-x"
    assert settings.openai.api_key is not None
    assert settings.openai.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(settings)


def test_spec_aliases_load(tmp_path: Path) -> None:
    (tmp_path / "p.md.j2").write_text("x")
    path = write(
        tmp_path,
        "mcp_servers: {prom: {transport: stdio, command: x}}\n"
        "incident_cards:\n"
        "  - {resource: A, prompt: p.md.j2, max-iterations: 3, mcp-servers: [prom]}\n",
    )
    card = load_settings(path, env={}).incident_cards[0]
    assert card.max_iterations == 3
    assert card.tools == ("prom",)


def test_every_problem_is_listed_with_its_location(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'server: {auth: {type: bearer, token: "${UNSET_TOKEN}"}, port: 70000}\n'
        "dispatcher: {queue_size: 0, bogus: 1}\n"
        "incident_cards:\n"
        "  - {resource: A, prompt: a.md}\n"
        "  - {resource: B, prompt: b.md, match: ['severity=~\"(crit\"']}\n"
        "  - {resource: C}\n",
    )
    problems = problems_of(path)
    joined = "\n".join(problems)
    assert "server.auth.token: environment variable UNSET_TOKEN is not set" in problems
    assert any(p.startswith("server.port:") for p in problems), joined
    assert any(p.startswith("dispatcher.queue_size:") for p in problems), joined
    assert "dispatcher.bogus: unknown key (check its spelling)" in problems
    assert any(p.startswith("incident_cards[1].match:") and "bad regex" in p for p in problems)
    assert any(p.startswith("incident_cards[2].prompt:") for p in problems), joined


def test_references_to_missing_servers_sinks_and_cards(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dispatcher: {default_card: nope}\n"
        "sinks: {console: {enabled: false}}\n"
        "incident_cards:\n"
        "  - {resource: A, prompt: a.md, tools: [ghost.query], sinks: [console]}\n",
    )
    problems = problems_of(path)
    assert (
        "incident_cards[0].tools[0]: MCP server 'ghost' is not defined under mcp_servers"
        in problems
    )
    assert any(p.startswith("incident_cards[0].sinks[0]: sink 'console'") for p in problems)
    assert "dispatcher.default_card: 'nope' is not an incident card" in problems


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: [1,\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:") and "invalid YAML" in problem


def test_missing_file(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope.yaml")
    assert problem.endswith("config file not found")


def test_config_path_precedence() -> None:
    assert config_path_from("a.yaml", env={"SENTINEL_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert config_path_from(None, env={"SENTINEL_CONFIG": "b.yaml"}) == Path("b.yaml")
    assert config_path_from(None, env={}) == Path("config.yaml")
