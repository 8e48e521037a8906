"""A fake webhook receiver: records each POST (headers and exact body bytes), answers 200, or
a status queued with ``fail_next`` (with ``Retry-After``). Real HTTP on 127.0.0.1, port 0."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    def __init__(self, path: str = "/hooks/sentinel") -> None:
        self.path = path
        self.received: list[Received] = []
        self.attempts = 0
        self._failures: list[tuple[int, str | None]] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}{self.path}"

    def fail_next(self, count: int, status: int = 503, *, retry_after: str | None = None) -> None:
        self._failures.extend((status, retry_after) for _ in range(count))

    def recover(self) -> None:
        """Drop the failures still queued: from now on every POST is accepted."""
        self._failures.clear()

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if self._failures:
            status, retry_after = self._failures.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.Response(status=status, text="unavailable", headers=headers)
        if request.path != self.path:
            return web.Response(status=404, text="not found")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append(Received(request.path, headers, body))
        return web.Response(text="accepted")
