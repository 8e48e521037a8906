"""The metric names are a contract (dashboards and alerts use them): pinned here, scraped from
a running daemon. The shipped Grafana dashboard may only use names that exist."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from tests.conftest import REPO_ROOT
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING, audit_records, wait_for, write_config

PINNED = {
    "sentinel_agent_run_duration_seconds": "histogram",
    "sentinel_agent_runs_total": "counter",
    "sentinel_agent_tokens_total": "counter",
    "sentinel_agent_turns": "histogram",
    "sentinel_alerts_dispatched_total": "counter",
    "sentinel_alerts_received_total": "counter",
    "sentinel_build_info": "gauge",
    "sentinel_circuit_breaker_state": "gauge",
    "sentinel_mcp_server_up": "gauge",
    "sentinel_queue_capacity": "gauge",
    "sentinel_queue_depth": "gauge",
    "sentinel_queue_wait_seconds": "histogram",
    "sentinel_sink_dead_letters_total": "counter",
    "sentinel_sink_deliveries_total": "counter",
    "sentinel_sink_delivery_duration_seconds": "histogram",
    "sentinel_tool_calls_total": "counter",
    "sentinel_validator_decisions_total": "counter",
    "sentinel_webhook_requests_total": "counter",
}
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "mcp-sentinel.json"


def families(exposition: str) -> dict[str, str]:
    found = {}
    for line in exposition.splitlines():
        match = re.match(r"# TYPE (sentinel_\w+) (\w+)", line)
        if match:
            name, kind = match.groups()
            if kind == "counter":
                name = name.removesuffix("_total") + "_total"
            found[name] = "gauge" if kind == "info" else kind
    return found


async def test_scraped_names_are_the_pinned_ones(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    async with FakeOpenAI([FinalJSON(FINDING)]) as model:
        settings = write_config(tmp_path, model_url=model.base_url)
        audit = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            body = fixture_bytes("webhook_firing_single_alert")
            async with http.post("/webhook/alertmanager", data=body, headers=AUTH) as r:
                assert r.status == 200
            await wait_for(lambda: len(audit_records(audit)) == 1, what="the audit record")
            async with http.get("/metrics") as r:
                assert r.headers["Content-Type"].startswith("text/plain")
                scraped = families(await r.text())
    assert scraped == PINNED
    # Units in names, counters end in _total.
    for name, kind in PINNED.items():
        assert (kind == "counter") == name.endswith("_total"), name


def test_dashboard_uses_only_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(expressions) >= 12
    used = set()
    for expr in expressions:
        for name in re.findall(r"\bsentinel_\w+", expr):
            base = re.sub(r"_(bucket|count|sum|created)$", "", name)
            used.add(base)
            assert base in PINNED, f"the dashboard uses {name}, which sentinel does not export"
    assert used == set(PINNED), f"not on the dashboard: {sorted(set(PINNED) - used)}"
