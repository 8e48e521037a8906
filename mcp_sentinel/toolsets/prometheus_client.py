"""A small read-only client for the Prometheus HTTP API (``/api/v1``) over aiohttp.

``PrometheusClient`` is an async context manager owning one ``aiohttp.ClientSession``: enter it
on the event loop that will use it, leave it to close the session. Every method returns the
API's ``data`` with its ``warnings``, or raises ``PrometheusError`` whose message is fit to show
a model as is: Prometheus's own ``errorType``/``error`` for a rejected request, "not reachable"
for a refused connection, "did not answer within" for a timeout. Messages name the URL without
any user-info part and never carry a credential.

Credentials come from files (``PrometheusAuth.from_files``) so that they stay out of argv.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp


class PrometheusError(Exception):
    """A request Prometheus refused or could not answer; ``str()`` is the readable message."""


@dataclass(frozen=True, slots=True)
class PrometheusAuth:
    """A bearer token or basic auth for Prometheus (never both). Secrets stay out of repr."""

    bearer_token: str | None = field(default=None, repr=False)
    basic_user: str | None = None
    basic_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_files(
        cls,
        *,
        bearer_token_file: Path | None = None,
        basic_auth_user: str | None = None,
        basic_auth_password_file: Path | None = None,
    ) -> PrometheusAuth | None:
        """Credentials read from files (trailing whitespace stripped), or None for none.

        Raises ``ValueError`` for a bearer token together with basic auth, a user without a
        password file or the reverse, a user containing ``:``, or an empty or unreadable file.
        """
        if bearer_token_file is not None and (basic_auth_user or basic_auth_password_file):
            raise ValueError("use either a bearer token or basic auth, not both")
        if (basic_auth_user is None) != (basic_auth_password_file is None):
            raise ValueError("basic auth needs both a user and a password file")
        if basic_auth_user is not None and ":" in basic_auth_user:
            raise ValueError("a basic auth user cannot contain ':'")
        if bearer_token_file is not None:
            return cls(bearer_token=_read_secret(bearer_token_file, "bearer token"))
        if basic_auth_user is not None and basic_auth_password_file is not None:
            password = _read_secret(basic_auth_password_file, "basic auth password")
            return cls(basic_user=basic_auth_user, basic_password=password)
        return None

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header these credentials make (empty for none)."""
        if self.bearer_token is not None:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        if self.basic_user is not None:
            pair = f"{self.basic_user}:{self.basic_password or ''}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
        return {}


@dataclass(frozen=True, slots=True)
class ApiResult:
    """The ``data`` of a successful answer and the ``warnings`` Prometheus attached to it."""

    data: Any
    warnings: tuple[str, ...] = ()


def display_url(url: str) -> str:
    """``url`` without user-info, query or fragment: safe to put in a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class PrometheusClient:
    """Read-only calls to one Prometheus; see the module docstring for the error contract."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 15.0,
        auth: PrometheusAuth | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL must start with http:// or https://: {base_url!r}")
        self._base = base_url.rstrip("/")
        self.url = display_url(base_url)
        self.timeout_seconds = timeout_seconds
        self._headers = {"Accept": "application/json", **(auth.headers() if auth else {})}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PrometheusClient:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_seconds), headers=self._headers
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

    # -- the API ------------------------------------------------------------------------

    async def query(self, promql: str, time: float | None = None) -> ApiResult:
        params = [("query", promql), ("timeout", self._eval_timeout())]
        if time is not None:
            params.append(("time", _seconds(time)))
        return await self.get("query", params)

    async def query_range(self, promql: str, start: float, end: float, step: float) -> ApiResult:
        params = [
            ("query", promql),
            ("start", _seconds(start)),
            ("end", _seconds(end)),
            ("step", _seconds(step)),
            ("timeout", self._eval_timeout()),
        ]
        return await self.get("query_range", params)

    async def alerts(self) -> ApiResult:
        return await self.get("alerts")

    async def rules(self, rule_type: str | None = None) -> ApiResult:
        return await self.get("rules", [("type", rule_type)] if rule_type else [])

    async def targets(self) -> ApiResult:
        return await self.get("targets", [("state", "active")])

    async def label_names(self, match: Sequence[str] = ()) -> ApiResult:
        return await self.get("labels", [("match[]", selector) for selector in match])

    async def label_values(self, label: str, match: Sequence[str] = ()) -> ApiResult:
        path = f"label/{quote(label, safe='')}/values"
        return await self.get(path, [("match[]", selector) for selector in match])

    async def metadata(self, metric: str) -> ApiResult:
        return await self.get("metadata", [("metric", metric)])

    # -- the transport ------------------------------------------------------------------

    async def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> ApiResult:
        """``GET /api/v1/<path>``: the answer's data, or ``PrometheusError``."""
        if self._session is None:
            raise RuntimeError("PrometheusClient used outside `async with`")
        url = f"{self._base}/api/v1/{path}"
        try:
            async with self._session.get(url, params=list(params)) as response:
                status, reason = response.status, response.reason or ""
                body = await response.read()
        except aiohttp.ClientConnectorError as exc:
            reason_text = exc.os_error.strerror or str(exc.os_error)
            raise PrometheusError(
                f"Prometheus at {self.url} is not reachable ({reason_text})"
            ) from None
        except TimeoutError:
            raise PrometheusError(
                f"Prometheus at {self.url} did not answer within {self.timeout_seconds:g}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(
                f"request to Prometheus at {self.url} failed: {type(exc).__name__}: {exc}"
            ) from None
        return self._parse(path, status, reason, body)

    def _parse(self, path: str, status: int, reason: str, body: bytes) -> ApiResult:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise PrometheusError(self._non_api_answer(path, status, reason, body))
        warnings = tuple(str(w) for w in document.get("warnings") or ())
        if document.get("status") == "success" and status < 400:
            return ApiResult(document.get("data"), warnings)
        error_type = document.get("errorType") or f"HTTP {status}"
        error = document.get("error") or reason or "no message"
        raise PrometheusError(f"Prometheus rejected the request ({error_type}): {error}")

    def _non_api_answer(self, path: str, status: int, reason: str, body: bytes) -> str:
        if status in (401, 403):
            return (
                f"Prometheus at {self.url} refused the credentials: HTTP {status} {reason} "
                "(check --bearer-token-file or the basic auth options)"
            )
        snippet = " ".join(body[:200].decode("utf-8", "replace").split())
        return (
            f"Prometheus at {self.url} answered /api/v1/{path} with HTTP {status} {reason} "
            f"and no API response (is the URL the Prometheus base URL?): {snippet}"
        )

    def _eval_timeout(self) -> str:
        # Prometheus stops evaluating after this, so a query we gave up on does not keep
        # running there; durations take whole units, so milliseconds.
        return f"{max(int(self.timeout_seconds * 1000), 1)}ms"


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not value:
        raise ValueError(f"the {what} file {path} is empty")
    return value
