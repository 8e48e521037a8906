"""Settings: a YAML file, ``${VAR}`` references inside it, and ``SENTINEL__SECTION__KEY`` overrides.

Precedence, highest first: ``SENTINEL__...`` environment variables, then the YAML file, then the
defaults here. ``${VAR}`` and ``${VAR:-default}`` inside YAML strings are expanded from the
environment before validation; a reference to an unset variable without a default is a problem
named by its location. Relative paths (prompt templates, the audit log) are resolved against the
config file's directory, so a config means the same thing whatever the working directory.

``load_settings`` raises ``ConfigError`` listing every problem with its location
(``incident_cards[2].prompt: ...``); secrets are ``SecretStr`` and never appear in a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mcp_sentinel.errors import ConfigError, ConfigProblem
from mcp_sentinel.models import IncidentCard
from mcp_sentinel.settings_base import HttpAuth, Section
from mcp_sentinel.sinks.settings import SinksSettings
from mcp_sentinel.telemetry.settings import TelemetrySettings
from mcp_sentinel.validators.settings import ValidatorsSettings
from mcp_sentinel.watchers.settings import WatchersSettings

DEFAULT_CONFIG_PATH = "config.yaml"
CONFIG_ENV_VAR = "SENTINEL_CONFIG"


# --------------------------------------------------------------------------- server


ServerAuth = HttpAuth

_AUTH_REQUIRED = (
    "required: set {type: bearer, token: ...} or {type: basic, username: ..., password: ...}; "
    "to accept alerts without credentials, say so explicitly with {type: none}"
)


class TlsSettings(Section):
    """The listener's certificate and key (PEM files; relative to the config file)."""

    cert_file: Path
    key_file: Path


class ServerSettings(Section):
    """The HTTP listener. ``auth`` has no default: an open webhook must be asked for."""

    host: str = "127.0.0.1"
    port: int = Field(default=9095, ge=0, le=65535)
    # `None` is never kept: the validator below turns a missing `auth` into a problem that says
    # how to opt out, instead of pydantic's bare "Field required".
    auth: ServerAuth = Field(
        default=None,
        validate_default=True,
        description="Required. The webhook's credentials; {type: none} accepts alerts without "
        "any (a warning is logged when the listener is not on loopback).",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    capture_dir: Path | None = None
    read_timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="The request body must arrive within this, else 408 and the connection is "
        "closed (a client that stalls mid-body holds nothing for long).",
    )
    keepalive_timeout_seconds: float = Field(
        default=15,
        gt=0,
        le=3600,
        description="An idle connection is closed this long after it opened or after its last "
        "answer; this also bounds a client that sends its request head slowly (slowloris).",
    )
    tls: TlsSettings | None = Field(default=None, description="Serve HTTPS with this certificate.")

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_is_explicit(cls, value: Any) -> Any:
        if value is None:
            # A custom error type keeps pydantic's "Value error, " prefix off the message.
            raise PydanticCustomError("auth_required", _AUTH_REQUIRED)
        return value


class DispatcherSettings(Section):
    queue_size: int = Field(default=1000, ge=1)
    worker_concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Investigations at once. An incident holds one of these slots from the "
        "queue to its report; writing the report to the audit log and the outbox holds none, "
        "so the next incident starts meanwhile.",
    )
    dedupe_ttl_seconds: float = Field(default=3600, gt=0)
    drain_timeout_seconds: float = Field(default=30, ge=0)
    default_card: str | None = None
    retry_after_seconds: int = Field(default=5, ge=1)
    backend: Literal["sqlite", "memory", "redis"] = Field(
        default="sqlite",
        description="sqlite: the queue, the dedupe keys and the sinks' outbox survive a crash or a "
        "restart, and the webhook answers 200 once a payload is committed. memory: all of it is "
        "lost on exit (tests, experiments). redis: the queue and the dedupe keys live in Redis, "
        "shared by every replica (docs/scaling.md).",
    )
    sqlite_path: Path = Field(
        default=Path("sentinel-state.db"),
        description="The state database (with backend sqlite); one daemon per file.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="With backend redis (required then): redis:// or rediss:// (TLS) URL, "
        "optionally with the password and the database number (redis://:pw@host:6379/0). "
        "Secret, since it may hold the password.",
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description="With backend redis: the password, when it is not in redis_url.",
    )
    redis_visibility_timeout_seconds: float = Field(
        default=300,
        gt=0,
        description="With backend redis: an incident whose replica has not renewed its claim for "
        "this long is taken over by another replica. Live workers renew every third of it.",
    )
    redis_key_prefix: str = Field(
        default="mcp-sentinel",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="With backend redis: the prefix of every key; replicas sharing it share "
        "their queue and dedupe keys.",
    )

    @model_validator(mode="after")
    def _redis_needs_url(self) -> DispatcherSettings:
        url = self.redis_url.get_secret_value() if self.redis_url is not None else ""
        if self.backend == "redis" and not url:
            raise ValueError("dispatcher.redis_url is required with backend redis")
        if url and not url.startswith(("redis://", "rediss://")):
            raise ValueError("dispatcher.redis_url must start with redis:// or rediss://")
        return self


class OpenAISettings(Section):
    model: str = Field(default="gpt-4.1", min_length=1)
    base_url: str | None = None
    api_key: SecretStr | None = None
    api: Literal["chat_completions", "responses"] = "responses"
    temperature: float | None = Field(default=0.2, ge=0, le=2)
    timeout_seconds: float = Field(default=120, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    tracing_export: bool = False


# --------------------------------------------------------------------------- MCP servers


class _McpServerBase(Section):
    """What every MCP server has. Tools not listed in ``read_only_tools`` count as mutating:
    the tool policy decides whether they may run at all."""

    read_only_tools: tuple[str, ...] = ()
    max_output_chars: int = Field(default=8000, ge=100)
    timeout_seconds: float = Field(default=30, gt=0)


class StdioMcpServer(_McpServerBase):
    transport: Literal["stdio"]
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, SecretStr] = Field(default_factory=dict)
    cwd: Path | None = None


class HttpMcpServer(_McpServerBase):
    transport: Literal["streamable_http", "sse"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, SecretStr] = Field(default_factory=dict)


class HostedMcpServer(_McpServerBase):
    """An MCP server the model provider calls itself (OpenAI's hosted MCP tool). Works only
    with ``openai.api: responses``; its calls do not pass through this daemon, so only
    ``allowed_tools`` and the approval policy apply to them."""

    transport: Literal["hosted"]
    server_url: str = Field(pattern=r"^https?://")
    server_label: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    require_approval: Literal["never", "always"] = "always"


McpServerSettings = Annotated[
    StdioMcpServer | HttpMcpServer | HostedMcpServer, Field(discriminator="transport")
]


# --------------------------------------------------------------------------- the whole


class SentinelSettings(BaseSettings):
    """The whole configuration. Build it with ``load_settings``; field docs live in docs/."""

    model_config = SettingsConfigDict(
        env_prefix="SENTINEL__",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    # Validated even when absent, so a config without `server` is told that `server.auth` is
    # required.
    server: ServerSettings = Field(default_factory=dict, validate_default=True)
    dispatcher: DispatcherSettings = Field(default_factory=DispatcherSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    mcp_servers: dict[str, McpServerSettings] = Field(default_factory=dict)
    incident_cards: list[IncidentCard] = Field(default_factory=list)
    validators: ValidatorsSettings = Field(default_factory=ValidatorsSettings)
    sinks: SinksSettings = Field(default_factory=SinksSettings)
    watchers: WatchersSettings = Field(default_factory=WatchersSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML arrives as init kwargs; environment variables override it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _cross_references(self) -> SentinelSettings:
        names = [card.resource for card in self.incident_cards]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"incident_cards: duplicate resource name(s): {', '.join(duplicated)}")
        return self

    def resolve(self, path: Path | str) -> Path:
        """A config path made absolute against the config file's directory."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    def card(self, resource: str) -> IncidentCard:
        for card in self.incident_cards:
            if card.resource == resource:
                return card
        raise KeyError(resource)


# --------------------------------------------------------------------------- loading

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(
    value: Any, location: str, env: Mapping[str, str], problems: list[ConfigProblem]
) -> Any:
    if isinstance(value, str):

        def substitute(found: re.Match[str]) -> str:
            name, default = found.group(1), found.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(ConfigProblem(location, f"environment variable {name} is not set"))
            return ""

        return _REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {
            key: _expand(item, _join(location, str(key)), env, problems)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _expand(item, f"{location}[{index}]", env, problems) for index, item in enumerate(value)
        ]
    return value


def _join(location: str, key: str) -> str:
    return f"{location}.{key}" if location else key


def format_location(loc: tuple[int | str, ...]) -> str:
    """``('incident_cards', 2, 'prompt')`` -> ``incident_cards[2].prompt``; union tags dropped."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"bearer", "basic", "none", "stdio", "streamable_http", "sse", "hosted"}:
            continue  # the discriminator's tag, which pydantic adds to the path
        else:
            text = _join(text, part)
    return text


def _validation_problems(error: ValidationError) -> list[ConfigProblem]:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        problems.append(ConfigProblem(format_location(tuple(item["loc"])), message))
    return problems


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse the YAML file into a mapping; raise ``ConfigError`` naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), "config file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(where, f"invalid YAML: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(str(path), "the top level must be a mapping of sections")])
    return data


def load_settings(path: Path | str, env: Mapping[str, str] | None = None) -> SentinelSettings:
    """Load, expand and validate a config file; raise ``ConfigError`` with every problem."""
    config_path = Path(path).expanduser().resolve()
    environment = os.environ if env is None else env
    raw = read_config_file(config_path)
    problems: list[ConfigProblem] = []
    expanded = _expand(raw, "", environment, problems)
    try:
        settings = SentinelSettings(**expanded, base_dir=config_path.parent)
    except ValidationError as exc:
        # A missing variable also fails validation where it is used: report it once.
        unset = {problem.location for problem in problems}
        follow_on = [p for p in _validation_problems(exc) if p.location not in unset]
        raise ConfigError(problems + follow_on) from None
    problems += reference_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def reference_problems(settings: SentinelSettings) -> list[ConfigProblem]:
    """Names that point nowhere: a card's MCP server or sink, the default card."""
    problems: list[ConfigProblem] = []
    sinks = set(settings.sinks.enabled_names())
    for index, card in enumerate(settings.incident_cards):
        where = f"incident_cards[{index}]"
        for position, entry in enumerate(card.tools):
            server = entry.partition(".")[0]
            if server not in settings.mcp_servers:
                problems.append(
                    ConfigProblem(
                        f"{where}.tools[{position}]",
                        f"MCP server {server!r} is not defined under mcp_servers",
                    )
                )
        for position, sink in enumerate(card.sinks):
            if sink not in sinks:
                problems.append(
                    ConfigProblem(
                        f"{where}.sinks[{position}]",
                        f"sink {sink!r} is not configured or not enabled under sinks",
                    )
                )
    default = settings.dispatcher.default_card
    if default is not None and default not in {card.resource for card in settings.incident_cards}:
        problems.append(
            ConfigProblem("dispatcher.default_card", f"{default!r} is not an incident card")
        )
    return problems


def config_path_from(option: str | None, env: Mapping[str, str] | None = None) -> Path:
    """The config path: the option, else ``$SENTINEL_CONFIG``, else ``config.yaml``."""
    environment = os.environ if env is None else env
    return Path(option or environment.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)
