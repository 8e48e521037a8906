"""Slack sinks against the fake Slack: message shapes and limits, the bot's lifecycle, retries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from mcp_sentinel.errors import PermanentError
from mcp_sentinel.models import Incident, IncidentCard, IncidentNotification
from mcp_sentinel.sinks.settings import SlackSinkSettings
from mcp_sentinel.sinks.slack import SlackBotSink, SlackWebhookSink
from mcp_sentinel.sinks.slack_blocks import (
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    incident_message,
)
from tests.fakes.slack_server import FakeSlack, blocks_problem
from tests.helpers import FINDING
from tests.sinks.support import (
    CARD,
    RecordingSleep,
    cancelled_record,
    dispatching,
    firing_record,
    policy,
    resolved_record,
)

Notifications = Callable[[str], list[IncidentNotification]]


def texts(blocks: list[dict[str, Any]]) -> str:
    """Every text of a message's blocks, joined."""
    found: list[str] = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        found.extend(field["text"] for field in block.get("fields", []))
        found.extend(element["text"] for element in block.get("elements", []))
    return "\n".join(found)


def header(blocks: list[dict[str, Any]]) -> str:
    assert blocks[0]["type"] == "header"
    return str(blocks[0]["text"]["text"])


def bot_settings(slack: FakeSlack, **extra: Any) -> SlackSinkSettings:
    return SlackSinkSettings(
        bot_token=slack.bot_token, channel="#oncall", api_url=slack.api_url, **extra
    )


def test_message_has_the_finding_the_labels_and_the_links(notifications: Notifications) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    record = firing_record(alert)
    message = incident_message(alert, record.report)
    assert blocks_problem(message.blocks) is None
    assert header(message.blocks) == (
        ":red_circle: CRITICAL · ProbeAlwaysFiring on app-01.example.internal:8080"
    )
    body = texts(message.blocks)
    for expected in (
        FINDING["summary"],
        FINDING["probable_cause"],
        "confidence 80%",
        '*ops.query*: up{job="checkout"} =&gt; 0',
        "1. Check the checkout service on app-01.example.internal",
        "*service*\ncheckout",
        "*instance*\napp-01.example.internal:8080",
        "<https://runbooks.example.internal/checkout/api-down|Runbook>",
        f"<{alert.generator_url}|Source>",
        "card Checkout · model gpt-test",
    ):
        assert expected in body, expected
    silence = (
        "http://127.0.0.1:19093/#/silences/new?filter="
        "%7Balertname%3D%22ProbeAlwaysFiring%22%2Cinstance%3D%22app-01.example.internal%3A8080"
        "%22%2Cservice%3D%22checkout%22%2Cseverity%3D%22critical%22%7D"
    )
    assert f"<{silence}|Silence>" in body
    assert unquote(silence.split("filter=")[1]) == (
        '{alertname="ProbeAlwaysFiring",instance="app-01.example.internal:8080",'
        'service="checkout",severity="critical"}'
    )
    assert message.text.startswith("[FIRING] [CRITICAL] ProbeAlwaysFiring on app-01")


def test_long_content_is_cut_within_slack_limits(notifications: Notifications) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    alert = dataclasses.replace(
        alert,
        generator_url="http://127.0.0.1:19090/graph?g0.expr=" + "x" * 1900,
        annotations={**alert.annotations, "runbook_url": "https://runbooks.example/" + "r" * 1900},
        labels={**alert.labels, **{f"label_{n:02d}": "v" * 40 for n in range(30)}},
    )
    huge = {
        **FINDING,
        "summary": "S" * 9000,
        "evidence": [{"source": f"tool{n}", "detail": "d" * 2500} for n in range(400)],
        "recommended_actions": [f"action {n} " + "a" * 500 for n in range(300)],
    }
    message = incident_message(alert, firing_record(alert, huge).report)
    assert blocks_problem(message.blocks) is None
    assert len(message.blocks) == MAX_BLOCKS
    for block in message.blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT
    body = texts(message.blocks)
    assert "cut to fit Slack; the audit log has the full report" in body
    assert "more block(s) left out" in message.blocks[-3]["elements"][0]["text"]
    # The links (those that fit whole) and the run facts survive whatever was cut.
    links = message.blocks[-2]["text"]["text"]
    assert links.startswith("<http://127.0.0.1:19090/graph?g0.expr=xxx")  # kept whole
    assert "|Runbook>" not in links  # would not fit beside it: left out, not cut
    assert "|Silence>" not in links  # 34 label matchers: a URL too long to be useful
    assert message.blocks[-1]["type"] == "context"


def test_alert_and_model_text_cannot_mention_or_link(notifications: Notifications) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    alert = dataclasses.replace(
        alert, annotations={**alert.annotations, "summary": "<!channel> wake up & <http://x|y>"}
    )
    finding = {**FINDING, "summary": "<!here> see <https://evil.example|docs>"}
    body = texts(incident_message(alert, firing_record(alert, finding).report).blocks)
    assert "<!channel>" not in body and "<!here>" not in body
    assert "&lt;!here&gt; see &lt;https://evil.example|docs&gt;" in body
    analysis_failed = incident_message(alert, firing_record(alert, None).report)
    assert "&lt;!channel&gt; wake up &amp; &lt;http://x|y&gt;" in texts(analysis_failed.blocks)


async def test_webhook_posts_one_message_per_finding_and_per_resolution(
    notifications: Notifications,
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    async with FakeSlack() as slack:
        settings = SlackSinkSettings(webhook_url=slack.webhook_url)
        async with SlackWebhookSink(settings, retry=policy()) as sink:
            await sink.deliver(firing_record(alert))
            await sink.deliver(resolved_record(alert))
    first, second = slack.webhook_posts
    assert FINDING["summary"] in texts(first["blocks"])
    assert header(second["blocks"]).startswith(":white_check_mark: Resolved · CRITICAL")
    assert "*Resolved* at 2026-11-22 03:45:54 UTC after 12m 34s." in texts(second["blocks"])
    assert all(r.headers["content-type"].startswith("application/json") for r in slack.requests)


async def test_bot_lifecycle_investigating_finding_resolved(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    record = firing_record(alert)
    async with FakeSlack() as slack:
        async with (
            SlackBotSink(bot_settings(slack), retry=policy()) as sink,
            dispatching({"slack": sink}, tmp_path) as fanout,
        ):
            await fanout.started(record.incident, ["slack"])
            await fanout.deliver(record, ["slack"])
            await fanout.started(record.incident, ["slack"])  # a repeat: no second post
            await fanout.deliver(record, ["slack"])  # the same finding again: an update
            await fanout.deliver(resolved_record(alert), ["slack"])
            await fanout.deliver(resolved_record(alert), ["slack"])  # a repeat resolution
        posts, updates = slack.calls("chat.postMessage"), slack.calls("chat.update")
        assert all(r.headers["authorization"] == f"Bearer {slack.bot_token}" for r in posts)

    assert len(posts) == 2 and len(updates) == 3
    (message,) = slack.messages.values()
    assert message.channel == slack.channel_id("#oncall") and posts[0].body["channel"] == "#oncall"
    assert header(posts[0].body["blocks"]).startswith(":mag: Investigating · CRITICAL")
    assert "The agent is investigating" in texts(posts[0].body["blocks"])
    # chat.update needs the channel ID Slack answered, not the name posted to.
    assert {(u.body["channel"], u.body["ts"]) for u in updates} == {(message.channel, message.ts)}
    assert FINDING["summary"] in texts(updates[0].body["blocks"])
    assert header(message.blocks).startswith(":white_check_mark: Resolved · CRITICAL")
    assert FINDING["summary"] in texts(message.blocks)  # the finding stays on the message
    (reply,) = message.replies
    assert reply.text.startswith(":white_check_mark: Resolved at 2026-11-22 03:45:54 UTC")
    assert posts[1].body["thread_ts"] == message.ts


async def test_a_cancelled_investigation_leaves_the_update_to_the_resolution(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    async with FakeSlack() as slack:
        settings = SlackSinkSettings(webhook_url=slack.webhook_url)
        async with (
            SlackBotSink(bot_settings(slack), retry=policy()) as bot,
            SlackWebhookSink(settings, retry=policy()) as hook,
            dispatching({"bot": bot, "hook": hook}, tmp_path) as fanout,
        ):
            cancelled = cancelled_record(alert)
            await fanout.started(cancelled.incident, ["bot", "hook"])
            await fanout.deliver(cancelled, ["bot", "hook"])
            await fanout.deliver(resolved_record(alert), ["bot", "hook"])
    (message,) = slack.messages.values()
    assert message.edits == 1 and len(message.replies) == 1
    assert header(message.blocks).startswith(":white_check_mark: Resolved")
    (only,) = slack.webhook_posts
    assert header(only["blocks"]).startswith(":white_check_mark: Resolved")


async def test_bot_without_investigating_message_posts_the_finding(
    tmp_path: Path, notifications: Notifications
) -> None:
    first, second, third = notifications("webhook_firing_group_3_alerts")
    labelled = dataclasses.replace(second, labels={**second.labels, "slack_channel": "#db-team"})
    payments = IncidentCard(resource="Payments", prompt="p")
    async with FakeSlack() as slack:
        settings = bot_settings(
            slack, channel_by_card={"Payments": "#payments"}, channel_label="slack_channel"
        )
        async with SlackBotSink(settings, retry=policy()) as sink:
            await sink.deliver(firing_record(first))
            await sink.deliver(firing_record(labelled, card=payments))
            await sink.deliver(firing_record(third, card=payments))
            assert sink.channel_for(Incident(first, CARD)) == "#oncall"
    channels = [r.body["channel"] for r in slack.calls("chat.postMessage")]
    assert channels == ["#oncall", "#db-team", "#payments"]
    assert slack.calls("chat.update") == []


async def test_bot_honours_retry_after_on_429(notifications: Notifications) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    sleep = RecordingSleep()
    async with FakeSlack() as slack:
        slack.fail_next(2, 429, retry_after="3")
        async with SlackBotSink(bot_settings(slack), retry=policy(sleep)) as sink:
            await sink.deliver(firing_record(alert))
    assert sleep.waits == [3.0, 3.0]
    assert len(slack.calls("chat.postMessage")) == 3 and len(slack.messages) == 1


async def test_bot_retries_transient_slack_errors_not_permanent_ones(
    notifications: Notifications,
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    async with FakeSlack() as slack, SlackBotSink(bot_settings(slack), retry=policy()) as sink:
        slack.fail_next(1, error="internal_error")
        await sink.deliver(firing_record(alert))
        assert len(slack.messages) == 1
        slack.fail_next(1, error="channel_not_found")
        other = dataclasses.replace(alert, fingerprint="0123456789abcdef")
        failure = r"chat.postMessage at 127.0.0.1:\d+: channel_not_found"
        with pytest.raises(PermanentError, match=failure):
            await sink.deliver(firing_record(other))
    assert len(slack.calls("chat.postMessage")) == 3


async def test_webhook_answers_are_reported_by_code(notifications: Notifications) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    async with FakeSlack() as slack:
        wrong = slack.webhook_url.replace("fakewebhooktoken", "revokedtoken")
        async with SlackWebhookSink(SlackSinkSettings(webhook_url=wrong), retry=policy()) as sink:
            with pytest.raises(PermanentError) as caught:
                await sink.deliver(firing_record(alert))
    assert str(caught.value) == (
        f"slack incoming webhook at {slack.base_url.removeprefix('http://')} answered HTTP 404: "
        "no_service"
    )
