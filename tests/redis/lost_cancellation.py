"""A real redis-py client that loses one cancellation on purpose, as redis-py itself does in a
known race (redis/redis-py#2028, #2551: a cancellation that arrives during a command is lost,
and the command goes on to return its reply)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as redis_asyncio


class LosesOneCancellation(redis_asyncio.Redis):
    """After ``arm(command)``, the next call of ``command`` (``"XLEN"``, ``"EVALSHA"``) sets
    ``entered``, waits, swallows the cancellation that ends its wait, then runs the command.
    Once only, so a test of code that ignores the lost cancellation fails instead of hanging."""

    _armed_for: str | None = None
    entered: asyncio.Event

    def arm(self, command: str) -> None:
        self.entered = asyncio.Event()
        self._armed_for = command

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._armed_for is not None and args and args[0] == self._armed_for:
            self._armed_for = None
            self.entered.set()
            with contextlib.suppress(asyncio.CancelledError):  # lost, as in the race
                await asyncio.sleep(3600)
        return await super().execute_command(*args, **options)
