"""`sentinel replay` as a user runs it: a real subprocess, the fake model and a real stdio MCP
server for --record, then --cassette with the model gone (no network), twice."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import FIXTURES
from tests.fakes.openai_server import FakeOpenAI, FinalJSON, Step, ToolCall
from tests.helpers import FINDING, write_config

INPUTS = [
    FIXTURES / "webhook_firing_single_alert.json",
    FIXTURES / "webhook_firing_group_3_alerts.json",
]
VOLATILE = {"incident_id", "duration_seconds", "started_at", "finished_at", "queued_seconds"}


async def sentinel(*args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcp_sentinel",
        *args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def stable(records_file: Path) -> list[dict[str, Any]]:
    """The records without what differs between two runs of the same thing."""
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    out = []
    for record in records:
        report = {k: v for k, v in record["report"].items() if k not in VOLATILE}
        report["alert"] = {k: v for k, v in report["alert"].items() if k != "received_at"}
        report["validation"] = [
            {k: v for k, v in d.items() if k not in ("duration_ms", "at")}
            for d in report["validation"]
        ]
        for call in report["tools_called"]:
            call.pop("duration_seconds", None)
        out.append({"card": record["card"], "prompt": record["prompt"], "report": report})
    return sorted(out, key=lambda r: json.dumps(r["report"]["alert"], sort_keys=True))


def script_for_each_alert(count: int) -> list[Step]:
    steps: list[Step] = []
    for _ in range(count):
        steps += [ToolCall("mcp_ops__query", {"promql": "up"}), FinalJSON(FINDING)]
    return steps


async def test_record_then_replay_from_the_cassette_deterministically(tmp_path: Path) -> None:
    cassette = tmp_path / "cassette"
    config = tmp_path / "config.yaml"
    async with FakeOpenAI(script_for_each_alert(4)) as model:
        write_config(tmp_path, model_url=model.base_url, mcp_log=tmp_path / "calls.jsonl")
        code, out, err = await sentinel(
            "replay",
            "--config",
            str(config),
            "--record",
            str(cassette),
            "--concurrency",
            "1",
            "--output",
            str(tmp_path / "recorded.jsonl"),
            *map(str, INPUTS),
            cwd=tmp_path,
        )
        assert code == 0, err
        assert len(model.requests) == 8
    assert "4 incident(s): 4 completed" in out
    assert len(list((cassette / "incidents").glob("*.json"))) == 4
    assert (cassette / "tools" / "ops.json").exists()

    # The model is gone and the MCP server would log any call: the cassette answers alone.
    settings = yaml.safe_load(config.read_text())
    settings["openai"]["base_url"] = "http://127.0.0.1:9/v1"
    settings["openai"]["api_key"] = ""
    config.write_text(yaml.safe_dump(settings))
    calls_before = (tmp_path / "calls.jsonl").read_text()
    runs = []
    for name in ("first.jsonl", "second.jsonl"):
        code, out, err = await sentinel(
            "replay",
            "--config",
            str(config),
            "--cassette",
            str(cassette),
            "--output",
            str(tmp_path / name),
            *map(str, INPUTS),
            cwd=tmp_path,
        )
        assert code == 0, err
        assert "4 incident(s): 4 completed" in out
        runs.append(stable(tmp_path / name))
    assert (tmp_path / "calls.jsonl").read_text() == calls_before  # no tool really ran
    assert runs[0] == runs[1] == stable(tmp_path / "recorded.jsonl")


async def test_expectations_pass_and_fail_with_the_exit_code(tmp_path: Path) -> None:
    async with FakeOpenAI(script_for_each_alert(1)) as model:
        write_config(tmp_path, model_url=model.base_url, mcp_log=tmp_path / "calls.jsonl")
        cassette = tmp_path / "cassette"
        code, _, err = await sentinel(
            "replay",
            "--config",
            "config.yaml",
            "--record",
            str(cassette),
            str(INPUTS[0]),
            cwd=tmp_path,
        )
        assert code == 0, err
    good = [
        {
            "match": {"alertname": "ProbeAlwaysFiring"},
            "card": "Checkout",
            "outcome": "completed",
            "summary_contains": ["checkout api"],
            "summary_matches": [r"up == \d"],
            "tools_called": ["ops.query"],
            "tools_not_called": ["restart_service"],
            "max_turns": 2,
        }
    ]
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    code, out, err = await sentinel(
        "replay",
        "--config",
        "config.yaml",
        "--cassette",
        str(cassette),
        "--expect",
        "good.yaml",
        "--report",
        "report.html",
        str(INPUTS[0]),
        cwd=tmp_path,
    )
    assert code == 0, out + err
    assert "expectations: 1 passed, 0 failed" in out
    html = (tmp_path / "report.html").read_text()
    assert '<td class="pass">PASS</td>' in html and "ProbeAlwaysFiring" in html

    bad = [
        {**good[0], "card": "Other", "summary_not_contains": ["down"], "max_turns": 1},
        {"match": {"alertname": "NeverFired"}, "outcome": "completed"},
    ]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    code, out, _ = await sentinel(
        "replay",
        "--config",
        "config.yaml",
        "--cassette",
        str(cassette),
        "--expect",
        "bad.yaml",
        "--report",
        "report.md",
        str(INPUTS[0]),
        cwd=tmp_path,
    )
    assert code == 1
    assert "card is Checkout, expected Other" in out
    assert "summary contains 'down'" in out
    assert "2 turns, at most 1 expected" in out
    assert "FAIL: expectation 1 (alertname=NeverFired) matched no replayed alert" in out
    assert "expectations: 0 passed, 2 failed" in out
    assert "- expectations: FAIL:" in (tmp_path / "report.md").read_text()


async def test_dry_run_shows_card_and_prompt_without_running(tmp_path: Path) -> None:
    write_config(tmp_path)
    code, out, err = await sentinel(
        "replay", "--config", "config.yaml", "--dry-run", str(INPUTS[1]), cwd=tmp_path
    )
    assert code == 0, err
    assert out.count("-> Checkout") == 3
    assert 'You are investigating "ProbeMultiInstance" for card Checkout' in out
    assert '<alert-data untrusted="true">' in out
    assert not (tmp_path / "sentinel-replay.jsonl").exists()
