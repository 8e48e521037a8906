"""The Jira sink: one issue per incident fingerprint, comments for what follows.

* Cloud (``api_version: 3``): ``/rest/api/3``, descriptions and comments in ADF, Basic auth
  with email + API token; search through ``GET /rest/api/3/search/jql``.
* Server/Data Center (``api_version: 2``): ``/rest/api/2``, wiki markup, a personal access
  token as ``Authorization: Bearer``; search through ``GET /rest/api/2/search``.

For each record: find the fingerprint's issue (the local map, else a JQL search on the label
``sentinel-fp-<fingerprint>``, whose answer is added to the map). A firing record without an
issue creates one (project, issue type, summary, description, labels, priority mapped from the
``severity`` label); with an issue (a repeat after the dedupe TTL, a re-fire with a new
startsAt, a redelivery) it adds a comment. A resolution adds a comment and, when
``resolve_transition`` is set, runs the transition of that name if the issue offers it (an
issue already closed does not; that is logged, not an error). A resolution for a fingerprint
with no issue does nothing, and so does a ``cancelled`` report (the alert resolved before the
investigation ended): an issue for that would only be closed again at once.

Jira error answers are reduced to the names of the fields Jira complained about; the API
token, the PAT and Jira's free-text messages never reach an error or a log line. The sink owns
one ``SinkHttpClient`` and its ``IssueKeyStore`` (a JSON file, or Redis shared by the
replicas); it is an async context manager.
"""

from __future__ import annotations

import base64
import re
from types import TracebackType
from typing import Any

from loguru import logger

from mcp_sentinel.errors import PermanentError
from mcp_sentinel.models import IncidentNotification, Outcome
from mcp_sentinel.sinks import jira_format, render
from mcp_sentinel.sinks.base import IncidentRecord
from mcp_sentinel.sinks.http import HttpAnswer, SinkHttpClient, host_of
from mcp_sentinel.sinks.jira_issues import IssueKeyStore
from mcp_sentinel.sinks.retry import RetryPolicy
from mcp_sentinel.sinks.settings import JiraSinkSettings

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")


def fingerprint_label(fingerprint: str) -> str:
    return "sentinel-fp-" + _LABEL_UNSAFE.sub("-", fingerprint)


def _error_fields(answer: HttpAnswer) -> str:
    """``fields: priority, labels`` from Jira's ``{"errors": {...}}``; never Jira's messages."""
    try:
        data = answer.json()
    except PermanentError:
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, dict) or not errors:
        return ""
    names = sorted(name for name in errors if _FIELD_NAME.fullmatch(str(name)))
    return f"fields: {', '.join(names)}" if names else ""


class JiraSink:
    """Delivers records as Jira issues and comments. Its deliveries must not run concurrently
    (the dispatcher runs one delivery task per sink), so a fingerprint gets one issue."""

    name = "jira"

    def __init__(
        self, settings: JiraSinkSettings, *, retry: RetryPolicy, issue_map: IssueKeyStore
    ) -> None:
        self._settings = settings
        self._v3 = settings.api_version == 3
        self._api = f"{settings.base_url}/rest/api/{settings.api_version}"
        self._host = host_of(settings.base_url)
        self._map = issue_map
        if self._v3:
            assert settings.email is not None and settings.api_token is not None
            pair = f"{settings.email}:{settings.api_token.get_secret_value().strip()}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            assert settings.pat is not None
            authorization = f"Bearer {settings.pat.get_secret_value().strip()}"
        self._http = SinkHttpClient(
            policy=retry,
            timeout_seconds=settings.timeout_seconds,
            default_headers={"Authorization": authorization, "Accept": "application/json"},
        )

    @property
    def issue_map(self) -> IssueKeyStore:
        return self._map

    async def __aenter__(self) -> JiraSink:
        await self._map.load()
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, traceback)

    async def deliver(self, record: IncidentRecord) -> None:
        if render.superseded(record.report):
            return  # resolved before a finding: no issue for that, and the resolution follows
        notification = record.incident.notification
        key = await self.issue_for(notification.fingerprint)
        if record.report.outcome is Outcome.RESOLVED:
            if key is None:
                logger.info(
                    "jira: no issue for fingerprint {fingerprint}; nothing to resolve",
                    fingerprint=notification.fingerprint,
                )
                return
            await self._comment(key, jira_format.resolution_comment(notification))
            if self._settings.resolve_transition:
                await self._transition(key, self._settings.resolve_transition)
        elif key is None:
            key = await self._create(record)
            await self._map.set(notification.fingerprint, key)
            logger.info(
                "jira: created {key} for {alertname} (fingerprint {fingerprint})",
                key=key,
                alertname=notification.alertname,
                fingerprint=notification.fingerprint,
            )
        else:
            await self._comment(key, jira_format.finding_comment(notification, record.report))

    async def issue_for(self, fingerprint: str) -> str | None:
        """The fingerprint's issue key: the local map, else a JQL search (remembered)."""
        key = await self._map.lookup(fingerprint)
        if key is not None:
            return key
        key = await self._search(fingerprint)
        if key is not None:
            await self._map.set(fingerprint, key)
        return key

    async def _search(self, fingerprint: str) -> str | None:
        jql = (
            f'project = "{self._settings.project_key}" AND '
            f'labels = "{fingerprint_label(fingerprint)}" ORDER BY created ASC'
        )
        path = "search/jql" if self._v3 else "search"
        answer = await self._http.request(
            "GET",
            f"{self._api}/{path}",
            what=f"jira search at {self._host}",
            params={"jql": jql, "fields": "summary", "maxResults": "1"},
            detail=_error_fields,
        )
        data = answer.json()
        issues = data.get("issues") if isinstance(data, dict) else None
        if not issues:
            return None
        first = issues[0]
        # Any issue id or key works in /issue/{issueIdOrKey}; prefer the key people read.
        found = first.get("key") or first.get("id")
        return str(found) if found else None

    def _fields(self, record: IncidentRecord) -> dict[str, Any]:
        notification = record.incident.notification
        settings = self._settings
        parts = jira_format.description(notification, record.report)
        card_label = "sentinel-card-" + _LABEL_UNSAFE.sub("-", record.incident.card.resource)
        labels = ["sentinel", fingerprint_label(notification.fingerprint), card_label]
        labels += [label for label in settings.labels if label not in labels]
        fields: dict[str, Any] = {
            "project": {"key": settings.project_key},
            "issuetype": {"name": settings.issue_type},
            "summary": jira_format.issue_summary(notification),
            "description": jira_format.to_adf(parts) if self._v3 else jira_format.to_wiki(parts),
            "labels": labels,
        }
        priority = _priority(notification, settings.priority_map)
        if priority is not None:
            fields["priority"] = {"name": priority}
        return fields

    async def _create(self, record: IncidentRecord) -> str:
        answer = await self._http.request(
            "POST",
            f"{self._api}/issue",
            what=f"jira create issue at {self._host}",
            json_body={"fields": self._fields(record)},
            detail=_error_fields,
        )
        data = answer.json()
        key = data.get("key") if isinstance(data, dict) else None
        if not key:
            raise PermanentError(f"jira create issue at {self._host}: the answer has no key")
        return str(key)

    async def _comment(self, key: str, parts: list[jira_format.Part]) -> None:
        body = jira_format.to_adf(parts) if self._v3 else jira_format.to_wiki(parts)
        await self._http.request(
            "POST",
            f"{self._api}/issue/{key}/comment",
            what=f"jira comment on {key} at {self._host}",
            json_body={"body": body},
            detail=_error_fields,
        )

    async def _transition(self, key: str, name: str) -> None:
        what = f"jira transitions of {key} at {self._host}"
        answer = await self._http.request(
            "GET", f"{self._api}/issue/{key}/transitions", what=what, detail=_error_fields
        )
        data = answer.json()
        offered = data.get("transitions", []) if isinstance(data, dict) else []
        wanted = name.casefold()
        match = next((t for t in offered if str(t.get("name", "")).casefold() == wanted), None)
        if match is None:
            logger.warning(
                "jira: {key} offers no transition {name!r} (it offers: {offered}); left as it is",
                key=key,
                name=name,
                offered=", ".join(str(t.get("name")) for t in offered) or "none",
            )
            return
        await self._http.request(
            "POST",
            f"{self._api}/issue/{key}/transitions",
            what=what,
            json_body={"transition": {"id": str(match["id"])}},
            detail=_error_fields,
        )


def _priority(notification: IncidentNotification, priority_map: dict[str, str]) -> str | None:
    severity = notification.severity.lower()
    return priority_map.get(severity) if severity else None
