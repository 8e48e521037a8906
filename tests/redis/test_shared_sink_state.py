"""The sinks' state shared in Redis by the replicas: the outbox under leases (a dead replica's
undelivered findings go out from another one), the Slack messages and the Jira issue keys (a
resolution handled by another replica edits the same message and closes the same issue)."""

from __future__ import annotations

import asyncio
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
from mcp_sentinel.config import SentinelSettings, load_settings
from mcp_sentinel.dispatcher.redis_connection import RedisConnection
from mcp_sentinel.models import IncidentNotification
from mcp_sentinel.sinks.redis_sink_state import RedisOutbox
from tests.durability.support import DaemonProcess
from tests.fakes.jira_server import FakeJira
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.fakes.slack_server import FakeSlack
from tests.helpers import AUTH, FINDING, audit_records, wait_for, write_config
from tests.redis.lost_cancellation import LosesOneCancellation
from tests.redis.server import RedisServer
from tests.sinks.support import firing_record

WEBHOOK = "/webhook/alertmanager"
Notifications = Callable[[str], list[IncidentNotification]]


@asynccontextmanager
async def connection(server: RedisServer) -> AsyncIterator[RedisConnection]:
    conn = RedisConnection(server.url, key_prefix="test-outbox")
    try:
        yield conn
    finally:
        await conn.aclose()


async def test_a_dead_replicas_deliveries_are_taken_over_once_their_lease_runs_out(
    redis_server: RedisServer, notifications: Notifications
) -> None:
    record = firing_record(notifications("webhook_firing_single_alert")[0])
    async with connection(redis_server) as conn_a, connection(redis_server) as conn_b:
        # Never entered: it renews nothing, as a replica killed right after storing.
        dead = RedisOutbox(conn_a, lease_seconds=0.5)
        added = await dead.add(record, ["slack", "jira"])
        assert sorted(added) == ["jira", "slack"]
        assert await dead.add(record, ["slack"]) == {}  # the same delivery is stored once
        async with RedisOutbox(conn_b, lease_seconds=0.5) as alive:
            assert await alive.pending() == []  # the leases still run
            await asyncio.sleep(0.8)
            taken = {entry.sink: entry for entry in await alive.pending()}
            assert sorted(taken) == ["jira", "slack"]
            assert taken["slack"].record().incident.incident_id == record.incident.incident_id
            assert taken["slack"].record().report == record.report
            await asyncio.sleep(0.8)  # its own lease is renewed meanwhile
            assert await alive.pending() == []
            alive.note_failure(taken["jira"].id, "jira answered 503")
            alive.acknowledge(taken["slack"].id)
        # Leaving handed the jira lease back: a third replica has it at once.
        async with RedisOutbox(conn_a, lease_seconds=60) as third:
            (left,) = await third.pending()
            assert (left.sink, left.id, left.attempts) == ("jira", taken["jira"].id, 1)
            third.acknowledge(left.id)
        # Acknowledged deliveries are gone, their keys too: storing again is a new delivery.
        async with RedisOutbox(conn_b, lease_seconds=0.1) as fourth:
            await asyncio.sleep(0.3)
            assert await fourth.pending() == []
            assert sorted(await fourth.add(record, ["slack"])) == ["slack"]


def replica(tmp_path: Path, name: str, model_url: str, redis_url: str, **extra: Any) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    dispatcher = extra.pop("dispatcher", {})
    write_config(
        directory,
        model_url=model_url,
        overrides={
            "dispatcher": {
                "backend": "redis",
                "redis_url": redis_url,
                "redis_key_prefix": "test-sinks",
                **dispatcher,
            },
            **extra,
        },
    )
    return directory / "config.yaml"


def slack_and_jira(slack: FakeSlack, jira: FakeJira) -> dict[str, Any]:
    return {
        "sinks": {
            "slack": {"bot_token": slack.bot_token, "channel": "#oncall", "api_url": slack.api_url},
            "jira": {
                "base_url": jira.base_url,
                "email": jira.email,
                "api_token": jira.api_token,
                "project_key": "OPS",
                "issue_type": "Incident",
                "resolve_transition": "Done",
            },
            "retry": {"max_attempts": 2, "initial_wait_seconds": 0.05, "max_wait_seconds": 0.2},
        },
        "incident_cards": [
            {
                "resource": "Checkout",
                "match": ['service=~".+"'],
                "prompt": "prompts/triage.md.j2",
                "sinks": ["console", "audit", "slack", "jira"],
            }
        ],
    }


def as_firing(resolved: dict[str, Any]) -> bytes:
    payload = json.loads(json.dumps(resolved))
    payload["status"] = payload["alerts"][0]["status"] = "firing"
    payload["alerts"][0]["endsAt"] = "0001-01-01T00:00:00Z"
    return json.dumps(payload).encode()


def load(config: Path) -> SentinelSettings:
    return load_settings(config, env={})


async def post(url: str, body: bytes) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + WEBHOOK, data=body, headers=AUTH) as r,
    ):
        assert r.status == 200, await r.text()


async def test_a_resolution_on_another_replica_edits_the_message_and_closes_the_issue(
    tmp_path: Path,
    redis_server: RedisServer,
    fixture_bytes: Callable[[str], bytes],
    fixture_json: Callable[[str], Any],
) -> None:
    resolved = fixture_bytes("webhook_resolved_single_alert")
    firing = as_firing(fixture_json("webhook_resolved_single_alert"))
    # search_lag: Jira's search does not find the new issue, so only the shared map can.
    async with (
        FakeOpenAI([FinalJSON(FINDING)]) as model,
        FakeSlack() as slack,
        FakeJira(mode="cloud", search_lag=True) as jira,
    ):
        sinks = slack_and_jira(slack, jira)
        a = load(replica(tmp_path, "a", model.base_url, redis_server.url, **sinks))
        b = load(replica(tmp_path, "b", model.base_url, redis_server.url, **sinks))
        async with Sentinel(a, registry=CollectorRegistry(), console_stream=io.StringIO()) as s:
            await post(s.url, firing)
            await wait_for(
                lambda: (
                    len(jira.issues) == 1 and any(m.edits == 1 for m in slack.messages.values())
                ),
                what="the finding in Slack and Jira",
            )
        # The first replica is gone; the second one gets the resolution.
        async with Sentinel(b, registry=CollectorRegistry(), console_stream=io.StringIO()) as s:
            await post(s.url, resolved)
            await wait_for(
                lambda: (
                    jira.issues["OPS-1"].status == "Done"
                    and any(m.replies for m in slack.messages.values())
                ),
                what="the resolution in Slack and Jira",
            )
    (message,) = slack.messages.values()  # edited in place, not posted again
    assert message.edits == 2 and len(message.replies) == 1
    assert list(jira.issues) == ["OPS-1"]
    assert [r["report"]["outcome"] for r in audit_records(b.resolve(b.sinks.audit.path))] == [
        "resolved"
    ]


async def test_a_killed_replicas_undelivered_finding_goes_out_from_another(
    tmp_path: Path, redis_server: RedisServer, fixture_bytes: Callable[[str], bytes]
) -> None:
    visibility = 2.0
    async with FakeOpenAI([FinalJSON(FINDING)]) as model, FakeSlack() as slack:
        sinks = {
            "sinks": {
                "slack": {
                    "bot_token": slack.bot_token,
                    "channel": "#oncall",
                    "api_url": slack.api_url,
                },
                "retry": {"max_attempts": 1, "initial_wait_seconds": 0.05},
            },
            "incident_cards": [
                {
                    "resource": "Checkout",
                    "match": ['service=~".+"'],
                    "prompt": "prompts/triage.md.j2",
                    "sinks": ["audit", "slack"],
                }
            ],
        }
        dispatcher = {"redis_visibility_timeout_seconds": visibility}
        a = replica(tmp_path, "a", model.base_url, redis_server.url, dispatcher=dispatcher, **sinks)
        audit_a = load(a).resolve(load(a).sinks.audit.path)
        b = load(
            replica(tmp_path, "b", model.base_url, redis_server.url, dispatcher=dispatcher, **sinks)
        )
        slack.fail_next(10_000, 503)  # Slack is down: the finding waits in the outbox
        async with DaemonProcess(a, tmp_path / "a.log") as first:
            await post(first.url, fixture_bytes("webhook_firing_single_alert"))
            await wait_for(
                lambda: (
                    len(audit_records(audit_a)) == 1 and len(slack.calls("chat.postMessage")) >= 2
                ),
                what="the finding audited and Slack failing",
            )
            await first.kill()
        slack.recover()
        async with Sentinel(b, registry=CollectorRegistry(), console_stream=io.StringIO()):
            await wait_for(
                lambda: any(m.edits == 0 and m.blocks for m in slack.messages.values()),
                within=visibility * 6,
                what="the finding taken over and posted",
            )
    assert len(model.requests) == 1  # investigated once: only the delivery moved
    (message,) = slack.messages.values()
    assert FINDING["summary"] in json.dumps(message.blocks)


async def test_leaving_the_outbox_stops_its_lease_renewal_when_redis_py_loses_the_cancellation(
    redis_server: RedisServer, notifications: Notifications
) -> None:
    record = firing_record(notifications("webhook_firing_single_alert")[0])
    async with connection(redis_server) as conn:
        await conn.client.aclose()
        client = LosesOneCancellation.from_url(redis_server.url, decode_responses=True)
        conn.client = client
        outbox = RedisOutbox(conn, lease_seconds=0.3)  # renewed every 0.1 s
        await outbox.__aenter__()
        assert sorted(await outbox.add(record, ["slack"])) == ["slack"]
        client.arm("EVALSHA")
        await asyncio.wait_for(client.entered.wait(), timeout=10)  # a renewal under way
        try:
            await asyncio.wait_for(outbox.__aexit__(None, None, None), timeout=10)
        except TimeoutError:
            pytest.fail("leaving the outbox did not finish: the renewal ignored its cancellation")


async def test_a_store_whose_cancellation_redis_py_lost_as_an_error_is_cancelled_not_failed(
    redis_server: RedisServer, notifications: Notifications
) -> None:
    """The cancellation surfaces as a redis error: the store ends cancelled, as asked, and
    the connection records no Redis failure (which would refuse alerts)."""
    record = firing_record(notifications("webhook_firing_single_alert")[0])
    async with connection(redis_server) as conn:
        await conn.client.aclose()
        client = LosesOneCancellation.from_url(redis_server.url, decode_responses=True)
        conn.client = client
        outbox = RedisOutbox(conn, lease_seconds=60)
        client.arm("EVALSHA", then_fail=True)
        storing = asyncio.create_task(outbox.add(record, ["slack"]))
        await asyncio.wait_for(client.entered.wait(), timeout=10)
        storing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await storing
        assert conn.problem is None, "a lost cancellation must not read as a Redis failure"
