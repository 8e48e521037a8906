"""HTTP bits the pollers share: the client session, credentials, one JSON GET, and backoff.

Each poller owns one ``aiohttp.ClientSession`` from ``open_session`` for the life of its
``run()`` and closes it on the way out. ``get_json`` turns every way a poll can fail (connection,
timeout, HTTP status, a body that is not JSON) into ``PollError`` with a message that is safe to
log: it names the URL and the status, never a credential.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Mapping
from typing import Any, TypeVar

import aiohttp
from pydantic import TypeAdapter, ValidationError

from mcp_sentinel import __version__
from mcp_sentinel.settings_base import BasicAuth, BearerAuth
from mcp_sentinel.watchers.settings import PollerAuth
from mcp_sentinel.watchers.webhook import describe_validation_error

_MAX_BODY_SHOWN = 200


class PollError(Exception):
    """One poll failed; the message says why and never carries a secret."""


def auth_headers(auth: PollerAuth) -> dict[str, str]:
    """The ``Authorization`` header for ``auth`` (none for ``type: none``)."""
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
    if isinstance(auth, BasicAuth):
        # UTF-8, as RFC 7617's charset="UTF-8"; Go servers compare the decoded bytes.
        pair = f"{auth.username}:{auth.password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    return {}


def open_session(auth: PollerAuth, timeout_seconds: float) -> aiohttp.ClientSession:
    """A session sending the credentials on every request; the caller closes it."""
    return aiohttp.ClientSession(
        headers={
            "Accept": "application/json",
            "User-Agent": f"mcp-sentinel/{__version__}",
            **auth_headers(auth),
        },
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        # Proxies from the environment would see the credentials; pollers talk to the
        # configured URL directly.
        trust_env=False,
    )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_BODY_SHOWN else flat[:_MAX_BODY_SHOWN] + "..."


async def get_json(
    session: aiohttp.ClientSession, url: str, params: Mapping[str, str] | None = None
) -> Any:
    """GET ``url`` and return the parsed JSON body; ``PollError`` for anything else."""
    try:
        async with session.get(url, params=params, allow_redirects=False) as response:
            text = await response.text(errors="replace")
            if response.status != 200:
                raise PollError(f"GET {url} answered HTTP {response.status}: {_excerpt(text)}")
    except TimeoutError:
        raise PollError(f"GET {url} timed out") from None
    except aiohttp.ClientError as exc:
        raise PollError(f"GET {url} failed: {type(exc).__name__}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PollError(
            f"GET {url} answered a body that is not JSON ({exc}): {_excerpt(text)}"
        ) from None


class Backoff:
    """Delays after consecutive failures: ``initial * 2**(n-1)`` capped at ``cap``, then
    "equal jitter" (a uniform draw between half the delay and the whole of it), so pollers of
    many replicas do not retry in step. ``reset()`` after a success."""

    def __init__(self, initial: float, cap: float, *, rng: random.Random | None = None) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("need 0 < initial <= cap")
        self._initial = initial
        self._cap = cap
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure; the delay before the next attempt."""
        self.failures += 1
        # min() before the power would overflow: 2**1100 is a float overflow.
        exponent = min(self.failures - 1, 62)
        delay = min(self._cap, self._initial * 2.0**exponent)
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def reset(self) -> None:
        self.failures = 0


_Answer = TypeVar("_Answer")
_MAX_PROBLEMS_SHOWN = 5


def validate_answer(adapter: TypeAdapter[_Answer], body: object, where: str, what: str) -> _Answer:
    """``body`` validated as ``what``; ``PollError`` naming the bad fields otherwise."""
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise PollError(
            f"{where} answered something that is not {what}: "
            + "; ".join(problems[:_MAX_PROBLEMS_SHOWN])
        ) from None
