"""The whole daemon to people: real Alertmanager payloads POSTed to the webhook, the fake model,
and the finding, the resolution and a re-fire arriving at the fake Slack and the fake Jira.

The handler does not call ``started()`` yet, so Slack gets no "investigating" message here:
the finding is a new post, the resolution updates it in place and replies in its thread
(the investigating -> update path is tested at the sink level in test_slack.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest

from mcp_sentinel.app import Sentinel
from tests.fakes.jira_server import FakeJira, adf_problem
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.fakes.slack_server import FakeSlack, blocks_problem
from tests.helpers import AUTH, FINDING, audit_records, metric_value, wait_for, write_config


def as_firing(resolved_payload: dict[str, Any]) -> bytes:
    """The firing notification that came before a captured resolved one."""
    payload = json.loads(json.dumps(resolved_payload))
    payload["status"] = payload["alerts"][0]["status"] = "firing"
    payload["alerts"][0]["endsAt"] = "0001-01-01T00:00:00Z"
    return json.dumps(payload).encode()


def header(blocks: list[dict[str, Any]]) -> str:
    return str(blocks[0]["text"]["text"])


async def test_findings_and_resolution_reach_slack_and_jira(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes], fixture_json: Callable[[str], Any]
) -> None:
    resolved_body = fixture_bytes("webhook_resolved_single_alert")
    firing_body = as_firing(fixture_json("webhook_resolved_single_alert"))
    refire_body = fixture_bytes("webhook_firing_refire_same_fingerprint_new_startsAt")
    async with (
        FakeOpenAI([FinalJSON(FINDING), FinalJSON(FINDING)]) as model,
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
                        "issue_type": "Incident",
                        "resolve_transition": "Done",
                    },
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
        registry = CollectorRegistry()
        async with (
            Sentinel(settings, registry=registry, console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):

            async def post(body: bytes) -> None:
                async with http.post("/webhook/alertmanager", data=body, headers=AUTH) as r:
                    assert r.status == 200, await r.text()

            await post(firing_body)
            # "Investigating" is posted first; wait for the finding itself (the audit record).
            await wait_for(
                lambda: (
                    len(audit_records(audit)) == 1
                    and len(jira.issues) == 1
                    and all(m.edits == 1 for m in slack.messages.values())
                ),
                what="the finding",
            )
            await post(resolved_body)
            await wait_for(
                lambda: (
                    jira.issues["OPS-1"].status == "Done"
                    and any(m.replies for m in slack.messages.values())
                ),
                what="the resolution",
            )
            await post(refire_body)
            await wait_for(
                lambda: (
                    len(audit_records(audit)) == 3
                    and len(slack.messages) == 2
                    and len(jira.issues["OPS-1"].comments) == 2
                ),
                what="the re-fire",
            )

    metrics = generate_latest(registry).decode()  # after the sinks drained on exit

    # Slack: one message per incident, posted as "investigating", updated in place with the
    # finding, and (the first) again on resolution.
    first, second = slack.messages.values()
    assert first.channel == second.channel == slack.channel_id("#oncall")
    assert header(first.blocks) == (
        ":white_check_mark: Resolved · CRITICAL · ProbeToggle on toggle-01:9100"
    )
    assert first.edits == 2 and blocks_problem(first.blocks) is None
    assert FINDING["summary"] in json.dumps(first.blocks)  # the finding stays on it
    (reply,) = first.replies
    assert reply.text == ":white_check_mark: Resolved at 2026-11-22 03:30:55 UTC after 16s."
    assert header(second.blocks) == ":red_circle: CRITICAL · ProbeToggle on toggle-01:9100"
    assert second.edits == 1
    assert len(slack.calls("chat.postMessage")) == 3  # investigating, thread reply, re-fire

    # Jira: one issue for the fingerprint; the resolution and the re-fire are comments.
    (issue,) = jira.issues.values()
    assert "sentinel-fp-380a61fdbfb74d43" in issue.labels
    assert issue.fields["priority"] == {"name": "Highest"}
    assert adf_problem(issue.fields["description"]) is None
    resolution, refire = (json.dumps(comment) for comment in issue.comments)
    assert "Resolved" in resolution and "Fired again" in refire

    assert [r["report"]["outcome"] for r in audit_records(audit)] == [
        "completed",
        "resolved",
        "completed",
    ]
    for sink in ("slack", "jira"):
        assert (
            metric_value(metrics, "sentinel_sink_deliveries_total", sink=sink, outcome="delivered")
            == 3
        )
    assert not (tmp_path / "dead-letter").exists()
