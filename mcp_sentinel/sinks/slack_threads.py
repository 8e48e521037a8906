"""Where the Slack bot sink remembers each incident's message.

``SlackThread`` is one incident's message: the channel and ``ts`` Slack answered (what
``chat.update`` needs), the firing notification and the report it shows, and whether it shows
the resolution. ``SlackThreadStore`` is the seam: ``MemorySlackThreads`` (one process, the
newest ``max_tracked`` incidents) or ``redis_sink_state.RedisSlackThreads`` (shared by every
replica, so the replica that handles a resolution updates the message another one posted).

A thread is keyed by the incident, ``(fingerprint, startsAt)``. ``thread_to_json`` and
``thread_from_json`` are exact inverses; the latter raises ``ValueError`` for anything else.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mcp_sentinel.dispatcher.codec import notification_from_json, notification_to_json
from mcp_sentinel.models import IncidentNotification, IncidentReport

ThreadKey = tuple[str, datetime]


@dataclass(slots=True)
class SlackThread:
    """The message of one incident: where it is and what it shows."""

    channel: str  # the channel ID Slack answered, which chat.update needs
    ts: str
    notification: IncidentNotification  # the firing notification
    report: IncidentReport | None
    resolved: bool = False

    @property
    def key(self) -> ThreadKey:
        return self.notification.key


class SlackThreadStore(Protocol):
    """Remembers incidents' messages. ``put`` after every change: a store may hold copies."""

    async def get(self, key: ThreadKey) -> SlackThread | None: ...

    async def put(self, thread: SlackThread) -> None: ...


class MemorySlackThreads:
    """Implements ``SlackThreadStore`` in memory: the newest ``max_tracked`` incidents."""

    def __init__(self, max_tracked: int = 5000) -> None:
        self._max_tracked = max_tracked
        self._threads: OrderedDict[ThreadKey, SlackThread] = OrderedDict()

    async def get(self, key: ThreadKey) -> SlackThread | None:
        return self._threads.get(key)

    async def put(self, thread: SlackThread) -> None:
        self._threads[thread.key] = thread
        self._threads.move_to_end(thread.key)
        while len(self._threads) > self._max_tracked:
            self._threads.popitem(last=False)


def thread_to_json(thread: SlackThread) -> str:
    return json.dumps(
        {
            "channel": thread.channel,
            "ts": thread.ts,
            "notification": notification_to_json(thread.notification),
            "report": thread.report.model_dump_json() if thread.report is not None else None,
            "resolved": thread.resolved,
        },
        separators=(",", ":"),
    )


def thread_from_json(text: str) -> SlackThread:
    """The inverse of ``thread_to_json``; ``ValueError`` when ``text`` is not one."""
    try:
        data = json.loads(text)
        report = data["report"]
        return SlackThread(
            channel=str(data["channel"]),
            ts=str(data["ts"]),
            notification=notification_from_json(data["notification"]),
            report=IncidentReport.model_validate_json(report) if report is not None else None,
            resolved=bool(data["resolved"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a stored Slack thread ({type(exc).__name__}: {exc})") from None
