"""The model endpoint down, or answering 5xx or 429: the client retries, then the incident is
``analysis_failed`` and that report still reaches every sink; the model's circuit breaker opens
(``sentinel_circuit_breaker_state{breaker="model:default"}`` 2) and the next incident is
refused by it, which is reported the same way."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from tests.fakes.openai_server import FakeOpenAI, HttpError
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.helpers import AUTH, audit_records, metric_value, wait_for, write_config

ERRORS = {
    "down": "the model endpoint could not be reached after retries",
    "5xx": "the model endpoint answered HTTP 503 after retries",
    "429": "the model endpoint answered HTTP 429 after retries",
}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alert(template: dict[str, Any], index: int) -> bytes:
    payload = json.loads(json.dumps(template))
    payload["alerts"][0]["fingerprint"] = f"model-fault-{index}"
    return json.dumps(payload).encode()


@pytest.mark.parametrize("fault", ["down", "5xx", "429"])
async def test_model_faults_are_retried_then_reported_and_trip_the_breaker(
    tmp_path: Path, fixture_json: Callable[[str], Any], fault: str
) -> None:
    template = fixture_json("webhook_firing_single_alert")
    status = 503 if fault == "5xx" else 429
    # Two incidents, each one call and one retry; Retry-After keeps the retries quick.
    script = [HttpError(status, retry_after=0.01) for _ in range(4)]
    async with FakeOpenAI(script) as model, WebhookReceiver() as receiver:
        model_url = f"http://127.0.0.1:{closed_port()}/v1" if fault == "down" else model.base_url
        settings = write_config(
            tmp_path,
            model_url=model_url,
            overrides={
                "openai": {"max_retries": 1},
                "validators": {"circuit_breaker": {"min_calls": 2, "failure_ratio": 0.5}},
                "sinks": {"webhook": {"url": receiver.url}},
                "incident_cards": [
                    {
                        "resource": "Checkout",
                        "match": ['service=~"checkout"'],
                        "prompt": "prompts/triage.md.j2",
                        "sinks": ["console", "audit", "webhook"],
                    }
                ],
            },
        )
        audit = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            for index in (1, 2):
                async with http.post(
                    "/webhook/alertmanager", data=alert(template, index), headers=AUTH
                ) as r:
                    assert r.status == 200
            await wait_for(lambda: len(audit_records(audit)) == 2, what="two reports")
            async with http.get("/metrics") as r:
                metrics = await r.text()
            assert (
                metric_value(metrics, "sentinel_circuit_breaker_state", breaker="model:default")
                == 2
            )
            async with http.post(
                "/webhook/alertmanager", data=alert(template, 3), headers=AUTH
            ) as r:
                assert r.status == 200
            await wait_for(lambda: len(audit_records(audit)) == 3, what="the third report")
            await wait_for(lambda: len(receiver.received) == 3, what="three webhook deliveries")

    if fault != "down":
        assert len(model.requests) == 4  # the breaker kept the third incident off the model
    reports = {r["notification"]["fingerprint"]: r["report"] for r in audit_records(audit)}
    assert {reports[f"model-fault-{i}"]["error"] for i in (1, 2)} == {ERRORS[fault]}
    assert all(report["outcome"] == "analysis_failed" for report in reports.values())
    assert "circuit open for model:default" in reports["model-fault-3"]["error"]
    delivered = [json.loads(item.body)["report"] for item in receiver.received]
    assert sorted(d["outcome"] for d in delivered) == ["analysis_failed"] * 3
    assert all(d["alert"]["labels"]["alertname"] == "ProbeAlwaysFiring" for d in delivered)
