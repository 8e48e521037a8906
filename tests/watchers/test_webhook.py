"""The webhook's answers, through real HTTP against the whole daemon on port 0."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from tests.fakes.openai_server import Delay, FakeOpenAI, FinalJSON, Step
from tests.helpers import AUTH, FINDING, TOKEN, audit_records, metric_value, wait_for, write_config

WEBHOOK = "/webhook/alertmanager"


@asynccontextmanager
async def daemon(
    tmp_path: Path, script: list[Step] | None = None, **overrides: Any
) -> AsyncIterator[tuple[Sentinel, aiohttp.ClientSession, FakeOpenAI]]:
    async with FakeOpenAI(script or []) as model:
        settings = write_config(tmp_path, model_url=model.base_url, overrides=overrides)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            yield s, http, model


async def post(http: aiohttp.ClientSession, body: bytes, **headers: str) -> tuple[int, Any, Any]:
    async with http.post(WEBHOOK, data=body, headers={**AUTH, **headers}) as response:
        return response.status, await response.json(), response.headers


async def test_repeat_is_duplicate_refire_and_resolution_are_not(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    script: list[Step] = [FinalJSON(FINDING) for _ in range(3)]
    async with daemon(tmp_path, script) as (sentinel, http, _):
        repeat = fixture_bytes("webhook_firing_repeat_after_repeat_interval")
        status, first, _ = await post(http, repeat)
        assert (status, first["queued"], first["duplicate"]) == (200, 1, 0)
        status, second, _ = await post(http, repeat)  # byte-identical repeat
        assert (status, second["queued"], second["duplicate"]) == (200, 0, 1)

        resolved_payload = json.loads(fixture_bytes("webhook_resolved_single_alert"))
        firing_payload = json.loads(fixture_bytes("webhook_resolved_single_alert"))
        firing_payload["status"] = firing_payload["alerts"][0]["status"] = "firing"
        firing_payload["alerts"][0]["endsAt"] = "0001-01-01T00:00:00Z"
        status, fired, _ = await post(http, json.dumps(firing_payload).encode())
        assert (status, fired["queued"]) == (200, 1)
        audit = sentinel.settings.resolve(sentinel.settings.sinks.audit.path)
        # A resolution cancels an investigation still queued or running: let this one finish.
        await wait_for(lambda: len(audit_records(audit)) == 2, what="two investigations")
        status, resolved, _ = await post(http, json.dumps(resolved_payload).encode())
        assert (status, resolved["queued"], resolved["duplicate"]) == (200, 1, 0)
        status, refire, _ = await post(
            http, fixture_bytes("webhook_firing_refire_same_fingerprint_new_startsAt")
        )
        assert (status, refire["queued"], refire["duplicate"]) == (200, 1, 0)

        await wait_for(lambda: len(audit_records(audit)) == 4, what="four audit records")
        outcomes = sorted(r["report"]["outcome"] for r in audit_records(audit))
        assert outcomes == ["completed", "completed", "completed", "resolved"]
        async with http.get("/metrics") as r:
            metrics = await r.text()
        assert metric_value(metrics, "sentinel_alerts_dispatched_total", outcome="duplicate") == 1
        assert metric_value(metrics, "sentinel_alerts_dispatched_total", outcome="queued") == 4


async def test_full_queue_answers_503_and_takes_nothing(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    release = asyncio.Event()

    def held(_: dict[str, Any]) -> Step:
        return (
            Delay(0.05, FinalJSON(FINDING)) if release.is_set() else Delay(30, FinalJSON(FINDING))
        )

    # The held investigation never finishes: a short drain timeout ends the test at once.
    overrides = {
        "dispatcher": {
            "queue_size": 2,
            "worker_concurrency": 1,
            "retry_after_seconds": 7,
            "drain_timeout_seconds": 0.5,
        }
    }
    async with daemon(tmp_path, [held], **overrides) as (sentinel, http, _):
        dispatcher = sentinel.dispatcher
        assert dispatcher is not None
        status, _, _ = await post(http, fixture_bytes("webhook_firing_single_alert"))
        assert status == 200
        await wait_for(lambda: dispatcher.queue.in_progress() == 1, what="the worker to start")

        group = fixture_bytes("webhook_firing_group_3_alerts")
        status, body, headers = await post(http, group)
        assert status == 503
        assert headers["Retry-After"] == "7"
        assert "nothing of this payload was taken" in body["error"]
        assert dispatcher.queue.depth() == 0  # none of the three was queued
        assert dispatcher.dedupe_entries == 1  # nor remembered: the retry is new

        async with http.get("/metrics") as r:
            metrics = await r.text()
        assert metric_value(metrics, "sentinel_alerts_dispatched_total", outcome="rejected") == 3
        assert metric_value(metrics, "sentinel_webhook_requests_total", code="503") == 1
        assert metric_value(metrics, "sentinel_queue_capacity") == 2


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [(None, 401), ("Bearer wrong", 401), (f"Basic {TOKEN}", 401), (f"Bearer {TOKEN}", 200)],
)
async def test_bearer_credentials(
    tmp_path: Path,
    fixture_bytes: Callable[[str], bytes],
    authorization: str | None,
    expected: int,
) -> None:
    async with daemon(tmp_path, [FinalJSON(FINDING)]) as (_, http, _model):
        headers = {"Authorization": authorization} if authorization else {}
        body = fixture_bytes("webhook_resolved_single_alert")
        async with http.post(WEBHOOK, data=body, headers=headers) as response:
            assert response.status == expected
            if expected == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "credentials" in (await response.json())["error"]
                assert TOKEN not in await response.text()


async def test_basic_credentials(tmp_path: Path, fixture_bytes: Callable[[str], bytes]) -> None:
    auth = {"auth": {"type": "basic", "username": "am", "password": "pw-1"}}
    async with daemon(tmp_path, server=auth) as (_, http, _model):
        body = fixture_bytes("webhook_resolved_single_alert")
        for header, expected in [
            (_basic("am", "pw-1"), 200),
            (_basic("am", "pw-2"), 401),
            (_basic("xx", "pw-1"), 401),
            ("Basic !!!notbase64", 401),
        ]:
            async with http.post(WEBHOOK, data=body, headers={"Authorization": header}) as r:
                assert r.status == expected, header


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"version": "4", "alerts": [', "Invalid JSON"),
        (b"[]", "payload: Input should be an object"),
        (
            b'{"version": "4", "status": "firing", "receiver": "r", "groupKey": "k", "alerts": []}',
            "alerts: List should have at least 1 item",
        ),
        (
            b'{"version": "4", "status": "firing", "receiver": "r", "groupKey": "k",'
            b' "alerts": "x"}',
            "alerts: Input should be a valid array",
        ),
        (
            b'{"version": "3", "status": "firing", "receiver": "r", "groupKey": "k", "alerts": []}',
            "version: Input should be '4'",
        ),
    ],
)
async def test_malformed_payloads_get_400_naming_the_problem(
    tmp_path: Path, body: bytes, fragment: str
) -> None:
    async with daemon(tmp_path) as (_, http, _model):
        status, answer, _ = await post(http, body)
    assert status == 400
    assert fragment in answer["error"], answer


async def test_wrong_types_inside_an_alert_are_named(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    payload = fixture_json("webhook_firing_group_3_alerts")
    payload["alerts"][1]["labels"]["severity"] = 3
    del payload["alerts"][2]["fingerprint"]
    payload["alerts"][0]["startsAt"] = "yesterday"
    async with daemon(tmp_path) as (sentinel, http, _model):
        status, answer, _ = await post(http, json.dumps(payload).encode())
        assert sentinel.dispatcher is not None and sentinel.dispatcher.dedupe_entries == 0
    assert status == 400
    problems = answer["problems"]
    assert any(p.startswith("alerts[0].startsAt:") for p in problems), problems
    assert any(
        p.startswith("alerts[1].labels.severity: Input should be a valid string") for p in problems
    )
    assert "alerts[2].fingerprint: Field required" in problems


async def test_oversized_body_gets_413(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    big = fixture_bytes("webhook_firing_group_50_alerts")
    async with daemon(tmp_path, server={"max_body_bytes": 4096}) as (_, http, _model):
        status, answer, _ = await post(http, big)
        assert status == 413
        assert "over the limit of 4096 bytes" in answer["error"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: limited while read
            yield big

        async with http.post(WEBHOOK, data=chunks(), headers=AUTH) as response:
            assert response.status == 413


async def test_unrouted_alerts_are_counted_not_queued(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    payload = fixture_json("webhook_firing_single_alert")
    payload["alerts"][0]["labels"]["service"] = "billing"
    async with daemon(tmp_path) as (_, http, _model):
        status, answer, _ = await post(http, json.dumps(payload).encode())
        async with http.get("/metrics") as r:
            metrics = await r.text()
    assert (status, answer["unrouted"], answer["queued"]) == (200, 1, 0)
    assert metric_value(metrics, "sentinel_alerts_dispatched_total", outcome="unrouted") == 1


async def test_shutdown_drains_the_queue_and_turns_not_ready(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    script: list[Step] = [Delay(0.3, FinalJSON(FINDING)) for _ in range(3)]
    overrides = {"dispatcher": {"worker_concurrency": 1, "drain_timeout_seconds": 20}}
    async with daemon(tmp_path, script, **overrides) as (sentinel, http, model):
        async with http.get("/readyz") as r:
            assert r.status == 200
        status, body, _ = await post(http, fixture_bytes("webhook_firing_group_3_alerts"))
        assert (status, body["queued"]) == (200, 3)
        assert sentinel.dispatcher is not None
        stopping = asyncio.create_task(sentinel.dispatcher.shutdown())
        await asyncio.sleep(0.05)
        async with http.get("/readyz") as r:
            assert r.status == 503
        status, body, headers = await post(http, fixture_bytes("webhook_firing_single_alert"))
        assert status == 503 and "Retry-After" in headers
        await stopping
        audit = sentinel.settings.resolve(sentinel.settings.sinks.audit.path)
        assert len(audit_records(audit)) == 3  # all queued work finished before shutdown ended
        assert model.remaining == 0
