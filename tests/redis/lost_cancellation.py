"""A real redis-py client that loses one cancellation on purpose, as redis-py itself does in a
known race (redis/redis-py#2028, #2551: a cancellation that arrives during a command is lost,
and the command goes on to return its reply)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as redis_asyncio
from redis.exceptions import ConnectionError as RedisConnectionError


class LosesOneCancellation(redis_asyncio.Redis):
    """After ``arm(command)``, the next call of ``command`` (``"XLEN"``, ``"EVALSHA"``) sets
    ``entered``, waits, swallows the cancellation that ends its wait, then runs the command,
    or with ``then_fail`` raises a redis ``ConnectionError`` (the race's other outcome).
    Once only, so a test of code that ignores the lost cancellation fails instead of hanging."""

    _armed_for: str | None = None
    _then_fail = False
    entered: asyncio.Event

    def arm(self, command: str, *, then_fail: bool = False) -> None:
        self.entered = asyncio.Event()
        self._armed_for = command
        self._then_fail = then_fail

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._armed_for is not None and args and args[0] == self._armed_for:
            self._armed_for = None
            self.entered.set()
            with contextlib.suppress(asyncio.CancelledError):  # lost, as in the race
                await asyncio.sleep(3600)
            if self._then_fail:
                raise RedisConnectionError("connection lost while cancelled")
        return await super().execute_command(*args, **options)
