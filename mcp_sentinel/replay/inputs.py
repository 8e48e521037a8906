"""Reading alerts to replay: every format the daemon meets.

- an Alertmanager webhook payload (``{"version": "4", "alerts": [...]}``);
- a capture file written by ``sentinel run --capture`` (``{"received_at", "headers",
  "payload"}``);
- an Alertmanager API dump: ``/api/v2/alerts`` (a list of alerts) or ``/api/v2/alerts/groups``
  (a list of groups, each with ``alerts``);
- a Prometheus ``/api/v1/alerts`` answer (fingerprints computed as Alertmanager does);
- JSONL whose every line is one of the above;
- a directory: every ``*.json`` and ``*.jsonl`` below it, in name order (capture files sort by
  time).

Each document becomes one batch, dispatched together as the webhook would. A file named on
the command line that is none of these is an error naming the file (and line, for JSONL) and
what was expected; inside a directory, such a file is skipped and reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from mcp_sentinel.errors import PermanentError
from mcp_sentinel.models import AlertGroup, IncidentNotification, WebhookPayload
from mcp_sentinel.watchers.alertmanager import GettableAlert
from mcp_sentinel.watchers.fingerprint import fingerprint
from mcp_sentinel.watchers.poller import truncate_to_milliseconds
from mcp_sentinel.watchers.prometheus import PrometheusAlertsResponse
from mcp_sentinel.watchers.webhook import describe_validation_error

_GETTABLE = TypeAdapter(list[GettableAlert])


class ReplayInputError(PermanentError):
    """A file to replay could not be read or understood."""


@dataclass(frozen=True, slots=True)
class Batch:
    """The notifications of one document, and where it came from (``file`` or ``file:line``)."""

    origin: str
    notifications: list[IncidentNotification]


def _from_gettable(
    alerts: list[GettableAlert], receiver: str, now: datetime
) -> list[IncidentNotification]:
    notifications = []
    for alert in alerts:
        ended = alert.endsAt is not None and alert.endsAt <= now and alert.endsAt.year > 1
        group = AlertGroup(
            key=f'{{}}:{{alertname="{alert.labels.get("alertname", "")}"}}',
            labels={"alertname": alert.labels.get("alertname", "")},
            receiver=receiver,
            external_url="",
        )
        notifications.append(
            IncidentNotification(
                fingerprint=alert.fingerprint,
                starts_at=alert.startsAt,
                ends_at=alert.endsAt if ended else None,
                status="resolved" if ended else "firing",
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                generator_url=alert.generatorURL,
                group=group,
                source="replay",
                received_at=alert.startsAt,
            )
        )
    return notifications


def _from_prometheus(answer: PrometheusAlertsResponse, now: datetime) -> list[IncidentNotification]:
    notifications = []
    for alert in answer.data.alerts:
        if alert.state != "firing":
            continue
        name = alert.labels.get("alertname", "")
        notifications.append(
            IncidentNotification(
                fingerprint=fingerprint(alert.labels),
                starts_at=truncate_to_milliseconds(alert.activeAt),
                ends_at=None,
                status="firing",
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                generator_url="",
                group=AlertGroup(f'{{}}:{{alertname="{name}"}}', {"alertname": name}, "replay", ""),
                source="replay",
                received_at=alert.activeAt,
            )
        )
    return notifications


def parse_document(document: Any, origin: str) -> list[IncidentNotification]:
    """The notifications of one parsed JSON document, whatever its format."""
    # Replays are deterministic: "received" is when the capture says, else when it started.
    now = datetime.now(UTC)
    received: datetime | None = None
    try:
        if isinstance(document, dict) and "payload" in document and "alerts" not in document:
            if isinstance(document.get("received_at"), str):
                received = datetime.fromisoformat(document["received_at"].replace("Z", "+00:00"))
            document = document["payload"]  # a capture file
        if isinstance(document, dict) and "alerts" in document and "version" in document:
            payload = WebhookPayload.model_validate(document)
            return payload.notifications(
                source="replay", received_at=received or payload.alerts[0]["startsAt"]
            )
        if isinstance(document, dict) and document.get("status") == "success":
            return _from_prometheus(PrometheusAlertsResponse.model_validate(document), now)
        if isinstance(document, list) and document and isinstance(document[0], dict):
            if "alerts" in document[0]:  # /api/v2/alerts/groups
                notifications = []
                for group in document:
                    receiver = str((group.get("receiver") or {}).get("name", "replay"))
                    alerts = _GETTABLE.validate_python(group.get("alerts", []))
                    notifications.extend(_from_gettable(alerts, receiver, now))
                return notifications
            return _from_gettable(_GETTABLE.validate_python(document), "replay", now)
        if isinstance(document, list) and not document:
            return []
    except ValidationError as exc:
        problems = "; ".join(describe_validation_error(exc)[:5])
        raise ReplayInputError(f"{origin}: not a valid alert document: {problems}") from None
    raise ReplayInputError(
        f"{origin}: not an Alertmanager webhook payload, capture file, Alertmanager API dump "
        "or Prometheus /api/v1/alerts answer"
    )


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())
    if not path.exists():
        raise ReplayInputError(f"{path}: no such file or directory")
    return [path]


def read_batches(paths: list[Path], skipped: list[str] | None = None) -> list[Batch]:
    """Every batch in ``paths`` (files and directories), in order. Files inside a directory
    that hold no alerts are appended to ``skipped`` (with the reason) instead of failing."""
    batches: list[Batch] = []
    for root in paths:
        for file in _files(root):
            try:
                batches.extend(_read_file(file))
            except ReplayInputError as exc:
                if not root.is_dir() or skipped is None:
                    raise
                skipped.append(str(exc))
    return batches


def _read_file(file: Path) -> list[Batch]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayInputError(f"{file}: cannot read: {exc}") from None
    if file.suffix != ".jsonl":
        return [Batch(str(file), parse_document(_json(text, str(file)), str(file)))]
    batches = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            origin = f"{file}:{number}"
            batches.append(Batch(origin, parse_document(_json(line, origin), origin)))
    return batches


def _json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ReplayInputError(f"{origin}: invalid JSON: {exc}") from None
