"""A fake Slack: the Web API (chat.postMessage, chat.update) and incoming webhooks, real HTTP.

Contract:

* ``async with FakeSlack(bot_token=..., webhook_path=...) as slack:`` serves on 127.0.0.1,
  port 0. ``slack.api_url`` is the Web API base (``http://127.0.0.1:PORT/api``);
  ``slack.webhook_url`` the incoming webhook (``http://127.0.0.1:PORT/services/T../B../<token>``).
* Web API answers have Slack's shape: HTTP 200 with ``{"ok": true, "channel": "<ID>",
  "ts": "<ts>", "message": {...}}`` or ``{"ok": false, "error": "<code>"}``: ``not_authed``
  without a token, ``invalid_auth`` with a wrong one, ``channel_not_found`` for chat.update with
  anything but the channel ID the post answered (as real Slack), ``message_not_found``,
  ``invalid_blocks`` beyond 50 blocks, a section text over 3,000 characters, a header over 150,
  or more than 10 fields.
* Incoming webhooks answer ``ok`` (text, 200), ``no_service`` (404) for a wrong token path,
  ``invalid_blocks`` (400) as the Web API checks.
* ``fail_next(n, status, retry_after=None, error=None)``: the next ``n`` requests answer
  ``status`` (with ``Retry-After``), or, with ``error``, HTTP 200 ``{"ok": false, "error"}``.
* Every request is recorded in ``slack.requests`` (method, path, lower-cased headers, JSON);
  ``slack.messages`` holds the channel's messages by ts, with their thread replies.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    edits: int = 0
    replies: list[Message] = field(default_factory=list)


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    error: str | None


def blocks_problem(blocks: Any) -> str | None:
    """Why Slack would refuse these blocks, or None."""
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        return "more than 50 blocks"
    for block in blocks:
        kind = block.get("type")
        if kind == "header" and len(block["text"]["text"]) > MAX_HEADER_TEXT:
            return "header text over 150"
        if kind == "section":
            if "text" in block and len(block["text"]["text"]) > MAX_SECTION_TEXT:
                return "section text over 3000"
            if len(block.get("fields", [])) > MAX_FIELDS:
                return "more than 10 fields"
            if "text" not in block and "fields" not in block:
                return "section without text or fields"
        if kind not in {"header", "section", "context", "divider", "actions"}:
            return f"unknown block type {kind}"
    return None


class FakeSlack:
    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake-bot-token",
        webhook_path: str = "/services/T0001/B0001/fakewebhooktoken",
    ) -> None:
        self.bot_token = bot_token
        self.webhook_path = webhook_path
        self.requests: list[RecordedRequest] = []
        self.messages: dict[str, Message] = {}  # ts -> top-level message
        self.webhook_posts: list[dict[str, Any]] = []
        self._failures: list[_Failure] = []
        self._ts = itertools.count(1)
        self._channel_ids: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/chat.update", self._update)
        app.router.add_post("/services/{tail:.*}", self._webhook)
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
    def base_url(self) -> str:
        assert self._port is not None, "FakeSlack is not started"
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}{self.webhook_path}"

    def channel_id(self, name: str) -> str:
        """The ID this fake gives channel ``name`` (``#oncall`` -> ``C...``)."""
        if name in self._channel_ids.values():
            return name
        return self._channel_ids.setdefault(name.lstrip("#"), f"C{len(self._channel_ids) + 1:08d}")

    def fail_next(
        self,
        count: int,
        status: int = 500,
        *,
        retry_after: str | None = None,
        error: str | None = None,
    ) -> None:
        self._failures.extend(_Failure(status, retry_after, error) for _ in range(count))

    def recover(self) -> None:
        """Drop the failures still queued by ``fail_next``: Slack answers normally again."""
        self._failures.clear()

    def calls(self, method: str) -> list[RecordedRequest]:
        """Recorded Web API calls of ``method`` (``chat.update``), failures included."""
        return [r for r in self.requests if r.path == f"/api/{method}"]

    # -- handlers --------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(RecordedRequest(request.method, request.path, headers, body))
        return body

    def _injected(self) -> web.Response | None:
        if not self._failures:
            return None
        failure = self._failures.pop(0)
        if failure.error is not None:
            return web.json_response({"ok": False, "error": failure.error})
        headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
        return web.Response(status=failure.status, text="error", headers=headers)

    def _auth_error(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return "not_authed"
        if header != f"Bearer {self.bot_token}":
            return "invalid_auth"
        return None

    async def _post_message(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        injected = self._injected()
        if injected is not None:
            return injected
        error = self._auth_error(request)
        if error is None and (not isinstance(body, dict) or not body.get("channel")):
            error = "channel_not_found"
        if error is None and not (body.get("text") or body.get("blocks")):
            error = "no_text"
        if error is None and blocks_problem(body.get("blocks")):
            error = "invalid_blocks"
        if error is not None:
            return web.json_response({"ok": False, "error": error})
        channel = self.channel_id(str(body["channel"]))
        ts = f"1700000000.{next(self._ts):06d}"
        message = Message(channel, ts, body.get("text", ""), body.get("blocks") or [])
        thread_ts = body.get("thread_ts")
        if thread_ts is not None:
            parent = self.messages.get(thread_ts)
            if parent is None or parent.channel != channel:
                return web.json_response({"ok": False, "error": "thread_not_found"})
            message.thread_ts = thread_ts
            parent.replies.append(message)
        else:
            self.messages[ts] = message
        return web.json_response(
            {"ok": True, "channel": channel, "ts": ts, "message": {"text": message.text}}
        )

    async def _update(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        injected = self._injected()
        if injected is not None:
            return injected
        error = self._auth_error(request)
        if error is not None:
            return web.json_response({"ok": False, "error": error})
        message = self.messages.get(str(body.get("ts")))
        if message is None:
            return web.json_response({"ok": False, "error": "message_not_found"})
        if body.get("channel") != message.channel:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if blocks_problem(body.get("blocks")):
            return web.json_response({"ok": False, "error": "invalid_blocks"})
        message.text = body.get("text", message.text)
        message.blocks = body.get("blocks") or message.blocks
        message.edits += 1
        return web.json_response(
            {"ok": True, "channel": message.channel, "ts": message.ts, "text": message.text}
        )

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        injected = self._injected()
        if injected is not None:
            return injected
        if request.path != self.webhook_path:
            return web.Response(status=404, text="no_service")
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return web.Response(status=400, text="no_text")
        if blocks_problem(body.get("blocks")):
            return web.Response(status=400, text="invalid_blocks")
        self.webhook_posts.append(body)
        return web.Response(text="ok")
