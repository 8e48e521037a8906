"""The ``redis`` backend against a real redis-server: an HA pair of replicas receiving the same
payload investigates it once; a long investigation keeps its claim; a replica killed with
SIGKILL mid-investigation has its incident finished by another one after the visibility
timeout; a Redis restart answers 503 while Redis is down and works again after."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis_asyncio
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from mcp_sentinel.config import SentinelSettings
from mcp_sentinel.dispatcher.redis_connection import RedisConnection, redacted_url
from mcp_sentinel.dispatcher.redis_queue import RedisQueueBackend
from mcp_sentinel.errors import ConfigError
from tests.durability.support import DaemonProcess
from tests.fakes.openai_server import Delay, FakeOpenAI, FinalJSON, Step
from tests.helpers import AUTH, FINDING, audit_records, wait_for, write_config
from tests.redis.lost_cancellation import LosesOneCancellation
from tests.redis.server import RedisServer

WEBHOOK = "/webhook/alertmanager"


def replica(
    tmp_path: Path, name: str, model_url: str, redis_url: str, **dispatcher: Any
) -> SentinelSettings:
    directory = tmp_path / name
    directory.mkdir()
    return write_config(
        directory,
        model_url=model_url,
        overrides={
            "dispatcher": {
                "backend": "redis",
                "redis_url": redis_url,
                "redis_key_prefix": "test-sentinel",
                **dispatcher,
            }
        },
    )


def started(settings: SentinelSettings) -> Sentinel:
    return Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO())


def all_records(*settings: SentinelSettings) -> list[dict[str, Any]]:
    return [r for s in settings for r in audit_records(s.resolve(s.sinks.audit.path))]


async def post(http: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    async with http.post(url + WEBHOOK, data=body, headers=AUTH) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


async def test_ha_pair_investigates_the_same_payload_once(
    tmp_path: Path, redis_server: RedisServer, fixture_bytes: Callable[[str], bytes]
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    async with FakeOpenAI([FinalJSON(FINDING)] * 3) as model:
        a = replica(tmp_path, "a", model.base_url, redis_server.url)
        b = replica(tmp_path, "b", model.base_url, redis_server.url)
        async with started(a) as first, started(b) as second, aiohttp.ClientSession() as http:
            # Alertmanager's HA pair: both replicas get the same notification, concurrently.
            (status_a, answer_a), (status_b, answer_b) = await asyncio.gather(
                post(http, first.url, body), post(http, second.url, body)
            )
            assert (status_a, status_b) == (200, 200), (answer_a, answer_b)
            await wait_for(lambda: len(all_records(a, b)) == 3, what="three audit records")
            await asyncio.sleep(1.5)  # time enough for a second investigation to show up
            # The repeat (every repeat_interval) is a duplicate on either replica.
            status, answer = await post(http, first.url, body)
            assert status == 200 and answer["duplicate"] == 3
    records = all_records(a, b)
    assert len(records) == 3 and len(model.requests) == 3
    assert len({r["incident_id"] for r in records}) == 3


async def test_a_long_investigation_keeps_its_claim(
    tmp_path: Path, redis_server: RedisServer, fixture_bytes: Callable[[str], bytes]
) -> None:
    # 4 s of "thinking" with a 1 s visibility timeout: without renewal the other replica
    # would take it over three times.
    async with FakeOpenAI([Delay(4, FinalJSON(FINDING)), FinalJSON(FINDING)]) as model:
        a = replica(
            tmp_path, "a", model.base_url, redis_server.url, redis_visibility_timeout_seconds=1
        )
        b = replica(
            tmp_path, "b", model.base_url, redis_server.url, redis_visibility_timeout_seconds=1
        )
        async with started(a) as first, started(b), aiohttp.ClientSession() as http:
            status, _ = await post(http, first.url, fixture_bytes("webhook_firing_single_alert"))
            assert status == 200
            await wait_for(lambda: len(all_records(a, b)) == 1, what="the audit record")
            await asyncio.sleep(1.5)
    assert len(all_records(a, b)) == 1 and len(model.requests) == 1


async def test_a_killed_replica_is_taken_over_after_the_visibility_timeout(
    tmp_path: Path, redis_server: RedisServer, fixture_bytes: Callable[[str], bytes]
) -> None:
    held = asyncio.Event()

    def hold(_: dict[str, Any]) -> Step:
        held.set()
        return Delay(120, FinalJSON(FINDING))  # still "thinking" when the process is killed

    # The second replica runs while the first one investigates (and must not take the
    # incident over then); once the first is killed, its claim lapses within one visibility
    # timeout of its last renewal (renewed every third of it).
    visibility = 8.0
    async with FakeOpenAI([hold, FinalJSON(FINDING)]) as model, aiohttp.ClientSession() as http:
        a = replica(
            tmp_path,
            "a",
            model.base_url,
            redis_server.url,
            redis_visibility_timeout_seconds=visibility,
        )
        b = replica(
            tmp_path,
            "b",
            model.base_url,
            redis_server.url,
            redis_visibility_timeout_seconds=visibility,
        )
        first = DaemonProcess(tmp_path / "a" / "config.yaml", tmp_path / "a.log")
        second = DaemonProcess(tmp_path / "b" / "config.yaml", tmp_path / "b.log")
        async with first:
            status, _ = await post(http, first.url, fixture_bytes("webhook_firing_single_alert"))
            assert status == 200
            await asyncio.wait_for(held.wait(), 30)  # the first replica has it
            async with second:
                await asyncio.sleep(visibility + 1)  # renewed meanwhile: not taken over
                assert len(model.requests) == 1 and all_records(a, b) == []
                await first.kill()
                killed_at = time.monotonic()
                await wait_for(lambda: len(all_records(a, b)) == 1, what="the taken-over one")
                taken_over_after = time.monotonic() - killed_at
                await asyncio.sleep(1)
        assert len(model.requests) == 2  # the one cut off, and the one that finished
    (record,) = all_records(b)
    assert record["report"]["outcome"] == "completed"
    # The claim was the dead replica's until it lapsed: at least visibility minus one renewal.
    assert visibility - visibility / 3 - 0.5 <= taken_over_after <= visibility + 5
    assert "taking over incident" in (tmp_path / "b.log").read_text()


async def test_a_redis_restart_is_survived(
    tmp_path: Path, redis_server: RedisServer, fixture_bytes: Callable[[str], bytes]
) -> None:
    async with FakeOpenAI([FinalJSON(FINDING)] * 2) as model:
        settings = replica(tmp_path, "a", model.base_url, redis_server.url)
        async with started(settings) as sentinel, aiohttp.ClientSession() as http:
            status, _ = await post(http, sentinel.url, fixture_bytes("webhook_firing_single_alert"))
            assert status == 200
            await wait_for(lambda: len(all_records(settings)) == 1, what="the first record")

            redis_server.stop()
            ready = {"status": 200}

            async def poll_ready() -> None:
                async with http.get(sentinel.url + "/readyz") as response:
                    ready["status"] = response.status

            deadline = time.monotonic() + 15
            while ready["status"] != 503 and time.monotonic() < deadline:
                await poll_ready()
                await asyncio.sleep(0.1)
            assert ready["status"] == 503
            refire = fixture_bytes("webhook_firing_refire_same_fingerprint_new_startsAt")
            status, _ = await post(http, sentinel.url, refire)
            assert status == 503  # refused, not accepted and dropped

            redis_server.start()
            deadline = time.monotonic() + 15
            while ready["status"] != 200 and time.monotonic() < deadline:
                await poll_ready()
                await asyncio.sleep(0.1)
            assert ready["status"] == 200
            status, answer = await post(http, sentinel.url, refire)
            assert status == 200 and answer["queued"] == 1
            await wait_for(lambda: len(all_records(settings)) == 2, what="the second record")


async def test_a_payload_the_queue_cannot_take_whole_leaves_nothing_behind(
    tmp_path: Path, redis_server: RedisServer, fixture_bytes: Callable[[str], bytes]
) -> None:
    settings = replica(tmp_path, "a", "http://127.0.0.1:9/v1", redis_server.url, queue_size=2)
    async with started(settings) as sentinel, aiohttp.ClientSession() as http:
        status, _ = await post(http, sentinel.url, fixture_bytes("webhook_firing_group_3_alerts"))
        assert status == 503
        client = redis_asyncio.Redis.from_url(redis_server.url)
        try:
            assert await client.keys("*dedupe*") == []
            assert await client.xlen("{test-sentinel}:incidents") == 0
        finally:
            await client.aclose()


def test_redis_settings_are_validated_and_the_password_never_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        write_config(tmp_path, overrides={"dispatcher": {"backend": "redis"}})
    with pytest.raises(ConfigError):
        write_config(
            tmp_path, overrides={"dispatcher": {"backend": "redis", "redis_url": "http://x"}}
        )
    settings = write_config(
        tmp_path,
        overrides={
            "dispatcher": {
                "backend": "redis",
                "redis_url": "rediss://h:6380/1",
                "redis_password": "hunter2-secret",
            }
        },
    )
    assert "hunter2-secret" not in repr(settings.dispatcher)
    with_url = write_config(
        tmp_path,
        overrides={
            "dispatcher": {"backend": "redis", "redis_url": "redis://:hunter2-url@h:6379/0"}
        },
    )
    assert "hunter2-url" not in repr(with_url.dispatcher)
    assert redacted_url("redis://user:hunter2@cache.internal:6379/0") == (
        "redis://cache.internal:6379/0"
    )


async def test_a_replica_stopped_mid_investigation_hands_it_over_at_once(
    tmp_path: Path, redis_server: RedisServer, fixture_bytes: Callable[[str], bytes]
) -> None:
    held = asyncio.Event()

    def hold(_: dict[str, Any]) -> Step:
        held.set()
        return Delay(120, FinalJSON(FINDING))

    async with FakeOpenAI([hold, FinalJSON(FINDING)]) as model, aiohttp.ClientSession() as http:
        # The default visibility timeout (300 s): only the release can make this quick.
        a = replica(tmp_path, "a", model.base_url, redis_server.url, drain_timeout_seconds=0.2)
        b = replica(tmp_path, "b", model.base_url, redis_server.url)
        first = started(a)
        await first.__aenter__()
        try:
            status, _ = await post(http, first.url, fixture_bytes("webhook_firing_single_alert"))
            assert status == 200
            await asyncio.wait_for(held.wait(), 30)
        finally:
            await first.__aexit__(None, None, None)  # SIGTERM's path: drain, then release
        async with started(b):
            await wait_for(lambda: len(all_records(b)) == 1, within=15, what="the handed-over one")
    assert len(model.requests) == 2 and all_records(a) == []


async def test_an_unreadable_entry_is_set_aside_and_the_queue_goes_on(
    tmp_path: Path, redis_server: RedisServer, fixture_bytes: Callable[[str], bytes]
) -> None:
    async with FakeOpenAI([FinalJSON(FINDING)]) as model, aiohttp.ClientSession() as http:
        settings = replica(tmp_path, "a", model.base_url, redis_server.url)
        client = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            await client.xgroup_create(
                "{test-sentinel}:incidents", "sentinel-workers", id="0", mkstream=True
            )
            await client.xadd(
                "{test-sentinel}:incidents", {"incident_id": "x", "notification": "{"}
            )
            async with started(settings) as sentinel:
                body = fixture_bytes("webhook_firing_single_alert")
                status, _ = await post(http, sentinel.url, body)
                assert status == 200
                await wait_for(lambda: len(all_records(settings)) == 1, what="the audit record")
            (kept,) = await client.lrange("{test-sentinel}:unreadable", 0, -1)
            assert json.loads(kept)["incident_id"] == "x"
            assert await client.xlen("{test-sentinel}:incidents") == 0
        finally:
            await client.aclose()


async def test_consumers_of_killed_replicas_are_removed_from_the_group(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    stream, group = "{test-sentinel}:incidents", "sentinel-workers"
    client = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
        # A replica that took an entry, finished it and was killed: a consumer with nothing
        # pending (Redis creates a consumer when it first hands it an entry).
        await client.xadd(stream, {"incident_id": "done", "notification": "{}"})
        ((_, [(entry_id, _)]),) = await client.xreadgroup(
            group, "gone:1:dead", {stream: ">"}, count=1
        )
        await client.xack(stream, group, entry_id)
        await client.xdel(stream, entry_id)
        assert {c["name"] for c in await client.xinfo_consumers(stream, group)} == {"gone:1:dead"}
        async with FakeOpenAI([]) as model:
            settings = replica(
                tmp_path, "a", model.base_url, redis_server.url, redis_visibility_timeout_seconds=1
            )
            async with started(settings):

                async def names() -> set[str]:
                    return {c["name"] for c in await client.xinfo_consumers(stream, group)}

                for _ in range(75):  # up to 15 s: idle > 2 s, swept every second
                    if "gone:1:dead" not in await names():
                        break
                    await asyncio.sleep(0.2)
                assert "gone:1:dead" not in await names()
    finally:
        await client.aclose()


async def test_the_queue_closes_when_redis_py_loses_the_cancellation(
    redis_server: RedisServer,
) -> None:
    """The maintenance loop ends on ``aclose`` even when redis-py swallowed the cancellation:
    seen on a busy core, where the daemon's shutdown then waited forever."""
    connection = RedisConnection(redis_server.url, key_prefix="test-lost-cancel")
    await connection.client.aclose()
    client = LosesOneCancellation.from_url(redis_server.url, decode_responses=True)
    connection.client = client
    queue = RedisQueueBackend(
        connection,
        capacity=10,
        dedupe_ttl_seconds=60,
        visibility_timeout=30,
        cards=[],
        default_card=None,
    )
    await queue.open()
    client.arm("XLEN")
    # The maintenance loop refreshes the depth (XLEN) every probe interval (1 s).
    await asyncio.wait_for(client.entered.wait(), timeout=10)
    try:
        await asyncio.wait_for(queue.aclose(), timeout=10)
    except TimeoutError:
        pytest.fail("aclose did not finish: the maintenance loop ignored its cancellation")
    assert connection.problem is None, "a lost cancellation must not read as a Redis failure"
