"""Slack sinks: an incoming webhook, or the Web API with a bot token.

``SlackWebhookSink`` (``webhook_url``): one message per finding and one per resolution; the
webhook decides the channel. The URL is the credential: only its host is ever logged.

``SlackBotSink`` (``bot_token`` + ``channel``) keeps one message per incident
(fingerprint, startsAt) and edits it through the incident's life:

1. ``investigation_started``: ``chat.postMessage`` an "investigating" message;
2. the finding: ``chat.update`` of that message (or a new post if there was none);
3. the resolution: ``chat.update`` to "resolved", plus a reply in the message's thread.

A repeat or a re-notification of the same incident updates the message rather than posting
again; a second resolution does nothing. The messages are remembered in a ``SlackThreadStore``
(``slack_threads``): in memory by default (after a restart a finding gets a new message), in
Redis with the ``redis`` backend (every replica, and a restarted one, edits the same message).
The channel comes
from the alert's ``channel_label`` label, else ``channel_by_card``, else ``channel``.

Both sinks skip ``cancelled`` reports: the alert resolved mid-investigation, and the
resolution record that follows updates (or posts) the message.

Slack answers Web API errors as HTTP 200 with ``{"ok": false, "error": "<code>"}``; transient
codes are retried like a 5xx, the others fail at once. Rate limits (HTTP 429 with
``Retry-After``) are retried after the wait Slack asks for (``retry.py``). Each sink owns one
``SinkHttpClient``; both classes are async context managers that open and close it.
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

from mcp_sentinel.errors import PermanentError, RetryableError
from mcp_sentinel.models import Incident, Outcome
from mcp_sentinel.sinks import render
from mcp_sentinel.sinks.base import IncidentRecord
from mcp_sentinel.sinks.http import HttpAnswer, SinkHttpClient, host_of
from mcp_sentinel.sinks.retry import RetryPolicy
from mcp_sentinel.sinks.settings import SlackSinkSettings
from mcp_sentinel.sinks.slack_blocks import (
    SlackMessage,
    incident_message,
    late_finding_reply,
    resolution_reply,
)
from mcp_sentinel.sinks.slack_threads import MemorySlackThreads, SlackThread, SlackThreadStore

#: Web API error codes worth retrying (the others are configuration or request problems).
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
_ERROR_CODE = re.compile(r"[a-z0-9_]{1,64}")


def _error_code(text: str) -> str:
    """A Slack error code if ``text`` is one, else ''; anything else is not echoed."""
    code = text.strip()
    return code if _ERROR_CODE.fullmatch(code) else ""


def _message_for(record: IncidentRecord) -> SlackMessage:
    notification = record.incident.notification
    if record.report.outcome is Outcome.RESOLVED:
        return incident_message(notification, None, resolution=notification)
    return incident_message(notification, record.report)


class SlackWebhookSink:
    """Posts each record to an incoming webhook."""

    name = "slack"

    def __init__(self, settings: SlackSinkSettings, *, retry: RetryPolicy) -> None:
        assert settings.webhook_url is not None
        self._url = settings.webhook_url.get_secret_value().strip()
        self._what = f"slack incoming webhook at {host_of(self._url)}"
        self._http = SinkHttpClient(policy=retry, timeout_seconds=settings.timeout_seconds)

    async def __aenter__(self) -> SlackWebhookSink:
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
            return
        await self._http.request(
            "POST",
            self._url,
            what=self._what,
            json_body=_message_for(record).payload(),
            # Incoming webhooks answer errors as text: `invalid_token`, `no_service`, ...
            detail=lambda answer: _error_code(answer.text),
        )


class SlackBotSink:
    """The Web API sink with the investigating -> finding -> resolved lifecycle. Implements
    ``LifecycleSink``. Its deliveries must not run concurrently (the dispatcher runs one
    delivery task per sink)."""

    name = "slack"

    def __init__(
        self,
        settings: SlackSinkSettings,
        *,
        retry: RetryPolicy,
        threads: SlackThreadStore | None = None,
    ) -> None:
        """``threads`` remembers the messages (default: in memory, this process only)."""
        assert settings.bot_token is not None and settings.channel is not None
        self._api_url = settings.api_url
        self._host = host_of(settings.api_url)
        self._channel = settings.channel
        self._channel_by_card = dict(settings.channel_by_card)
        self._channel_label = settings.channel_label
        self._threads = threads if threads is not None else MemorySlackThreads()
        token = settings.bot_token.get_secret_value().strip()
        self._http = SinkHttpClient(
            policy=retry,
            timeout_seconds=settings.timeout_seconds,
            default_headers={"Authorization": f"Bearer {token}"},
        )

    async def __aenter__(self) -> SlackBotSink:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, traceback)

    def channel_for(self, incident: Incident) -> str:
        if self._channel_label:
            chosen = incident.notification.labels.get(self._channel_label, "").strip()
            if chosen:
                return chosen
        return self._channel_by_card.get(incident.card.resource) or self._channel

    async def investigation_started(self, incident: Incident) -> None:
        notification = incident.notification
        if notification.status == "resolved" or await self._threads.get(notification.key):
            return  # a repeat of an incident that already has its message
        channel, ts = await self._post(
            self.channel_for(incident), incident_message(notification, None)
        )
        await self._threads.put(SlackThread(channel, ts, notification, None))

    async def deliver(self, record: IncidentRecord) -> None:
        if render.superseded(record.report):
            return
        notification = record.incident.notification
        thread = await self._threads.get(notification.key)
        if record.report.outcome is Outcome.RESOLVED:
            await self._resolve(record, thread)
        elif thread is None:
            message = incident_message(notification, record.report)
            channel, ts = await self._post(self.channel_for(record.incident), message)
            await self._threads.put(SlackThread(channel, ts, notification, record.report))
        elif thread.resolved:
            if record.report.finding is not None:  # late: keep the resolved message as it is
                await self._post(
                    thread.channel, late_finding_reply(record.report), thread_ts=thread.ts
                )
        else:
            await self._update(thread, incident_message(thread.notification, record.report))
            thread.report = record.report
            await self._threads.put(thread)

    async def _resolve(self, record: IncidentRecord, thread: SlackThread | None) -> None:
        resolution = record.incident.notification
        if thread is None:
            message = incident_message(resolution, None, resolution=resolution)
            channel, ts = await self._post(self.channel_for(record.incident), message)
            await self._threads.put(SlackThread(channel, ts, resolution, None, resolved=True))
            return
        if thread.resolved:
            return
        message = incident_message(thread.notification, thread.report, resolution=resolution)
        await self._update(thread, message)
        await self._post(thread.channel, resolution_reply(resolution), thread_ts=thread.ts)
        thread.resolved = True  # only now: a failed reply is redelivered whole
        await self._threads.put(thread)

    async def _post(
        self, channel: str, message: SlackMessage, *, thread_ts: str | None = None
    ) -> tuple[str, str]:
        payload: dict[str, Any] = {
            "channel": channel,
            **message.payload(),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread_ts is not None:
            payload["thread_ts"] = thread_ts
        answer = await self._call("chat.postMessage", payload)
        return str(answer["channel"]), str(answer["ts"])

    async def _update(self, thread: SlackThread, message: SlackMessage) -> None:
        await self._call(
            "chat.update", {"channel": thread.channel, "ts": thread.ts, **message.payload()}
        )

    async def _call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        what = f"slack {method} at {self._host}"

        def check(answer: HttpAnswer) -> None:
            data = answer.json()
            if not isinstance(data, dict):
                raise PermanentError(f"{what}: the answer is not a JSON object")
            if data.get("ok") is True:
                return
            code = _error_code(str(data.get("error", ""))) or "unknown_error"
            if code in _TRANSIENT_ERRORS:
                raise RetryableError(f"{what}: {code}")
            raise PermanentError(f"{what}: {code}")

        answer = await self._http.request(
            "POST", f"{self._api_url}/{method}", what=what, json_body=payload, check=check
        )
        data: dict[str, Any] = answer.json()
        if not data.get("channel") and "channel" in payload:
            data["channel"] = payload["channel"]
        if not data.get("ts") and "ts" in payload:
            data["ts"] = payload["ts"]
        return data
