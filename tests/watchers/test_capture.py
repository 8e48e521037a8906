"""Capture of accepted webhook requests: one file per accepted request, the exact payload, no
credentials, nothing for a refused one. Through real HTTP and a real dispatcher."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from mcp_sentinel.http_server import HttpServer, build_app
from mcp_sentinel.settings_base import BearerAuth
from mcp_sentinel.watchers.auth import RequestAuthenticator
from mcp_sentinel.watchers.capture import capture_document, capture_name, safe_headers
from mcp_sentinel.watchers.webhook import WEBHOOK_PATH, AlertmanagerWebhook
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING, TOKEN, audit_records, wait_for, write_config
from tests.watchers.alert_api import RecordingHandler, dispatching, fresh_metrics
from tests.watchers.conftest import LogLines

NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}\.json$")
SENT_HEADERS = {
    **AUTH,
    "User-Agent": "Alertmanager/0.25.0",
    "Content-Type": "application/json",
    "Cookie": "session=abc123",
    "X-Api-Key": "key-5150",
    "X-Scope-OrgID": "tenant-1",
}


@asynccontextmanager
async def receiver(
    capture_dir: Path | None, *, queue_size: int = 100
) -> AsyncIterator[tuple[aiohttp.ClientSession, RecordingHandler]]:
    """The webhook on a real HTTP server on port 0, in front of a real dispatcher."""
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with dispatching(handler, metrics, queue_size=queue_size) as dispatcher:
        webhook = AlertmanagerWebhook(
            intake=dispatcher,
            authenticator=RequestAuthenticator(BearerAuth(type="bearer", token=TOKEN)),
            metrics=metrics,
            max_body_bytes=1 << 20,
            retry_after_seconds=1,
            capture_dir=capture_dir,
        )
        app = build_app(
            webhook=webhook,
            registry=metrics.registry,
            is_ready=lambda: True,
            max_body_bytes=1 << 20,
        )
        async with (
            HttpServer(app, "127.0.0.1", 0) as server,
            aiohttp.ClientSession(base_url=server.url) as http,
        ):
            yield http, handler


async def post(http: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> int:
    async with http.post(WEBHOOK_PATH, data=body, headers=headers) as response:
        return response.status


def captured(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


async def test_each_accepted_request_is_one_file_with_the_exact_payload(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    directory = tmp_path / "captures"
    body = fixture_bytes("webhook_firing_group_3_alerts")
    before = datetime.now(UTC)
    async with receiver(directory) as (http, _):
        assert await post(http, body, SENT_HEADERS) == 200
        assert await post(http, body, SENT_HEADERS) == 200  # a duplicate is accepted too
    files = captured(directory)
    assert len(files) == 2
    for path in files:
        assert NAME.match(path.name), path.name
        raw = path.read_bytes()
        assert body in raw  # byte for byte
        document = json.loads(raw)
        assert set(document) == {"received_at", "headers", "payload"}
        assert document["payload"] == json.loads(body)
        assert datetime.fromisoformat(document["received_at"]) >= before.replace(microsecond=0)
        headers = document["headers"]
        assert headers["User-Agent"] == "Alertmanager/0.25.0"
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Scope-OrgID"] == "tenant-1"
        assert {"Authorization", "Cookie", "X-Api-Key"}.isdisjoint(headers)
        for secret in (TOKEN, "abc123", "key-5150"):
            assert secret.encode() not in raw


async def test_refused_requests_are_not_captured(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    directory = tmp_path / "captures"
    body = fixture_bytes("webhook_firing_single_alert")
    async with receiver(directory, queue_size=1) as (http, handler):
        assert await post(http, body, {"Authorization": "Bearer wrong"}) == 401
        assert await post(http, b'{"version": "4"}', AUTH) == 400
        handler.gate.clear()  # hold the first incident so the queue (size 1) fills up
        assert await post(http, body, AUTH) == 200
        await wait_for(lambda: len(handler.taken) == 1, what="the worker to take it")
        group = fixture_bytes("webhook_firing_group_3_alerts")
        assert await post(http, group, AUTH) == 503
        handler.gate.set()
    files = captured(directory)
    assert len(files) == 1
    assert json.loads(files[0].read_bytes())["payload"] == json.loads(body)


async def test_a_failed_write_is_logged_and_the_request_still_succeeds(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes], logs: LogLines
) -> None:
    not_a_directory = tmp_path / "captures"
    not_a_directory.write_text("a file where the directory should be")
    async with receiver(not_a_directory) as (http, handler):
        assert await post(http, fixture_bytes("webhook_firing_single_alert"), AUTH) == 200
        await wait_for(lambda: len(handler.handled) == 1, what="the incident")
    (error,) = logs.matching("could not write the capture file")
    assert error.startswith("ERROR") and str(not_a_directory) in error


async def test_the_daemon_captures_into_server_capture_dir(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    """``server.capture_dir`` (what ``sentinel run --capture`` sets), relative to the config."""
    body = fixture_bytes("webhook_firing_single_alert")
    async with FakeOpenAI([FinalJSON(FINDING)]) as model:
        settings = write_config(
            tmp_path, model_url=model.base_url, overrides={"server": {"capture_dir": "captures"}}
        )
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            assert await post(http, body, SENT_HEADERS) == 200
            audit = settings.resolve(settings.sinks.audit.path)
            await wait_for(lambda: len(audit_records(audit)) == 1, what="the audit record")
    (path,) = captured(tmp_path / "captures")
    assert body in path.read_bytes()
    assert "Authorization" not in json.loads(path.read_bytes())["headers"]


def test_header_filter_and_name() -> None:
    kept = safe_headers(
        [
            ("Host", "127.0.0.1:9095"),
            ("authorization", "Bearer x"),
            ("Proxy-Authorization", "Basic y"),
            ("X-Auth-Token", "t"),
            ("X-Hub-Signature-256", "sha256=..."),
            ("X-Client-Secret", "s"),
            ("Accept-Encoding", "gzip"),
            ("Accept-Encoding", "br"),
        ]
    )
    assert kept == {"Host": "127.0.0.1:9095", "Accept-Encoding": "gzip, br"}
    moment = datetime(2026, 11, 22, 3, 33, 20, 362999, tzinfo=UTC)
    assert capture_name(moment).startswith("20261122T033320.362Z-")


def test_a_body_that_cannot_be_embedded_is_written_parsed() -> None:
    body = b'\xef\xbb\xbf{"version": "4"}'  # a byte-order mark: not embeddable as is
    moment = datetime(2026, 11, 22, 3, 33, 20, 362000, tzinfo=UTC)
    document: dict[str, Any] = json.loads(capture_document(body, {}, moment))
    assert document == {
        "received_at": "2026-11-22T03:33:20.362+00:00",
        "headers": {},
        "payload": {"version": "4"},
    }
