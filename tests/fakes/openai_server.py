"""A fake OpenAI-compatible Chat Completions server (real HTTP, real wire format).

Contract:

* ``async with FakeOpenAI(script) as fake:`` starts an aiohttp server on 127.0.0.1, port 0,
  and stops it on exit. Point a client at ``fake.base_url`` (``http://127.0.0.1:PORT/v1``).
* ``POST /v1/chat/completions`` answers non-streaming requests with the real response
  shape. ``"stream": true`` is rejected with a 400 OpenAI error body (no step consumed).
* Each request consumes the next script step, in order. A step is one of the dataclasses
  below or a callable ``(request_json) -> step`` evaluated at request time. When the script
  is exhausted the server answers 500 with ``x-should-retry: false`` so the test fails loudly.
* ``Delay`` handlers are cancelled when the client disconnects (e.g. on a client timeout)
  and ``stop()`` waits at most 0.5 s for requests still in flight.
* Every request that reaches the server is appended to ``fake.requests`` as a
  ``RecordedRequest`` (method, path, lower-cased headers, parsed JSON body).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

from aiohttp import web

__all__ = [
    "Delay",
    "FakeOpenAI",
    "FinalJSON",
    "FinalText",
    "HttpError",
    "RecordedRequest",
    "Step",
    "ToolCall",
    "ToolCalls",
    "offered_tool_names",
]


@dataclass(frozen=True)
class ToolCall:
    """The model asks for one tool call; ``arguments`` is sent as a JSON string."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None  # generated (``call_<n>``) when None


@dataclass(frozen=True)
class ToolCalls:
    """The model asks for several tool calls in one assistant message."""

    calls: list[ToolCall]


@dataclass(frozen=True)
class FinalJSON:
    """Final answer whose content is ``json.dumps(obj)``; finish_reason ``stop``."""

    obj: dict[str, Any]


@dataclass(frozen=True)
class FinalText:
    """Final answer with plain text content; finish_reason ``stop``."""

    text: str


@dataclass(frozen=True)
class HttpError:
    """Answer with ``status`` and an OpenAI error body.

    ``body`` replaces the default ``{"error": {"message", "type", "code"}}`` verbatim.
    ``retry_after`` (seconds) sets the ``Retry-After`` and ``retry-after-ms`` headers.
    """

    status: int
    body: dict[str, Any] | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` before answering with ``then``."""

    seconds: float
    then: Step


Step: TypeAlias = (
    "ToolCall | ToolCalls | FinalJSON | FinalText | HttpError | Delay"
    " | Callable[[dict[str, Any]], Step]"
)


@dataclass
class RecordedRequest:
    """One HTTP request as the fake received it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was not valid JSON


_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", "timeout"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """Build an OpenAI-style error body for ``status``."""
    kind, code = _ERROR_KINDS.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def offered_tool_names(request_json: dict[str, Any]) -> list[str]:
    """Names of the function tools offered in a chat.completions request body."""
    return [t["function"]["name"] for t in request_json.get("tools") or [] if "function" in t]


def _approx_tokens(value: object) -> int:
    return max(1, len(json.dumps(value, default=str)) // 4)


class FakeOpenAI:
    """Scripted Chat Completions server; use as ``async with FakeOpenAI(steps) as fake``."""

    def __init__(self, script: Iterable[Step] = ()) -> None:
        self.script: list[Step] = list(script)
        self.requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> FakeOpenAI:
        """Start listening on 127.0.0.1 with an ephemeral port."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # Cancel a (Delay-ed) handler when its client gives up, and don't let one still in
        # flight hold up stop(): tests use Delay to provoke client timeouts.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- test helpers ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Base URL for an OpenAI client, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def bodies(self) -> list[Any]:
        """Parsed JSON bodies of all recorded requests, in order."""
        return [r.body for r in self.requests]

    @property
    def remaining(self) -> int:
        """Number of script steps not yet consumed."""
        return len(self.script)

    def add(self, *steps: Step) -> None:
        """Append steps to the script (also allowed while serving)."""
        self.script.extend(steps)

    # -- handlers --------------------------------------------------------------------------

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        msg = f"Unknown route: {request.method} {request.path} (fake serves chat/completions)"
        return web.json_response(error_body(404, msg), status=404)

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(RecordedRequest(request.method, request.path, headers, body))
        return body

    async def _chat_completions(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if not isinstance(body, dict):
            msg = "Request body must be a JSON object"
            return web.json_response(error_body(400, msg), status=400)
        if body.get("stream"):
            msg = "stream=true is not supported by the fake server; use non-streaming requests"
            return web.json_response(error_body(400, msg), status=400)
        if not self.script:
            msg = f"FakeOpenAI script exhausted: unexpected request #{len(self.requests)}"
            return web.json_response(
                error_body(500, msg), status=500, headers={"x-should-retry": "false"}
            )
        return await self._answer(self.script.pop(0), body)

    async def _answer(self, step: Step, body: dict[str, Any]) -> web.Response:
        while True:
            if isinstance(step, Delay):
                await asyncio.sleep(step.seconds)
                step = step.then
            elif callable(step):
                step = step(body)
            else:
                break
        if isinstance(step, HttpError):
            headers: dict[str, str] = {}
            if step.retry_after is not None:
                headers["retry-after"] = f"{step.retry_after:g}"
                headers["retry-after-ms"] = str(int(step.retry_after * 1000))
            payload = step.body or error_body(step.status, f"Fake HTTP {step.status} error")
            return web.json_response(payload, status=step.status, headers=headers)
        return web.json_response(self._completion(step, body))

    def _completion(
        self, step: ToolCall | ToolCalls | FinalJSON | FinalText, body: dict[str, Any]
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if isinstance(step, ToolCall | ToolCalls):
            calls = step.calls if isinstance(step, ToolCalls) else [step]
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in calls
            ]
            finish_reason = "tool_calls"
        else:
            text = json.dumps(step.obj) if isinstance(step, FinalJSON) else step.text
            message["content"] = text
            finish_reason = "stop"
        prompt_tokens = _approx_tokens(body.get("messages", []))
        completion_tokens = _approx_tokens(message)
        return {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
