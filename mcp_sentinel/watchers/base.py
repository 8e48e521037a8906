"""Seams between the watchers and the dispatcher.

``Intake`` is what watchers hand notifications to (the dispatcher, in the daemon). ``Watcher``
is a poller: ``WatcherSet`` runs each one's ``run()`` on its own task for the daemon's life.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mcp_sentinel.dispatcher.dispatcher import DispatchResult
from mcp_sentinel.models import IncidentNotification


class Intake(Protocol):
    """Where watchers hand notifications: the dispatcher, in the daemon."""

    @property
    def accepting(self) -> bool:
        """False while starting up or shutting down: watchers answer 503 / pause then."""
        ...

    @property
    def problem(self) -> str | None:
        """Why intake is refused while ``accepting`` is False for a reason other than
        starting or stopping (a full disk, an unwritable audit log); None otherwise."""
        ...

    async def dispatch(
        self, notifications: Sequence[IncidentNotification], *, body: bytes | None = None
    ) -> DispatchResult:
        """``body``: the webhook payload the notifications were parsed from, as it arrived
        (``notifications[i]`` from its ``alerts[i]``); None from any other source."""
        ...


class Watcher(Protocol):
    """Something that finds alerts by itself and hands them to an ``Intake``.

    ``run()`` works until it is cancelled and never returns or raises otherwise: a failure
    (an unreachable server, a garbage answer) is logged and retried, not raised. Whatever the
    watcher opens (an HTTP session) is opened inside ``run()`` and closed when it ends.
    """

    @property
    def name(self) -> str:
        """A short name for logs and task names: ``prometheus``, ``alertmanager``."""
        ...

    async def run(self) -> None: ...
