"""The Jira sink against the fake Jira: Cloud and Server wire formats, one issue per
fingerprint (the local map, its persistence, the JQL fallback), resolution and retries."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mcp_sentinel.errors import PermanentError
from mcp_sentinel.models import IncidentNotification
from mcp_sentinel.sinks.jira import JiraSink
from mcp_sentinel.sinks.jira_issues import JiraIssueMap
from mcp_sentinel.sinks.settings import JiraSinkSettings
from tests.fakes.jira_server import FakeJira, adf_problem
from tests.helpers import FINDING
from tests.sinks.support import (
    RecordingSleep,
    cancelled_record,
    captured_logs,
    firing_record,
    policy,
    resolved_record,
)

Notifications = Callable[[str], list[IncidentNotification]]
FP_LABEL = "sentinel-fp-8d746f6f305121f8"


def cloud_settings(jira: FakeJira, **extra: Any) -> JiraSinkSettings:
    values: dict[str, Any] = {
        "base_url": jira.base_url,
        "email": jira.email,
        "api_token": jira.api_token,
        "project_key": "OPS",
        "issue_type": "Incident",
        "resolve_transition": "Done",
        **extra,
    }
    return JiraSinkSettings(**values)


def server_settings(jira: FakeJira, **extra: Any) -> JiraSinkSettings:
    return JiraSinkSettings(
        base_url=jira.base_url, api_version=2, pat=jira.pat, project_key="OPS", **extra
    )


def adf_texts(node: Any) -> str:
    if isinstance(node, dict):
        return node.get("text", "") + "".join(adf_texts(child) for child in node.get("content", []))
    return ""


def sink(
    settings: JiraSinkSettings, map_path: Path, sleep: RecordingSleep | None = None
) -> JiraSink:
    return JiraSink(settings, retry=policy(sleep), issue_map=JiraIssueMap(map_path))


async def test_cloud_one_issue_per_fingerprint_then_comments_and_resolution(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    refire = dataclasses.replace(alert, starts_at=alert.starts_at + timedelta(hours=2))
    map_path = tmp_path / "jira-issue-map.json"
    async with FakeJira(mode="cloud", search_lag=True) as jira:
        async with sink(cloud_settings(jira), map_path) as jira_sink:
            await jira_sink.deliver(firing_record(alert))
            await jira_sink.deliver(firing_record(alert))  # a repeat after the dedupe TTL
            await jira_sink.deliver(firing_record(refire))  # a re-fire: new startsAt
            await jira_sink.deliver(resolved_record(refire))
        posts = [r for r in jira.requests if r.method == "POST"]

    (issue,) = jira.issues.values()
    assert issue.key == "OPS-1" and issue.status == "Done"
    create = posts[0]
    assert create.path == "/rest/api/3/issue"
    expected_auth = base64.b64encode(f"{jira.email}:{jira.api_token}".encode()).decode()
    assert create.headers["authorization"] == f"Basic {expected_auth}"
    fields = create.body["fields"]
    assert fields["project"] == {"key": "OPS"} and fields["issuetype"] == {"name": "Incident"}
    assert fields["priority"] == {"name": "Highest"}  # severity critical
    assert fields["labels"] == ["sentinel", FP_LABEL, "sentinel-card-Checkout"]
    assert fields["summary"] == (
        "[CRITICAL] ProbeAlwaysFiring on app-01.example.internal:8080: "
        "Checkout API down on app-01.example.internal:8080"
    )
    description = fields["description"]
    assert adf_problem(description) is None
    text = adf_texts(description)
    assert FINDING["summary"] in text and FINDING["probable_cause"] in text
    assert "Fingerprint: 8d746f6f305121f8" in text
    links = [
        mark["attrs"]["href"]
        for node in _walk(description)
        for mark in node.get("marks", [])
        if mark["type"] == "link"
    ]
    assert "https://runbooks.example.internal/checkout/api-down" in links
    assert any("/#/silences/new?filter=" in link for link in links)

    # The repeat and the re-fire were comments (the search index never saw OPS-1: the local
    # map found it); the resolution a comment and the "Done" transition.
    assert [r.path for r in posts[1:]] == [
        "/rest/api/3/issue/OPS-1/comment",
        "/rest/api/3/issue/OPS-1/comment",
        "/rest/api/3/issue/OPS-1/comment",
        "/rest/api/3/issue/OPS-1/transitions",
    ]
    assert posts[-1].body == {"transition": {"id": "31"}}
    assert all(adf_problem(comment) is None for comment in issue.comments)
    assert adf_texts(issue.comments[1]).startswith("Fired again (started 2026-11-22 05:33:20 UTC)")
    assert adf_texts(issue.comments[2]).startswith("Resolved at 2026-11-22 05:45:54 UTC after 12m")
    assert json.loads(map_path.read_text()) == {
        "version": 1,
        "issues": {"8d746f6f305121f8": "OPS-1"},
    }


def _walk(node: Any) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    return [node, *(child for c in node.get("content", []) for child in _walk(c))]


async def test_the_map_survives_a_restart_and_jql_fills_its_gaps(
    tmp_path: Path, notifications: Notifications
) -> None:
    first, second, _ = notifications("webhook_firing_group_3_alerts")
    map_path = tmp_path / "state" / "jira-issue-map.json"
    async with FakeJira(mode="cloud") as jira:
        async with sink(cloud_settings(jira), map_path) as jira_sink:
            await jira_sink.deliver(firing_record(first))
        # Another replica filed the second alert; our map does not know it.
        seeded = jira.seed_issue([f"sentinel-fp-{second.fingerprint}"])
        async with sink(cloud_settings(jira), map_path) as restarted:
            searches_before = len([r for r in jira.requests if "search" in r.path])
            await restarted.deliver(firing_record(first))  # known from the file: no search
            assert len([r for r in jira.requests if "search" in r.path]) == searches_before
            await restarted.deliver(firing_record(second))  # found by JQL: a comment
        search = [r for r in jira.requests if r.path == "/rest/api/3/search/jql"][-1]

    assert len(jira.issues) == 2  # OPS-1 created, OPS-2 seeded: nothing created twice
    assert len(jira.issues["OPS-1"].comments) == 1 and len(seeded.comments) == 1
    assert search.query["jql"] == (
        f'project = "OPS" AND labels = "sentinel-fp-{second.fingerprint}" ORDER BY created ASC'
    )
    assert json.loads(map_path.read_text())["issues"] == {
        first.fingerprint: "OPS-1",
        second.fingerprint: seeded.key,
    }


async def test_server_uses_v2_wiki_markup_and_a_bearer_pat(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    async with (
        FakeJira(mode="server") as jira,
        sink(server_settings(jira, resolve_transition="Done"), tmp_path / "m.json") as jira_sink,
    ):
        await jira_sink.deliver(firing_record(alert))
        await jira_sink.deliver(resolved_record(alert))
    create = next(r for r in jira.requests if r.path == "/rest/api/2/issue")
    assert create.headers["authorization"] == f"Bearer {jira.pat}"
    description = create.body["fields"]["description"]
    assert isinstance(description, str)
    assert "h3. Finding" in description and "h3. Recommended actions" in description
    assert 'up\\{job="checkout"\\} => 0' in description  # braces would start a macro
    assert "[Runbook|https://runbooks.example.internal/checkout/api-down]" in description
    assert "/rest/api/2/search" in jira.paths("GET")  # the first lookup missed the map
    (issue,) = jira.issues.values()
    assert issue.status == "Done" and issue.comments[0].startswith("*Resolved* at")


async def test_retries_5xx_and_429_with_its_retry_after(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    sleep = RecordingSleep()
    async with FakeJira(mode="cloud") as jira:
        jira.fail_next(1, 503)
        jira.fail_next(1, 429, retry_after="7")
        async with sink(cloud_settings(jira), tmp_path / "m.json", sleep) as jira_sink:
            await jira_sink.deliver(firing_record(alert))
    assert len(jira.issues) == 1
    assert len(sleep.waits) == 2
    assert 0.01 <= sleep.waits[0] <= 0.02  # backoff: initial wait plus jitter
    assert sleep.waits[1] == 7.0


async def test_a_bad_request_names_the_fields_not_the_messages(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    async with FakeJira(mode="cloud") as jira:
        settings = cloud_settings(jira, priority_map={"critical": "Urgent"})
        async with sink(settings, tmp_path / "m.json") as jira_sink:
            with pytest.raises(PermanentError) as caught:
                await jira_sink.deliver(firing_record(alert))
    assert str(caught.value) == (
        f"jira create issue at {jira.base_url.removeprefix('http://')} answered HTTP 400: "
        "fields: priority"
    )
    assert len([r for r in jira.requests if r.path.endswith("/issue")]) == 1  # not retried


async def test_resolution_edge_cases(tmp_path: Path, notifications: Notifications) -> None:
    first, second, _ = notifications("webhook_firing_group_3_alerts")
    async with (
        FakeJira(mode="cloud") as jira,
        sink(cloud_settings(jira), tmp_path / "m.json") as jira_sink,
    ):
        await jira_sink.deliver(cancelled_record(second))  # resolved mid-investigation
        await jira_sink.deliver(resolved_record(second))  # never filed: nothing to do
        assert jira.issues == {}
        await jira_sink.deliver(firing_record(first))
        await jira_sink.deliver(resolved_record(first))
        with captured_logs() as logs:
            await jira_sink.deliver(resolved_record(first))  # already Done
    issue = jira.issues["OPS-1"]
    assert issue.status == "Done" and len(issue.comments) == 2
    assert any(
        "OPS-1 offers no transition 'Done' (it offers: To Do, In Progress)" in line for line in logs
    )
