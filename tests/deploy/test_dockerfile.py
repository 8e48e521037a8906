"""The Dockerfile and .dockerignore, read as text: a small non-root final stage, the install
steps CI uses, and paths and ports that agree with the config and the compose file."""

from __future__ import annotations

import re
import shlex

from mcp_sentinel.config import SentinelSettings
from tests.conftest import REPO_ROOT

from .conftest import (
    IMAGE_CONFIG_DIR,
    IMAGE_DATA_DIR,
    arguments_of,
    dockerfile_instructions,
    exec_form,
    service,
    stages,
)


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def default_arg(name: str) -> str:
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ARG" and arguments.startswith(f"{name}="):
            return arguments.split("=", 1)[1]
    raise AssertionError(f"no ARG {name} with a default")


def test_two_stages_on_slim_python_311() -> None:
    builder, final = stages()
    assert builder[0][1].endswith(" AS builder")
    base = default_arg("PYTHON_IMAGE")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")


def test_install_steps_are_the_ones_ci_uses() -> None:
    builder = stages()[0]
    runs = arguments_of(builder, "RUN")
    assert any(re.fullmatch(r'pip install "uv==\$\{UV_VERSION\}"', run) for run in runs), runs
    syncs = [run for run in runs if run.startswith("uv sync")]
    assert syncs and all("--frozen" in run and "--no-dev" in run for run in syncs)
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in " ".join(arguments_of(builder, "ENV"))
    # The uv image cannot be pulled here: uv comes from pip.
    assert not any("ghcr.io" in arguments for _, arguments in dockerfile_instructions())


def test_final_stage_has_no_build_tools_and_runs_as_non_root() -> None:
    final = final_stage()
    runs = " ".join(arguments_of(final, "RUN"))
    for tool in ("pip install", "uv ", "apt-get", "gcc", "build-essential"):
        assert tool not in runs, f"final stage runs {tool!r}"
    copies = arguments_of(final, "COPY")
    from_builder = [copy for copy in copies if copy.startswith("--from=")]
    assert from_builder == ["--from=builder /app/.venv /app/.venv"]
    (user,) = arguments_of(final, "USER")
    assert user not in ("root", "0")
    assert "useradd --system --uid 10001 --gid sentinel" in runs
    assert f"-o {user} -g {user}" in runs and IMAGE_DATA_DIR in runs


def test_config_prompts_port_and_healthcheck_agree(settings: SentinelSettings) -> None:
    final = final_stage()
    env = " ".join(arguments_of(final, "ENV"))
    assert f"SENTINEL_CONFIG={IMAGE_CONFIG_DIR}/config.yaml" in env
    assert "PATH=/app/.venv/bin:$PATH" in env
    copies = arguments_of(final, "COPY")
    assert f"prompts {IMAGE_CONFIG_DIR}/prompts" in copies
    assert f"deploy/sentinel/config.yaml {IMAGE_CONFIG_DIR}/config.yaml" in copies
    assert arguments_of(final, "EXPOSE") == [str(settings.server.port)]
    assert arguments_of(final, "VOLUME") == [f'["{IMAGE_DATA_DIR}"]']
    (healthcheck,) = arguments_of(final, "HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert "--timeout=" in options and "--interval=" in options
    argv = exec_form(command)
    assert argv[0] == "python" and "curl" not in healthcheck
    assert f"http://127.0.0.1:{settings.server.port}/healthz" in argv[-1]
    entrypoint = exec_form(arguments_of(final, "ENTRYPOINT")[0])
    cmd = exec_form(arguments_of(final, "CMD")[0])
    assert entrypoint + cmd == ["sentinel", "run", "--config", f"{IMAGE_CONFIG_DIR}/config.yaml"]
    assert (
        service("sentinel")["environment"]["SENTINEL_CONFIG"] == f"{IMAGE_CONFIG_DIR}/config.yaml"
    )


def _pattern(glob: str) -> re.Pattern[str]:
    """Docker's .dockerignore glob: ``**`` any number of directories, ``*`` and ``?`` within
    one path element."""
    regex = ""
    index = 0
    while index < len(glob):
        if glob.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif glob.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif glob[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif glob[index] == "?":
            regex, index = regex + "[^/]", index + 1
        else:
            regex, index = regex + re.escape(glob[index]), index + 1
    return re.compile(regex)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, ``!`` re-includes, and a path is left
    out with its parent directory."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        compiled = _pattern(pattern.removeprefix("!").strip("/"))
        if any(compiled.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_the_build_context_has_what_is_copied_and_no_secrets() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    copied: list[str] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY" and not arguments.startswith("--from="):
            copied.extend(shlex.split(arguments)[:-1])
    assert set(copied) >= {"pyproject.toml", "uv.lock", "README.md", "mcp_sentinel", "prompts"}
    for source in copied:
        assert (REPO_ROOT / source).exists(), source
        assert not _ignored(source, patterns), f".dockerignore leaves out {source}"
    assert _ignored("mcp_sentinel/__pycache__/cli.cpython-311.pyc", patterns)
    for kept_out in (".venv", ".git", "deploy/secrets/webhook-token", "tests", "config.yaml"):
        assert _ignored(kept_out, patterns), kept_out
