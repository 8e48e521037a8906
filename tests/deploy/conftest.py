"""The container deployment's files, parsed once, and the layout the image gives sentinel.

No container engine runs in the tests: they check what the files say about each other, run the
real ``promtool``/``amtool`` where installed, and run the image's entrypoint command on the host
with the image's config layout (``/etc/sentinel/config.yaml`` beside ``prompts/``) rebuilt in a
temporary directory.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mcp_sentinel.config import SentinelSettings, load_settings
from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SENTINEL_CONFIG = DEPLOY / "sentinel" / "config.yaml"
IMAGE_CONFIG_DIR = "/etc/sentinel"
IMAGE_DATA_DIR = "/var/lib/sentinel"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    document = load_yaml(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return dict(services[name])


def flag(command: list[str], name: str) -> str | None:
    """The value of ``--name=value`` in a container command, or None."""
    for argument in command:
        if argument.startswith(f"{name}="):
            return argument.split("=", 1)[1]
    return None


def listen_port(command: list[str], default: int) -> int:
    """The port of a Prometheus-style ``--web.listen-address=[host]:port`` flag."""
    address = flag(command, "--web.listen-address")
    return int(address.rsplit(":", 1)[1]) if address else default


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"//{url}")
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads them (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            key, _, value = stripped.partition("=")
            values[key.strip()] = value.strip()
    return values


_COMPOSE_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def sentinel_environment() -> dict[str, str]:
    """The environment compose gives the sentinel container when the user's shell sets
    nothing: its env_file(s), then ``environment`` with ``${VAR:-default}`` defaults."""
    spec = service("sentinel")
    environment: dict[str, str] = {}
    for name in spec.get("env_file") or []:
        environment.update(env_file(REPO_ROOT / name))
    for key, value in (spec.get("environment") or {}).items():
        environment[key] = _COMPOSE_REFERENCE.sub(lambda m: m.group(2) or "", str(value))
    return environment


def image_layout(base: Path) -> Path:
    """``base/etc/sentinel/{config.yaml, prompts/}`` as the image lays them out; the config
    path."""
    config_dir = base / IMAGE_CONFIG_DIR.lstrip("/")
    shutil.copytree(REPO_ROOT / "prompts", config_dir / "prompts")
    shutil.copy(SENTINEL_CONFIG, config_dir / "config.yaml")
    return config_dir / "config.yaml"


def deploy_settings(tmp_path: Path) -> SentinelSettings:
    return load_settings(image_layout(tmp_path), env=sentinel_environment())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    pairs = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions per stage (what precedes the first FROM is dropped)."""
    result: list[list[tuple[str, str]]] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            result.append([])
        if result:
            result[-1].append((instruction, arguments))
    return result


def arguments_of(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    """The arguments of every ``instruction`` in a stage, in order."""
    return [arguments for name, arguments in stage if name == instruction]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) argument list, or the shell words of a shell form."""
    text = arguments.strip()
    if text.startswith("["):
        parsed = json.loads(text)
        assert isinstance(parsed, list)
        return [str(item) for item in parsed]
    return shlex.split(text)


@pytest.fixture
def settings(tmp_path: Path) -> SentinelSettings:
    """deploy/sentinel/config.yaml loaded as the container loads it."""
    return deploy_settings(tmp_path)
