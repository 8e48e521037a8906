"""The HTTP client every remote sink owns: one aiohttp session, retried by ``RetryPolicy``.

``SinkHttpClient`` is an async context manager: entering opens the session (with the sink's
credentials as default headers), leaving closes it. Each ``request`` is retried as a whole by
the policy (``retry.py`` holds the rules) and returns the answer once it is a 2xx that the
caller's ``check`` accepts; otherwise it raises ``RetryableError`` or ``PermanentError`` whose
message names the operation and the host, never the URL or a header.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from mcp_sentinel import __version__
from mcp_sentinel.errors import PermanentError
from mcp_sentinel.sinks.retry import RetryPolicy, error_for_status, transport_error

USER_AGENT = f"mcp-sentinel/{__version__}"


def host_of(url: str) -> str:
    """The host (and port) of ``url``: all a log line or an error may say about where."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return "<invalid URL>"
    return netloc.rpartition("@")[2] or "<no host>"  # drop any user:password@


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A response read whole: status, lower-cased headers, body bytes, and the safe ``what``
    of the request it answers."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    what: str = "the server"

    def json(self) -> Any:
        """The body as JSON; ``PermanentError`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise PermanentError(f"{self.what}: answer (HTTP {self.status}) is not JSON") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


Headers = Mapping[str, str]


class SinkHttpClient:
    """One session for one sink. ``default_headers`` (credentials included) go on every request."""

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        timeout_seconds: float,
        default_headers: Headers | None = None,
    ) -> None:
        self._policy = policy
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._default_headers = {"User-Agent": USER_AGENT, **(default_headers or {})}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SinkHttpClient:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, headers=self._default_headers, raise_for_status=False
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        json_body: Any = None,
        body: bytes | None = None,
        headers: Headers | Callable[[], Headers] | None = None,
        params: Mapping[str, str] | None = None,
        check: Callable[[HttpAnswer], None] | None = None,
        detail: Callable[[HttpAnswer], str] | None = None,
    ) -> HttpAnswer:
        """Send until a 2xx passes ``check`` (which may raise ``RetryableError`` too), within
        the policy. ``headers`` may be a callable, evaluated per attempt (a fresh signature
        timestamp). ``detail`` turns a non-2xx answer into a safe suffix for the message."""
        if self._session is None:
            raise PermanentError(f"{what}: the HTTP client is not open")
        session = self._session
        data = body
        extra: dict[str, str] = {}
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode()
            extra["Content-Type"] = "application/json; charset=utf-8"

        async def attempt() -> HttpAnswer:
            per_attempt = headers() if callable(headers) else (headers or {})
            try:
                async with session.request(
                    method, url, data=data, headers={**extra, **per_attempt}, params=params
                ) as response:
                    raw = await response.read()
                    answer = HttpAnswer(
                        response.status,
                        {k.lower(): v for k, v in response.headers.items()},
                        raw,
                        what,
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise transport_error(exc, what=what) from None
            error = error_for_status(
                answer.status,
                answer.headers,
                what=what,
                detail=detail(answer) if detail is not None and answer.status >= 300 else "",
            )
            if error is not None:
                raise error
            if check is not None:
                check(answer)
            return answer

        return await self._policy.call(attempt, what=what)
