"""The ``sentinel`` command as a user runs it: real subprocesses for ``run``, the click runner
for the quick commands."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from mcp_sentinel.cli import main
from tests.conftest import REPO_ROOT
from tests.fakes.openai_server import Delay, FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING, audit_records, wait_for, write_config

EXAMPLE_ENV = {"SENTINEL_WEBHOOK_TOKEN": "example-token"}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_check_passes_on_the_shipped_example() -> None:
    code, out, err = invoke(
        "check", "--config", str(REPO_ROOT / "config.example.yaml"), env=EXAMPLE_ENV
    )
    assert code == 0, err
    assert "OK" in out and "incident cards: 5" in out
    assert "TargetDown: prompts/target_down.md.j2" in out


def test_check_lists_every_problem_with_its_location(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "incident_cards:\n"
        "  - {resource: A, prompt: prompts/a.md.j2}\n"
        "  - {resource: B, prompt: prompts/b.md.j2, max_iterations: 0}\n"
        "  - {resource: C, prompt: prompts/x.md.j2}\n"
    )
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.md.j2").write_text("{% if %}")
    code, _, err = invoke("check", "--config", str(config), env={})
    assert code == 1
    assert "incident_cards[1].max_iterations: Input should be greater than or equal to 1" in err
    # Schema problems are reported first; a config that validates then gets its prompts checked.
    config.write_text(
        "server: {auth: {type: none}}\n"
        "incident_cards:\n"
        "  - {resource: A, prompt: prompts/a.md.j2}\n"
        "  - {resource: C, prompt: prompts/x.md.j2}\n"
    )
    code, _, err = invoke("check", "--config", str(config), env={})
    assert code == 1
    assert re.search(r"incident_cards\[0\]\.prompt: .*line 1", err), err
    assert re.search(r"incident_cards\[1\]\.prompt: prompts/x\.md\.j2 not found", err), err


def test_config_from_environment_variable(tmp_path: Path) -> None:
    code, _, err = invoke("check", env={"SENTINEL_CONFIG": str(tmp_path / "missing.yaml")})
    assert code == 1 and "missing.yaml: config file not found" in err


def test_cards_lists_matchers_in_routing_order() -> None:
    code, out, _ = invoke(
        "cards", "--config", str(REPO_ROOT / "config.example.yaml"), env=EXAMPLE_ENV
    )
    assert code == 0
    assert out.index("1. TargetDown") < out.index("2. HighErrorRate")
    assert 'match:  alertname="KubePodCrashLooping"' in out  # the implicit matcher
    assert "5. generic (default)" in out


def test_version() -> None:
    code, out, _ = invoke("version")
    assert code == 0 and re.fullmatch(r"mcp-sentinel \S+\n", out)


def test_audit_verify(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"seq": 1, "hash": "00", "prev_hash": "00"}\n')
    code, out, err = invoke("audit", "verify", str(path))
    assert code == 1 and "BROKEN" in out and "does not match its hash" in err


@dataclass
class RunningSentinel:
    process: asyncio.subprocess.Process
    url: str
    log_lines: list[str]


@contextlib.asynccontextmanager
async def sentinel_run(config: Path, alert: bytes) -> AsyncIterator[RunningSentinel]:
    """``python -m mcp_sentinel run`` on ``config``, once it listens and has accepted ``alert``
    on its webhook. Leaving kills the process if the test has not stopped it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcp_sentinel",
        "run",
        "--config",
        str(config),
        "--log-level",
        "DEBUG",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert process.stderr is not None
    url = None
    log_lines: list[str] = []
    try:
        while url is None:
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            assert line, "sentinel run exited before listening:\n" + "".join(log_lines)
            log_lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        async with (
            aiohttp.ClientSession(base_url=url) as http,
            http.post("/webhook/alertmanager", data=alert, headers=AUTH) as answer,
        ):
            assert answer.status == 200, await answer.text()
        yield RunningSentinel(process, url, log_lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_run_serves_then_drains_and_exits_0_on_sigterm(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    async with FakeOpenAI([Delay(0.5, FinalJSON(FINDING))]) as model:
        settings = write_config(tmp_path, model_url=model.base_url)
        audit = settings.resolve(settings.sinks.audit.path)
        alert = fixture_bytes("webhook_firing_single_alert")
        async with sentinel_run(tmp_path / "config.yaml", alert) as sentinel:
            process = sentinel.process
            await asyncio.sleep(0.1)  # the worker is inside the 0.5 s model call now
            process.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(process.communicate(), 60)
    logs = "".join(sentinel.log_lines) + err.decode()
    assert process.returncode == 0, logs
    assert "SIGTERM received: stopping intake and draining" in logs
    assert "incident card Checkout" in logs
    (record,) = audit_records(audit)  # the in-flight incident finished before exit
    assert record["report"]["outcome"] == "completed"
    assert "[completed] ProbeAlwaysFiring" in out.decode()


async def test_a_second_sigterm_stops_at_once_without_a_traceback(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    async with FakeOpenAI([Delay(60, FinalJSON(FINDING))]) as model:
        write_config(tmp_path, model_url=model.base_url)
        alert = fixture_bytes("webhook_firing_single_alert")
        async with sentinel_run(tmp_path / "config.yaml", alert) as sentinel:
            process = sentinel.process
            await wait_for(lambda: len(model.requests) >= 1, what="the model call to start")
            process.send_signal(signal.SIGTERM)  # drains: the run would take 60 s
            assert process.stderr is not None
            while b"stopping intake and draining" not in (
                line := await asyncio.wait_for(process.stderr.readline(), 30)
            ):
                assert line, "sentinel run exited before draining"
                sentinel.log_lines.append(line.decode())
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), 30)
    logs = "".join(sentinel.log_lines) + err.decode()
    assert process.returncode == 0, logs
    assert "second SIGTERM: stopping now" in logs
    assert "sentinel stopped without draining" in logs
    assert "Traceback" not in logs and "CancelledError" not in logs
