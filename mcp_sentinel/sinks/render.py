"""What people read about an incident, independent of the medium: the title, the labels worth
showing, the links (source graph, runbook, an Alertmanager silence), times and truncation.

Slack (``slack_blocks``) and Jira (``jira_format``) turn these into their own markup; escaping
for that markup is theirs. Every function here is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from mcp_sentinel.models import IncidentNotification, IncidentReport, Outcome

#: Labels shown first, in this order, when an alert has them.
KEY_LABELS = (
    "alertname",
    "severity",
    "service",
    "instance",
    "job",
    "namespace",
    "pod",
    "container",
    "node",
    "cluster",
    "env",
)


def truncate(text: str, limit: int, *, note: str = "truncated") -> str:
    """``text`` cut to at most ``limit`` characters, ending with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    # The count in the note is at most len(text), so its longest form bounds the suffix.
    keep = max(0, limit - len(_suffix(note, len(text))))
    return text[:keep] + _suffix(note, len(text) - keep)


def _suffix(note: str, cut: int) -> str:
    return f"… ({note}: {cut} more characters)"


def title(notification: IncidentNotification) -> str:
    """``ProbeAlwaysFiring on app-01:8080``: the alert and where it fires."""
    where = (
        notification.labels.get("instance")
        or notification.labels.get("service")
        or notification.labels.get("job")
        or ""
    )
    name = notification.alertname or "<no alertname>"
    return f"{name} on {where}" if where else name


def severity(notification: IncidentNotification) -> str:
    return (notification.severity or "none").lower()


def alert_summary(notification: IncidentNotification) -> str:
    annotations = notification.annotations
    return annotations.get("summary") or annotations.get("description") or ""


def key_labels(labels: dict[str, str], *, limit: int = 10) -> list[tuple[str, str]]:
    """Up to ``limit`` labels: the well-known ones first, then the rest alphabetically."""
    ordered = [(name, labels[name]) for name in KEY_LABELS if name in labels]
    ordered += sorted((name, value) for name, value in labels.items() if name not in KEY_LABELS)
    return ordered[:limit]


def silence_url(notification: IncidentNotification) -> str | None:
    """A link to Alertmanager's new-silence form pre-filled with this alert's label matchers
    (``{external_url}/#/silences/new?filter={alertname="X",instance="Y"}``, URL-encoded); None
    without an ``externalURL``."""
    base = notification.group.external_url.rstrip("/")
    if not base or not notification.labels:
        return None
    names = sorted(notification.labels, key=lambda name: (name != "alertname", name))
    matchers = ",".join(f'{name}="{_matcher_value(notification.labels[name])}"' for name in names)
    return f"{base}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def _matcher_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str


def links(notification: IncidentNotification) -> list[Link]:
    """Source graph, runbook and silence links, those that exist and are http(s)."""
    found = [
        Link("Source", notification.generator_url),
        Link("Runbook", notification.runbook_url),
        Link("Silence", silence_url(notification) or ""),
    ]
    return [link for link in found if link.url.startswith(("http://", "https://"))]


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else "unknown"


def duration(notification: IncidentNotification) -> str | None:
    """How long the alert fired, for a resolution: ``1h 5m 3s``."""
    if notification.ends_at is None:
        return None
    seconds = int((notification.ends_at - notification.starts_at).total_seconds())
    if seconds < 0:
        return None
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    if hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


def superseded(report: IncidentReport) -> bool:
    """True for a ``cancelled`` report: the alert resolved during (or before) the
    investigation, and the resolution record that cancelled it follows. People-facing sinks
    skip it rather than post a "no finding" that the resolution replaces a moment later."""
    return report.outcome is Outcome.CANCELLED


def outcome_line(report: IncidentReport) -> str:
    """One line saying how the investigation ended, for reports without a finding."""
    if report.outcome is Outcome.RESOLVED:
        return "The alert resolved."
    if report.error:
        return f"No finding ({report.outcome.value}): {report.error}"
    return f"No finding ({report.outcome.value})."


def run_facts(report: IncidentReport) -> str:
    """``card Checkout · model gpt-4.1 · 2 turn(s) · 3 tool call(s) · 12.3s``."""
    parts = [f"card {report.card}"]
    if report.model:
        parts.append(f"model {report.model}")
    parts.append(f"{report.turns} turn(s)")
    parts.append(f"{len(report.tools_called)} tool call(s)")
    parts.append(f"{report.duration_seconds:.1f}s")
    parts.append(f"incident {report.incident_id[:12]}")
    return " · ".join(parts)
