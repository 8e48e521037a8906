"""Crashes of a real ``sentinel run`` with the default SQLite backend: ``kill -9`` in the middle
of an investigation, and SIGTERM in the middle of a storm. After the restart, every alert that
was answered 200 is investigated exactly once and its finding delivered once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.durability.support import (
    DaemonProcess,
    line_count,
    state_rows,
    unfinished_fingerprints,
)
from tests.fakes.openai_server import Delay, FakeOpenAI, FinalJSON, Step
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers import AUTH, FINDING, audit_records, wait_for, write_config

WEBHOOK = "/webhook/alertmanager"


def webhook_sink_config(receiver_url: str, **dispatcher: Any) -> dict[str, Any]:
    return {
        "dispatcher": dispatcher,
        # A storm is more runs a minute than the default budget lets through.
        "validators": {"rate_limiter": {"runs_per_minute": 100_000}},
        "sinks": {
            "webhook": {"url": receiver_url},
            "retry": {"max_attempts": 2, "initial_wait_seconds": 0.05},
        },
        "incident_cards": [
            {
                "resource": "Checkout",
                "match": ['service=~"checkout|payments|toggle-svc"'],
                "prompt": "prompts/triage.md.j2",
                "sinks": ["console", "audit", "webhook"],
            }
        ],
    }


async def test_kill_9_mid_investigation_then_restart_finishes_it_once(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    held = asyncio.Event()

    def hold(_: dict[str, Any]) -> Step:
        held.set()
        return Delay(120, FinalJSON(FINDING))  # still "thinking" when the process is killed

    body = fixture_bytes("webhook_firing_single_alert")
    async with FakeOpenAI([hold, FinalJSON(FINDING)]) as model, WebhookReceiver() as receiver:
        settings = write_config(
            tmp_path, model_url=model.base_url, overrides=webhook_sink_config(receiver.url)
        )
        config, log = tmp_path / "config.yaml", tmp_path / "sentinel.log"
        audit = settings.resolve(settings.sinks.audit.path)
        database = settings.resolve(settings.dispatcher.sqlite_path)

        async with DaemonProcess(config, log) as first, aiohttp.ClientSession() as http:
            async with http.post(first.url + WEBHOOK, data=body, headers=AUTH) as response:
                assert response.status == 200, await response.text()
            await asyncio.wait_for(held.wait(), 30)
            # The webhook answered 200 after the commit: the payload is one row, kept as it
            # arrived, and the worker has claimed its incident.
            ((stored, incident_id),) = state_rows(
                database, "SELECT body, json_extract(incidents, '$.incident_id[0]') FROM payloads"
            )
            assert stored == body
            assert state_rows(database, "SELECT count(*) FROM incidents") == [(0,)]
            assert state_rows(database, "SELECT count(*) FROM dedupe") == [(0,)]
            await wait_for(
                lambda: (
                    state_rows(database, "SELECT state FROM payload_incidents") == [("claimed",)]
                ),
                what="the claimed incident",
            )
            await first.kill()
        assert audit_records(audit) == [] and receiver.received == []

        async with DaemonProcess(config, log) as second, aiohttp.ClientSession() as http:
            await wait_for(lambda: len(audit_records(audit)) == 1, what="the audit record")
            await wait_for(lambda: len(receiver.received) == 1, what="the webhook delivery")
            # The dedupe state survived the crash: Alertmanager's repeat is a duplicate.
            async with http.post(second.url + WEBHOOK, data=body, headers=AUTH) as response:
                answer = await response.json()
            assert (answer["queued"], answer["duplicate"]) == (0, 1)
            assert await second.terminate() == 0
        # Nothing left to redo or redeliver at the next start (the storm test restarts after
        # finished incidents and checks that none is investigated twice): the payload keeps
        # only its dedupe key, not its body.
        assert state_rows(database, "SELECT state, body IS NULL FROM payloads") == [("finished", 1)]
        assert state_rows(database, "SELECT count(*) FROM payload_incidents") == [(0,)]
        assert state_rows(database, "SELECT count(*) FROM outbox") == [(0,)]
        assert len(model.requests) == 2  # the one cut off, and the one that finished

    (record,) = audit_records(audit)
    assert record["incident_id"] == incident_id  # the same incident, resumed
    assert record["report"]["outcome"] == "completed"
    (delivered,) = receiver.received
    assert json.loads(delivered.body)["incident_id"] == incident_id
    assert delivered.headers["idempotency-key"] == delivered.headers["x-sentinel-delivery-id"]
    assert "queue recovered" in log.read_text()  # said so in the second start's log


async def test_kill_9_with_a_payload_queued_investigates_each_of_its_alerts_once(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    """A 3-alert payload is answered 200 and the process dies while the first of its incidents
    is investigated: after the restart all three are investigated once each, under the ids
    they were given at intake, from the body kept as it arrived."""
    held = asyncio.Event()

    def hold(_: dict[str, Any]) -> Step:
        held.set()
        return Delay(120, FinalJSON(FINDING))

    body = fixture_bytes("webhook_firing_group_3_alerts")
    async with (
        FakeOpenAI([hold] + [FinalJSON(FINDING)] * 3) as model,
        WebhookReceiver() as receiver,
    ):
        overrides = webhook_sink_config(receiver.url, worker_concurrency=1)
        settings = write_config(tmp_path, model_url=model.base_url, overrides=overrides)
        config, log = tmp_path / "config.yaml", tmp_path / "sentinel.log"
        audit = settings.resolve(settings.sinks.audit.path)
        database = settings.resolve(settings.dispatcher.sqlite_path)

        async with DaemonProcess(config, log) as first, aiohttp.ClientSession() as http:
            async with http.post(first.url + WEBHOOK, data=body, headers=AUTH) as response:
                assert response.status == 200, await response.text()
            await asyncio.wait_for(held.wait(), 30)
            ((ids,),) = state_rows(
                database, "SELECT json_extract(incidents, '$.incident_id') FROM payloads"
            )
            await first.kill()
        assert audit_records(audit) == []

        async with DaemonProcess(config, log) as second:
            await wait_for(lambda: len(audit_records(audit)) == 3, what="three audit records")
            # Delivered through the outbox, whose commit completes each incident.
            await wait_for(lambda: len(receiver.received) == 3, what="three deliveries")
            assert await second.terminate() == 0
        assert len(model.requests) == 4  # the one cut off, then each of the three once
        assert state_rows(database, "SELECT count(*) FROM outbox") == [(0,)]

    records = audit_records(audit)
    assert sorted(r["incident_id"] for r in records) == sorted(json.loads(ids))
    fingerprints = [r["notification"]["fingerprint"] for r in records]
    assert sorted(fingerprints) == sorted(a["fingerprint"] for a in json.loads(body)["alerts"])
    assert state_rows(database, "SELECT state, body FROM payloads") == [("finished", None)]


def storm_payload(template: dict[str, Any], index: int) -> bytes:
    payload = json.loads(json.dumps(template))
    alert = payload["alerts"][0]
    alert["fingerprint"] = f"storm{index:04d}"
    alert["labels"]["instance"] = f"app-{index:02d}.example.internal:8080"
    return json.dumps(payload).encode()


async def test_sigterm_during_a_storm_keeps_everything_accepted_for_the_next_start(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    template = fixture_json("webhook_firing_single_alert")
    slow = True

    def answer(_: dict[str, Any]) -> Step:
        return Delay(1.0 if slow else 0.01, FinalJSON(FINDING))

    async with FakeOpenAI([answer] * 200) as model, WebhookReceiver() as receiver:
        overrides = webhook_sink_config(
            receiver.url, queue_size=200, worker_concurrency=2, drain_timeout_seconds=0.3
        )
        settings = write_config(tmp_path, model_url=model.base_url, overrides=overrides)
        config, log = tmp_path / "config.yaml", tmp_path / "sentinel.log"
        audit = settings.resolve(settings.sinks.audit.path)
        database = settings.resolve(settings.dispatcher.sqlite_path)
        accepted: set[str] = set()
        refused = 0

        async with DaemonProcess(config, log) as daemon, aiohttp.ClientSession() as http:
            answered_enough = asyncio.Event()

            async def post(index: int) -> None:
                nonlocal refused
                try:
                    async with http.post(
                        daemon.url + WEBHOOK, data=storm_payload(template, index), headers=AUTH
                    ) as response:
                        if response.status == 200:
                            accepted.add(f"storm{index:04d}")
                        else:
                            assert response.status == 503, await response.text()
                            refused += 1
                except aiohttp.ClientConnectionError:
                    refused += 1  # the server had stopped listening: not accepted
                if len(accepted) >= 20:
                    answered_enough.set()

            async def storm() -> None:
                await asyncio.gather(*(post(index) for index in range(60)))

            async with asyncio.TaskGroup() as group:
                group.create_task(storm())
                await asyncio.wait_for(answered_enough.wait(), 30)
                assert await daemon.terminate() == 0

        finished = {r["notification"]["fingerprint"] for r in audit_records(audit)}
        kept = unfinished_fingerprints(database)
        outbox = state_rows(database, "SELECT count(*) FROM outbox")
        assert accepted <= finished | kept, "an accepted alert was neither finished nor kept"
        assert kept and not (finished & kept), (len(finished), len(kept), outbox)

        slow = False
        async with DaemonProcess(config, log) as restarted:
            await wait_for(
                lambda: line_count(audit) >= len(finished | kept),
                within=60,
                what="every accepted alert investigated",
            )
            await wait_for(
                lambda: len(receiver.received) >= len(finished | kept),
                what="every finding delivered",
            )
            assert await restarted.terminate() == 0

    fingerprints = [r["notification"]["fingerprint"] for r in audit_records(audit)]
    assert sorted(fingerprints) == sorted(set(fingerprints))  # none twice
    assert accepted | kept <= set(fingerprints)  # every one answered 200 (or kept) finished
    delivered = [json.loads(item.body)["notification"]["fingerprint"] for item in receiver.received]
    assert sorted(delivered) == sorted(fingerprints)
    assert unfinished_fingerprints(database) == set()
    assert state_rows(database, "SELECT count(*) FROM payloads WHERE state != 'finished'") == [(0,)]
    assert refused + len(accepted) == 60
