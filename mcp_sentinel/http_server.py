"""The daemon's HTTP server: the webhook, ``/healthz``, ``/readyz`` and ``/metrics``.

``HttpServer`` is an async context manager that owns the aiohttp runner: entering binds and
starts serving, ``port`` is then the bound port (useful with port 0), leaving stops it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from aiohttp import web
from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mcp_sentinel.watchers.webhook import AlertmanagerWebhook


def build_app(
    *,
    webhook: AlertmanagerWebhook,
    registry: CollectorRegistry,
    is_ready: Callable[[], bool],
    max_body_bytes: int,
) -> web.Application:
    """The aiohttp application with every route of the daemon."""
    app = web.Application(client_max_size=max_body_bytes)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if is_ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    webhook.register(app)
    return app


class HttpServer:
    """Serves ``app`` on ``host:port`` while the context is open."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._host = host
        self._requested_port = port
        self.port = port

    async def __aenter__(self) -> HttpServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._requested_port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        logger.info("listening on http://{host}:{port}", host=self._host, port=self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"
