"""Seams between the watchers and the dispatcher."""

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

    async def dispatch(self, notifications: Sequence[IncidentNotification]) -> DispatchResult: ...
