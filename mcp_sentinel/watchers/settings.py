"""The ``watchers`` config section: pollers of Prometheus and Alertmanager.

Both pollers are optional: a missing (or null) sub-section turns that poller off, and without a
``watchers`` section only the webhook receiver takes alerts::

    watchers:
      prometheus:
        url: http://prometheus:9090
        interval_seconds: 15
        include_pending: false       # also take alerts still waiting out their `for:`
        investigate_existing: false  # the first poll only records what already fires
        external_labels: {}          # Prometheus's global.external_labels: fingerprints need them
        timeout_seconds: 10
        auth: {type: none}           # or {type: bearer, token} or {type: basic, username, password}
      alertmanager:
        url: http://alertmanager:9093
        interval_seconds: 60
        investigate_existing: false
        timeout_seconds: 10
        auth: {type: none}

The auth models mirror ``server.auth`` (``mcp_sentinel.config``) but live here: config.py imports
this module, so importing config.py from here would be circular. Secrets are ``SecretStr``.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from mcp_sentinel.settings_base import HttpAuth, NoAuth, Section

_HTTP_URL = r"^https?://[^/\s]+"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


PollerAuth = HttpAuth


class _PollerSettings(Section):
    """What both pollers share."""

    url: str = Field(pattern=_HTTP_URL)
    auth: PollerAuth = Field(default_factory=lambda: NoAuth(type="none"))
    timeout_seconds: float = Field(default=10, gt=0, le=300)
    # False: the first successful poll after start-up records the alerts already active without
    # dispatching them, so a restart does not investigate everything again.
    investigate_existing: bool = False

    @field_validator("url")
    @classmethod
    def _plain_url(cls, value: str) -> str:
        # Credentials in the URL would end up in log lines: they belong in `auth`.
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("put credentials in auth, not in the URL")
        return value.rstrip("/")


class PrometheusWatcherSettings(_PollerSettings):
    """Polls ``GET {url}/api/v1/alerts``."""

    interval_seconds: float = Field(default=15, gt=0, le=3600)
    include_pending: bool = False
    # Prometheus adds its global.external_labels to an alert before sending it to Alertmanager;
    # the fingerprints computed here match Alertmanager's only with the same labels.
    external_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("external_labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name in value if not _LABEL_NAME.match(name))
        if bad:
            raise ValueError(f"not valid label names: {', '.join(bad)}")
        return value


class AlertmanagerWatcherSettings(_PollerSettings):
    """Polls ``GET {url}/api/v2/alerts?active=true&silenced=false&inhibited=false``."""

    interval_seconds: float = Field(default=60, gt=0, le=3600)


class WatchersSettings(Section):
    """Which pollers run. Without a section, only the webhook receiver takes alerts."""

    prometheus: PrometheusWatcherSettings | None = None
    alertmanager: AlertmanagerWatcherSettings | None = None
