"""Sinks that are down for a while: deliveries wait in the outbox (in the state database), are
tried again with backoff, survive a restart, and go out once the sink is back."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest

from mcp_sentinel.app import Sentinel
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.models import IncidentNotification
from mcp_sentinel.sinks.deadletter import DeadLetterStore
from mcp_sentinel.sinks.delivery import SinkDispatcher
from mcp_sentinel.sinks.outbox import SqliteOutbox
from mcp_sentinel.sinks.settings import WebhookSinkSettings
from mcp_sentinel.sinks.webhook import WebhookSink, delivery_id
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from tests.durability.support import state_rows
from tests.fakes.jira_server import FakeJira
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.fakes.slack_server import FakeSlack
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers import AUTH, FINDING, audit_records, metric_value, wait_for, write_config
from tests.sinks.support import firing_record, policy

Notifications = Callable[[str], list[IncidentNotification]]


def fanout(sink: WebhookSink, outbox: SqliteOutbox, dead_letters: Path) -> SinkDispatcher:
    return SinkDispatcher(
        {"webhook": sink},
        inline=(),
        dead_letters=DeadLetterStore(dead_letters),
        metrics=SentinelMetrics(CollectorRegistry()),
        queue_size=10,
        drain_timeout=1,
        outbox=outbox,
        retry_initial=0.02,
        retry_max=0.05,
    )


async def test_a_delivery_waits_in_the_outbox_across_a_restart_and_goes_out_once(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    record = firing_record(alert)
    path, dead_letters = tmp_path / "state.db", tmp_path / "dead-letter"
    async with WebhookReceiver() as receiver:
        settings = WebhookSinkSettings.model_validate({"url": receiver.url})
        receiver.fail_next(10_000, 503)  # down until recover()
        async with (
            SqliteDatabase(path) as db,
            WebhookSink(settings, retry=policy(attempts=1)) as sink,
            fanout(sink, SqliteOutbox(db), dead_letters) as sinks,
        ):
            await sinks.deliver(record, ["webhook"])  # returns at once: it is stored
            await wait_for(lambda: receiver.attempts >= 3, what="a few attempts")
        # Shut down while the sink is still down: the delivery stays, nothing is dead-lettered.
        ((attempts, error),) = state_rows(path, "SELECT attempts, last_error FROM outbox")
        assert attempts >= 1 and "answered HTTP 503" in error
        assert not dead_letters.exists()

        receiver.recover()
        async with (
            SqliteDatabase(path) as db,
            WebhookSink(settings, retry=policy(attempts=1)) as sink,
            fanout(sink, SqliteOutbox(db), dead_letters),
        ):
            await wait_for(lambda: len(receiver.received) == 1, what="the delivery after restart")
    assert state_rows(path, "SELECT count(*) FROM outbox") == [(0,)]
    (delivered,) = receiver.received
    assert json.loads(delivered.body)["incident_id"] == record.incident.incident_id
    assert delivered.headers["idempotency-key"] == delivery_id(record)
    assert delivered.headers["x-sentinel-delivery-id"] == delivery_id(record)


async def test_slack_and_jira_down_for_a_while_get_the_finding_once_they_are_back(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    async with (
        FakeOpenAI([FinalJSON(FINDING)]) as model,
        FakeSlack() as slack,
        FakeJira(mode="cloud") as jira,
    ):
        settings = write_config(
            tmp_path,
            model_url=model.base_url,
            overrides={
                "sinks": {
                    "slack": {
                        "bot_token": slack.bot_token,
                        "channel": "#oncall",
                        "api_url": slack.api_url,
                    },
                    "jira": {
                        "base_url": jira.base_url,
                        "email": jira.email,
                        "api_token": jira.api_token,
                        "project_key": "OPS",
                    },
                    "retry": {"max_attempts": 2, "initial_wait_seconds": 0.01},
                    "dead_letter_dir": "dead-letter",
                },
                "incident_cards": [
                    {
                        "resource": "Checkout",
                        "match": ['service=~"checkout|payments|toggle-svc"'],
                        "prompt": "prompts/triage.md.j2",
                        "sinks": ["console", "audit", "slack", "jira"],
                    }
                ],
            },
        )
        audit = settings.resolve(settings.sinks.audit.path)
        database = settings.resolve(settings.dispatcher.sqlite_path)
        # Each delivery round is two attempts: these outlast the first round of each sink.
        slack.fail_next(4, 503)
        jira.fail_next(4, 502)
        registry = CollectorRegistry()
        async with (
            Sentinel(settings, registry=registry, console_stream=io.StringIO()) as sentinel,
            aiohttp.ClientSession(base_url=sentinel.url) as http,
        ):
            body = fixture_bytes("webhook_firing_single_alert")
            async with http.post("/webhook/alertmanager", data=body, headers=AUTH) as r:
                assert r.status == 200
            await wait_for(lambda: len(audit_records(audit)) == 1, what="the audit record")
            await wait_for(
                lambda: (
                    state_rows(database, "SELECT count(*) FROM outbox WHERE attempts > 0") != [(0,)]
                ),
                what="a failed delivery kept in the outbox",
            )
            await wait_for(
                lambda: len(jira.issues) == 1 and len(slack.messages) == 1,
                what="the finding in Slack and Jira after they recovered",
            )
            await wait_for(
                lambda: state_rows(database, "SELECT count(*) FROM outbox") == [(0,)],
                what="the outbox to empty",
            )
    metrics = generate_latest(registry).decode()
    for sink in ("slack", "jira"):
        assert metric_value(metrics, "sentinel_sink_deliveries_total", sink=sink, outcome="retry")
        assert (
            metric_value(metrics, "sentinel_sink_deliveries_total", sink=sink, outcome="delivered")
            == 1
        )
    assert not (tmp_path / "dead-letter").exists()
    (message,) = slack.messages.values()
    assert "ProbeAlwaysFiring" in json.dumps(message.blocks)
