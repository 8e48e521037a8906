"""Checks of a loaded configuration beyond its schema, for ``sentinel check``.

Problems make the config unusable (a prompt that does not exist or does not compile);
warnings are things that will work but likely not as meant (no model key).
"""

from __future__ import annotations

from mcp_sentinel.agent.probe import ProbeResult
from mcp_sentinel.config import SentinelSettings
from mcp_sentinel.errors import ConfigProblem
from mcp_sentinel.prompts import PromptRenderer, PromptRepository


def check_settings(settings: SentinelSettings) -> tuple[list[ConfigProblem], list[str]]:
    """(problems, warnings) of a config that already passed ``load_settings``."""
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    renderer = PromptRenderer(PromptRepository(settings.base_dir))
    for index, card in enumerate(settings.incident_cards):
        for problem in renderer.check(card):
            problems.append(ConfigProblem(f"incident_cards[{index}].prompt", problem))
    for name, server in settings.mcp_servers.items():
        if server.transport == "hosted" and settings.openai.api != "responses":
            problems.append(
                ConfigProblem(
                    f"mcp_servers.{name}.transport",
                    "hosted MCP servers work only with openai.api: responses (the Chat "
                    "Completions API cannot call them); use stdio or streamable_http instead",
                )
            )
    openai = settings.openai
    has_key = openai.api_key is not None and bool(openai.api_key.get_secret_value())
    if not has_key and openai.base_url is None:
        warnings.append(
            "openai.api_key is not set and no openai.base_url is given: every investigation "
            "will end as analysis_failed"
        )
    if not settings.incident_cards:
        warnings.append("no incident_cards: every alert will be unrouted")
    if settings.server.auth.type == "none" and settings.server.host not in (
        "127.0.0.1",
        "localhost",
        "::1",
    ):
        warnings.append(
            f"server.host is {settings.server.host} and server.auth is none: anyone who can "
            "reach the port can submit alerts"
        )
    return problems, warnings


def mcp_problems(results: list[ProbeResult]) -> list[ConfigProblem]:
    """Problems for the MCP servers that could not be started or reached."""
    return [
        ConfigProblem(f"mcp_servers.{result.server}", f"cannot start: {result.error}")
        for result in results
        if result.error is not None
    ]
