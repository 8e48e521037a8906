"""The sink dispatcher: sinks apart from the workers and from each other, bounded queues,
draining, dead letters, and ``redeliver`` (as a function and as ``sentinel sinks redeliver``)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from mcp_sentinel.models import Incident, IncidentNotification
from mcp_sentinel.sinks.base import IncidentRecord
from mcp_sentinel.sinks.deadletter import DeadLetterStore
from mcp_sentinel.sinks.redeliver import redeliver
from mcp_sentinel.sinks.settings import SinksSettings
from mcp_sentinel.sinks.webhook import WebhookSink
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers import jsonl_records, metric_value, wait_for, write_config
from tests.sinks.support import dispatching, firing_record, policy

Notifications = Callable[[str], list[IncidentNotification]]


class GatedSink:
    """A sink that holds each delivery until ``gate`` opens (a stand-in for a slow SaaS)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gate = asyncio.Event()
        self.busy = asyncio.Event()
        self.delivered: list[IncidentRecord] = []

    async def deliver(self, record: IncidentRecord) -> None:
        self.busy.set()
        await self.gate.wait()
        self.delivered.append(record)


class LifecycleRecorder:
    """A sink with ``investigation_started``: records the order of what it was told."""

    name = "lifecycle"

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def investigation_started(self, incident: Incident) -> None:
        self.events.append(("started", incident.incident_id))

    async def deliver(self, record: IncidentRecord) -> None:
        self.events.append(("deliver", record.incident.incident_id))


class PlainRecorder:
    name = "plain"

    def __init__(self) -> None:
        self.delivered: list[IncidentRecord] = []

    async def deliver(self, record: IncidentRecord) -> None:
        self.delivered.append(record)


def dead_letters(directory: Path, sink: str) -> list[dict[str, Any]]:
    return jsonl_records(directory / f"{sink}.jsonl")


async def test_a_slow_sink_holds_back_neither_the_worker_nor_other_sinks(
    tmp_path: Path, notifications: Notifications
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    slow, fast = GatedSink("slow"), PlainRecorder()
    async with dispatching({"slow": slow, "plain": fast}, tmp_path / "dl") as fanout:
        for alert in alerts:
            await fanout.deliver(firing_record(alert), ["slow", "plain"])  # returns at once
        await wait_for(lambda: len(fast.delivered) == 3, what="the fast sink's deliveries")
        assert slow.delivered == [] and fanout.pending("slow") == 3
        slow.gate.set()
    assert [r.incident.notification for r in slow.delivered] == alerts  # in order, drained


async def test_a_full_queue_goes_to_the_dead_letters_without_blocking(
    tmp_path: Path, notifications: Notifications
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    slow = GatedSink("slow")
    registry = CollectorRegistry()
    async with dispatching(
        {"slow": slow}, tmp_path / "dl", queue_size=1, registry=registry
    ) as fanout:
        await fanout.deliver(firing_record(alerts[0]), ["slow"])
        await slow.busy.wait()  # the first is in flight; the queue is empty again
        await fanout.deliver(firing_record(alerts[1]), ["slow"])  # queued
        await fanout.deliver(firing_record(alerts[2]), ["slow"])  # full: dead letter
        (entry,) = dead_letters(tmp_path / "dl", "slow")
        assert entry["error"] == "sink slow: delivery queue full (1)"
        assert entry["record"]["notification"]["fingerprint"] == alerts[2].fingerprint
        slow.gate.set()
    assert len(slow.delivered) == 2
    metrics = generate_latest(registry).decode()
    assert (
        metric_value(metrics, "sentinel_sink_deliveries_total", sink="slow", outcome="queue_full")
        == 1
    )
    assert (
        metric_value(metrics, "sentinel_sink_deliveries_total", sink="slow", outcome="delivered")
        == 2
    )
    assert metric_value(metrics, "sentinel_sink_dead_letters_total", sink="slow") == 1


async def test_shutdown_dead_letters_what_the_drain_could_not_deliver(
    tmp_path: Path, notifications: Notifications
) -> None:
    first, second, _ = notifications("webhook_firing_group_3_alerts")
    stuck = GatedSink("stuck")  # never released
    async with dispatching({"stuck": stuck}, tmp_path / "dl", drain_timeout=0) as fanout:
        await fanout.deliver(firing_record(first), ["stuck"])
        await stuck.busy.wait()
        await fanout.deliver(firing_record(second), ["stuck"])
    entries = dead_letters(tmp_path / "dl", "stuck")
    fingerprints = [entry["record"]["notification"]["fingerprint"] for entry in entries]
    assert fingerprints == [first.fingerprint, second.fingerprint]  # in flight, then queued
    assert {entry["error"] for entry in entries} == {"sink stuck: not delivered before shutdown"}


async def test_started_reaches_lifecycle_sinks_before_the_report(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    lifecycle, plain = LifecycleRecorder(), PlainRecorder()
    record = firing_record(alert)
    async with dispatching({"lifecycle": lifecycle, "plain": plain}, tmp_path) as fanout:
        await fanout.started(record.incident, ["lifecycle", "plain", "unknown"])
        await fanout.deliver(record, ["lifecycle", "plain"])
    incident_id = record.incident.incident_id
    assert lifecycle.events == [("started", incident_id), ("deliver", incident_id)]
    assert len(plain.delivered) == 1


def sinks_settings(tmp_path: Path, url: str, **retry: Any) -> SinksSettings:
    return SinksSettings.model_validate(
        {
            "console": {"enabled": False},
            "audit": {"enabled": False},
            "webhook": {"url": url, "hmac_secret": "s3cr3t-hmac"},
            "dead_letter_dir": str(tmp_path / "dl"),
            "retry": {"max_attempts": 2, "initial_wait_seconds": 0.01, **retry},
        }
    )


async def test_failures_become_dead_letters_and_redeliver_sends_them(
    tmp_path: Path, notifications: Notifications
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    records = [firing_record(alert) for alert in alerts]
    async with WebhookReceiver() as receiver:
        settings = sinks_settings(tmp_path, receiver.url)
        assert settings.webhook is not None
        receiver.fail_next(6, 502)  # two attempts for each of the three
        async with (
            WebhookSink(settings.webhook, retry=policy(attempts=2)) as sink,
            dispatching({"webhook": sink}, tmp_path / "dl") as fanout,
        ):
            for record in records:
                await fanout.deliver(record, ["webhook"])
        entries = dead_letters(tmp_path / "dl", "webhook")
        assert [e["record"]["incident_id"] for e in entries] == [
            r.incident.incident_id for r in records
        ]
        host = receiver.url.split("/")[2]
        assert entries[0]["error"] == (
            f"webhook at {host} answered HTTP 502 (gave up after 2 attempt(s))"
        )

        receiver.fail_next(2, 503)  # the first entry fails again; the others go through
        (result,) = await redeliver(settings, resolve=lambda path: path)
        assert (result.sink, result.delivered, result.failed, result.remaining) == (
            "webhook",
            2,
            1,
            1,
        )
        (left,) = dead_letters(tmp_path / "dl", "webhook")
        assert left["id"] == entries[0]["id"] and left["attempts"] == 2
        assert left["error"].endswith("answered HTTP 503 (gave up after 2 attempt(s))")

        (result,) = await redeliver(settings, resolve=lambda path: path, sink_names=["webhook"])
        assert (result.delivered, result.failed, result.remaining) == (1, 0, 0)
    assert dead_letters(tmp_path / "dl", "webhook") == []
    delivered = [json.loads(item.body) for item in receiver.received]
    assert sorted(body["incident_id"] for body in delivered) == sorted(
        r.incident.incident_id for r in records
    )
    # A redelivered record is the record: notification and report as first sent.
    original = records[1].as_dict()
    again = next(b for b in delivered if b["incident_id"] == original["incident_id"])
    assert again["notification"] == original["notification"]
    assert again["report"] == original["report"]


async def test_entries_appended_during_a_redelivery_are_kept(
    tmp_path: Path, notifications: Notifications
) -> None:
    first, second, _ = notifications("webhook_firing_group_3_alerts")
    store = DeadLetterStore(tmp_path / "dl")
    await store.append("jira", firing_record(first), "jira answered HTTP 503")
    (claimed,) = store.read("jira")
    await store.append("jira", firing_record(second), "jira answered HTTP 503")  # meanwhile
    remaining = await store.finish("jira", {claimed.id}, {})
    assert remaining == 1
    (kept,) = store.read("jira")
    assert kept.record().incident.notification == second
    assert (tmp_path / "dl" / "jira.jsonl").stat().st_mode & 0o777 == 0o600


async def test_the_redeliver_command(tmp_path: Path, notifications: Notifications) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    async with WebhookReceiver() as receiver:
        settings = write_config(
            tmp_path,
            overrides={
                "sinks": {
                    "webhook": {"url": receiver.url, "hmac_secret": "s3cr3t-hmac"},
                    "dead_letter_dir": "dl",
                }
            },
        )
        store = DeadLetterStore(tmp_path / "dl")
        await store.append("webhook", firing_record(alert), "webhook answered HTTP 503")
        config = str(tmp_path / "config.yaml")

        async def sentinel(*args: str) -> tuple[int, str, str]:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mcp_sentinel",
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},
            )
            out, err = await process.communicate()
            assert process.returncode is not None
            return process.returncode, out.decode(), err.decode()

        code, out, err = await sentinel("sinks", "redeliver", "--config", config, "--sink", "slack")
        assert code == 1 and "--sink: 'slack' is not a configured and enabled sink" in err
        code, out, err = await sentinel("sinks", "redeliver", "--config", config)
        assert code == 0, err
        assert (
            out
            == f"webhook: 1 redelivered, 0 still failing; 0 left in {tmp_path}/dl/webhook.jsonl\n"
        )
        code, out, _ = await sentinel("sinks", "redeliver", "--config", config)
        assert (code, out) == (0, f"no dead letters in {tmp_path / 'dl'}\n")
    assert settings.sinks.webhook is not None
    (received,) = receiver.received
    assert json.loads(received.body)["notification"]["fingerprint"] == alert.fingerprint
