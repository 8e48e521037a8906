"""The ``sinks`` config section.

``console`` and ``audit`` are on by default; ``slack``, ``jira`` and ``webhook`` are on when their
section is present (and ``enabled`` is not false). Secrets are ``SecretStr``: the Slack webhook
URL, the Slack bot token, the Jira API token or personal access token, the generic webhook's URL,
headers and HMAC secret. Cross-field rules (which credentials go together) are checked here, with
messages that name the keys and never their values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from mcp_sentinel.settings_base import Section

_HTTP_URL = r"^https?://[^/\s]+"


def _is_set(secret: SecretStr | None) -> bool:
    # `${VAR:-}` expands to "": treat an empty secret as not set rather than as a credential.
    return secret is not None and bool(secret.get_secret_value().strip())


def _check_url(secret: SecretStr | None, key: str) -> None:
    if _is_set(secret):
        assert secret is not None
        value = secret.get_secret_value().strip()
        if not (value.startswith("https://") or value.startswith("http://")) or len(value) < 10:
            raise ValueError(f"{key} must be an http(s) URL")  # never echo the value: a secret


class RetrySettings(Section):
    """How an HTTP sink retries 5xx, 429 and connection errors before the dead-letter file."""

    max_attempts: int = Field(default=5, ge=1, le=20)
    # The longest single wait. A Retry-After longer than this ends the retries at once: waiting
    # less than the server asked for would only earn another 429.
    max_wait_seconds: float = Field(default=60, gt=0, le=3600)
    initial_wait_seconds: float = Field(default=0.5, gt=0, le=60)


class ConsoleSinkSettings(Section):
    enabled: bool = True


class AuditSinkSettings(Section):
    enabled: bool = True
    path: Path = Path("sentinel-audit.jsonl")


class SlackSinkSettings(Section):
    """An incoming webhook (``webhook_url``), or the Web API (``bot_token`` + ``channel``)."""

    enabled: bool = True
    webhook_url: SecretStr | None = None
    bot_token: SecretStr | None = None
    channel: str | None = Field(default=None, min_length=1)
    channel_by_card: dict[str, str] = Field(default_factory=dict)
    # An alert label whose value names the channel (for example `slack_channel`): rules choose
    # where their alerts go. It wins over channel_by_card, which wins over channel.
    channel_label: str | None = Field(default=None, min_length=1)
    api_url: str = Field(default="https://slack.com/api", pattern=_HTTP_URL)
    timeout_seconds: float = Field(default=10, gt=0, le=300)
    retry: RetrySettings | None = None

    @field_validator("api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> SlackSinkSettings:
        webhook, bot = _is_set(self.webhook_url), _is_set(self.bot_token)
        if webhook and bot:
            raise ValueError("set webhook_url or bot_token, not both")
        if not webhook and not bot:
            raise ValueError(
                "set webhook_url (an incoming webhook) or bot_token and channel (the Web API)"
            )
        _check_url(self.webhook_url, "webhook_url")
        if bot and self.channel is None:
            raise ValueError(
                "bot_token needs channel: the default channel (channel_by_card and "
                "channel_label choose others)"
            )
        if webhook and (self.channel or self.channel_by_card or self.channel_label):
            raise ValueError(
                "channel, channel_by_card and channel_label need bot_token: an incoming webhook "
                "always posts to the channel it was created for"
            )
        return self

    @property
    def uses_bot(self) -> bool:
        return _is_set(self.bot_token)


_DEFAULT_PRIORITIES = {
    "critical": "Highest",
    "page": "Highest",
    "high": "High",
    "error": "High",
    "warning": "Medium",
    "info": "Low",
}


class JiraSinkSettings(Section):
    """Jira Cloud (``api_version: 3``: email + api_token) or Server/Data Center (``2``: pat)."""

    enabled: bool = True
    base_url: str = Field(pattern=_HTTP_URL)
    api_version: Literal[2, 3] = 3
    email: str | None = Field(default=None, min_length=3)
    api_token: SecretStr | None = None
    pat: SecretStr | None = None
    project_key: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,254}$")
    issue_type: str = Field(default="Task", min_length=1)
    # Alert severity label -> Jira priority name; a severity not listed leaves the project's
    # default priority.
    priority_map: dict[str, str] = Field(default_factory=lambda: dict(_DEFAULT_PRIORITIES))
    labels: list[str] = Field(default_factory=list)
    # The transition to run on resolution, by name (for example "Done"); none: comment only.
    resolve_transition: str | None = Field(default=None, min_length=1)
    # Fingerprint -> issue key map; default: jira-issue-map.json next to sinks.dead_letter_dir.
    issue_map_path: Path | None = None
    timeout_seconds: float = Field(default=15, gt=0, le=300)
    retry: RetrySettings | None = None

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("priority_map")
    @classmethod
    def _lower_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return {severity.lower(): name for severity, name in value.items()}

    @field_validator("labels")
    @classmethod
    def _labels_have_no_spaces(cls, value: list[str]) -> list[str]:
        for label in value:
            if not label or any(char.isspace() for char in label):
                raise ValueError(f"Jira labels cannot be empty or contain spaces: {label!r}")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> JiraSinkSettings:
        if self.api_version == 3:
            if self.email is None or not _is_set(self.api_token):
                raise ValueError(
                    "api_version 3 (Jira Cloud) needs email and api_token (Basic auth)"
                )
            if self.pat is not None:
                raise ValueError(
                    "pat is for Server/Data Center (api_version: 2); Jira Cloud uses email "
                    "and api_token"
                )
        else:
            if not _is_set(self.pat):
                raise ValueError(
                    "api_version 2 (Server/Data Center) needs pat (a personal access token)"
                )
            if self.email is not None or self.api_token is not None:
                raise ValueError(
                    "email and api_token are for Jira Cloud (api_version: 3); Server/Data "
                    "Center uses pat"
                )
        return self


class WebhookSinkSettings(Section):
    """POSTs each record as JSON; signed with HMAC-SHA256 when ``hmac_secret`` is set."""

    enabled: bool = True
    # A secret: many webhook URLs carry a token in their path. Only the host is ever logged.
    url: SecretStr
    hmac_secret: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10, gt=0, le=300)
    retry: RetrySettings | None = None

    @model_validator(mode="after")
    def _url(self) -> WebhookSinkSettings:
        if not _is_set(self.url):
            raise ValueError("url is empty")
        _check_url(self.url, "url")
        if self.hmac_secret is not None and not _is_set(self.hmac_secret):
            raise ValueError("hmac_secret is empty: remove it, or set it")
        return self


SinkName = Literal["console", "audit", "slack", "jira", "webhook"]
SINK_NAMES: tuple[SinkName, ...] = ("console", "audit", "slack", "jira", "webhook")


class SinksSettings(Section):
    console: ConsoleSinkSettings = Field(default_factory=ConsoleSinkSettings)
    audit: AuditSinkSettings = Field(default_factory=AuditSinkSettings)
    slack: SlackSinkSettings | None = None
    jira: JiraSinkSettings | None = None
    webhook: WebhookSinkSettings | None = None
    # One JSONL file per sink holds deliveries that failed after every retry; `sentinel sinks
    # redeliver` sends them again.
    dead_letter_dir: Path = Path("dead-letter")
    retry: RetrySettings = Field(default_factory=RetrySettings)
    # Per sink: deliveries waiting while the sink is slow. When full, a delivery goes straight
    # to the dead-letter file so a worker never waits for a sink.
    queue_size: int = Field(default=1000, ge=1)
    # On shutdown: how long queued deliveries may take; what is left goes to the dead letters.
    drain_timeout_seconds: float = Field(default=30, ge=0)

    def enabled_names(self) -> list[str]:
        """Names of the sinks that are configured and enabled, as cards refer to them."""
        names: list[str] = []
        for name in SINK_NAMES:
            section = getattr(self, name)
            if section is not None and section.enabled:
                names.append(name)
        return names

    def retry_for(self, name: SinkName) -> RetrySettings:
        """The sink's own ``retry`` section if it has one, else ``sinks.retry``."""
        section = getattr(self, name, None)
        own = getattr(section, "retry", None)
        return own if isinstance(own, RetrySettings) else self.retry
