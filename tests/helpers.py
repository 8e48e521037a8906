"""Test helpers: a config written for a test, waiting for a condition, reading the audit log."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mcp_sentinel.config import SentinelSettings, load_settings
from tests.fakes.mcp_stdio_server import SERVER_PATH

TOKEN = "test-webhook-token-5f3a"
MODEL_KEY = "sk-test-model-key-9c1e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

TRIAGE_TEMPLATE = """\
You are investigating {{ alert.labels.alertname }} for card {{ card.resource }}.
Use the tools to check whether the target is up. Base every claim on tool output.
"""

FINDING = {
    "summary": "Checkout API on app-01.example.internal:8080 is down: up == 0.",
    "probable_cause": "The checkout process on app-01 is not answering scrapes.",
    "evidence": [{"source": "ops.query", "detail": 'up{job="checkout"} => 0'}],
    "recommended_actions": ["Check the checkout service on app-01.example.internal"],
    "confidence": 0.8,
}


def write_config(
    tmp_path: Path,
    *,
    model_url: str | None = None,
    mcp_log: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> SentinelSettings:
    """A config in ``tmp_path`` for a daemon on port 0: one card (service checkout, payments or
    toggle-svc) using the fake stdio MCP server when ``mcp_log`` is given, the fake model at
    ``model_url``."""
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "prompts" / "triage.md.j2").write_text(TRIAGE_TEMPLATE)
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "auth": {"type": "bearer", "token": TOKEN}},
        # The default backend (sqlite), with its state file beside the config in tmp_path.
        "dispatcher": {
            "queue_size": 100,
            "worker_concurrency": 2,
            "drain_timeout_seconds": 20,
            "sqlite_path": "state.db",
        },
        "openai": {
            "model": "gpt-test",
            "base_url": model_url or "http://127.0.0.1:9/v1",
            "api_key": MODEL_KEY,
            "api": "chat_completions",
            "max_retries": 0,
            "timeout_seconds": 20,
        },
        "mcp_servers": {},
        "incident_cards": [
            {
                "resource": "Checkout",
                "match": ['service=~"checkout|payments|toggle-svc"'],
                "prompt": "prompts/triage.md.j2",
                "tools": [],
                "sinks": ["console", "audit"],
                "max_iterations": 10,
                "timeout_seconds": 30,
            }
        ],
        "sinks": {"audit": {"path": "audit.jsonl"}},
    }
    if mcp_log is not None:
        config["mcp_servers"]["ops"] = {
            "transport": "stdio",
            "command": sys.executable,
            "args": [str(SERVER_PATH), "--log", str(mcp_log)],
            # restart_service and fail count as mutating: the tool policy decides on them.
            "read_only_tools": ["query", "get_logs"],
        }
        config["incident_cards"][0]["tools"] = ["ops"]
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path, env={})


async def wait_for(condition: Callable[[], bool], *, within: float = 30, what: str = "") -> None:
    """Poll ``condition`` until true; fail the test naming ``what`` when it never becomes so."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a program that cannot be given port 0 and report
    the port it took (the Prometheus and Alertmanager binaries, redis-server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def jsonl_records(path: Path) -> list[dict[str, Any]]:
    """The complete records of a JSON-lines file another task may be appending to.

    A record counts once its newline is on disk: a reader racing the writer can see the
    first part of a line (a regular file's read does not wait for a write in progress).
    """
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def audit_records(path: Path) -> list[dict[str, Any]]:
    return jsonl_records(path)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    target = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == target:
            return float(value)
        if labels and sample.startswith(name + "{"):
            inner = sample[len(name) + 1 : -1]
            pairs = dict(part.split("=", 1) for part in inner.split(",") if part)
            if all(pairs.get(key) == f'"{value_}"' for key, value_ in labels.items()):
                return float(value)
    return 0.0
