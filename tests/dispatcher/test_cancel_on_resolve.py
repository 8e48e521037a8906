"""A resolution cancels its incident's investigation, queued or running; the resolution is
still reported. Through the whole daemon, with real HTTP."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from tests.fakes.openai_server import Delay, FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING, audit_records, metric_value, wait_for, write_config


def firing_and_resolved(fixture_json: Callable[[str], Any]) -> tuple[bytes, bytes]:
    resolved = fixture_json("webhook_resolved_single_alert")
    firing = json.loads(json.dumps(resolved))
    firing["status"] = firing["alerts"][0]["status"] = "firing"
    firing["alerts"][0]["endsAt"] = "0001-01-01T00:00:00Z"
    return json.dumps(firing).encode(), json.dumps(resolved).encode()


async def test_running_investigation_is_cancelled_by_its_resolution(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    firing, resolved = firing_and_resolved(fixture_json)
    async with FakeOpenAI([Delay(30, FinalJSON(FINDING))]) as model:
        settings = write_config(tmp_path, model_url=model.base_url)
        audit = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            async with http.post("/webhook/alertmanager", data=firing, headers=AUTH) as r:
                assert r.status == 200
            await wait_for(lambda: len(model.requests) == 1, what="the model call to start")
            async with http.post("/webhook/alertmanager", data=resolved, headers=AUTH) as r:
                assert r.status == 200
            await wait_for(lambda: len(audit_records(audit)) == 2, within=10, what="two records")
            async with http.get("/metrics") as r:
                metrics = await r.text()
    by_outcome = {r["report"]["outcome"]: r for r in audit_records(audit)}
    assert set(by_outcome) == {"cancelled", "resolved"}
    assert (
        by_outcome["cancelled"]["report"]["error"] == "the alert resolved during the investigation"
    )
    assert (
        metric_value(metrics, "sentinel_agent_runs_total", card="Checkout", outcome="cancelled")
        == 1
    )


async def test_queued_investigation_is_skipped_after_its_resolution(
    tmp_path: Path, fixture_json: Callable[[str], Any], fixture_bytes: Callable[[str], bytes]
) -> None:
    firing, resolved = firing_and_resolved(fixture_json)
    overrides = {"dispatcher": {"worker_concurrency": 1}}
    # The one model call holds the only worker long enough for both posts to be queued.
    async with FakeOpenAI([Delay(1.5, FinalJSON(FINDING))]) as model:
        settings = write_config(tmp_path, model_url=model.base_url, overrides=overrides)
        audit = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            busy = fixture_bytes("webhook_firing_single_alert")  # occupies the only worker
            async with http.post("/webhook/alertmanager", data=busy, headers=AUTH) as r:
                assert r.status == 200
            await wait_for(lambda: len(model.requests) == 1, what="the first model call")
            for body in (firing, resolved):
                async with http.post("/webhook/alertmanager", data=body, headers=AUTH) as r:
                    assert r.status == 200
            # The busy incident is a different one: the resolution does not touch it.
            assert s.dispatcher is not None and s.dispatcher.queue.depth() == 2
            await wait_for(lambda: len(audit_records(audit)) == 3, what="three records")
    outcomes = sorted(r["report"]["outcome"] for r in audit_records(audit))
    assert outcomes == ["cancelled", "completed", "resolved"]
    skipped = [r for r in audit_records(audit) if r["report"]["outcome"] == "cancelled"]
    assert skipped[0]["report"]["error"] == "resolved before a worker took it"
    assert len(model.requests) == 1  # the skipped incident never reached the model
