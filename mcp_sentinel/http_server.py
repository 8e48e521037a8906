"""The daemon's HTTP server: the webhook, ``/healthz``, ``/readyz`` and ``/metrics``.

``HttpServer`` is an async context manager that owns the aiohttp runner: entering binds and
starts serving (over TLS when ``server.tls`` is set), ``port`` is then the bound port (useful
with port 0), leaving stops it.

Slow and idle clients (``HttpServer.from_settings``): aiohttp arms its keep-alive timer when a
connection opens and again after each answer, and closes the connection if no complete request
head (request line and headers) has arrived when it fires; ``server.keepalive_timeout_seconds``
sets it, so a client that trickles its headers (slowloris) or idles holds a connection that
long at most. The body is read by the webhook within ``server.read_timeout_seconds`` (then 408
and the connection is closed). The body's size is checked before it is read (``Content-Length``
against ``max_body_bytes``) and while it is read (``client_max_size``).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from aiohttp import web
from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mcp_sentinel.config import ServerSettings, TlsSettings
from mcp_sentinel.errors import PermanentError
from mcp_sentinel.watchers.webhook import AlertmanagerWebhook

# Aiohttp reads the rest of an unread body for this long before closing; capped so a client
# that stalls after its answer does not hold the connection for aiohttp's default 10 s.
_MAX_LINGER_SECONDS = 2.0


def build_app(
    *,
    webhook: AlertmanagerWebhook,
    registry: CollectorRegistry,
    is_ready: Callable[[], bool],
    max_body_bytes: int,
    not_ready_reason: Callable[[], str | None] | None = None,
) -> web.Application:
    """The aiohttp application with every route of the daemon. ``not_ready_reason`` (optional)
    says why ``/readyz`` answers 503, in its body."""
    app = web.Application(client_max_size=max_body_bytes)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if is_ready():
            return web.json_response({"status": "ready"})
        body: dict[str, str] = {"status": "not ready"}
        reason = not_ready_reason() if not_ready_reason is not None else None
        if reason:
            body["reason"] = reason
        return web.json_response(body, status=503)

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    webhook.register(app)
    return app


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; False for anything reachable from
    elsewhere (``0.0.0.0``, ``::``, a name, an interface address)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_context(tls: TlsSettings, resolve: Callable[[Path], Path]) -> ssl.SSLContext:
    """A server context for the certificate chain and key; ``PermanentError`` naming the files
    when they cannot be loaded."""
    cert, key = resolve(tls.cert_file), resolve(tls.key_file)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise PermanentError(f"server.tls: cannot load {cert} and {key}: {reason}") from None
    return context


class HttpServer:
    """Serves ``app`` on ``host:port`` while the context is open."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_timeout: float = 15.0,
        linger_seconds: float = _MAX_LINGER_SECONDS,
    ) -> None:
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=keepalive_timeout,
            lingering_time=linger_seconds,
        )
        self._host = host
        self._requested_port = port
        self._ssl_context = ssl_context
        self.port = port

    @classmethod
    def from_settings(
        cls,
        app: web.Application,
        server: ServerSettings,
        *,
        resolve: Callable[[Path], Path] = Path.resolve,
    ) -> HttpServer:
        """A server as ``server`` says: host, port, TLS, timeouts. ``resolve`` makes the TLS
        paths absolute (against the config file's directory). Warns when it listens beyond
        loopback without authentication."""
        if server.auth.type == "none" and not is_loopback(server.host):
            logger.warning(
                "server.host is {host} and server.auth is none: anyone who can reach port "
                "{port} can submit alerts; set server.auth to bearer or basic",
                host=server.host,
                port=server.port,
            )
        return cls(
            app,
            server.host,
            server.port,
            ssl_context=None if server.tls is None else tls_context(server.tls, resolve),
            keepalive_timeout=server.keepalive_timeout_seconds,
            linger_seconds=min(_MAX_LINGER_SECONDS, server.read_timeout_seconds),
        )

    async def __aenter__(self) -> HttpServer:
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._host, self._requested_port, ssl_context=self._ssl_context
        )
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        logger.info("listening on {url}", url=self.url)
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
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}"
