"""Real Prometheus and Alertmanager binaries for the integration tests.

The ``stack`` fixture starts them on demand, each on a free loopback port with its own temporary
directory and a minimal config, waits for ``/-/ready`` (with a deadline), and on teardown stops
each by its PID (SIGTERM, then SIGKILL if it lingers). A test skips, saying why, when a binary is
missing: install the Debian packages ``prometheus`` and ``prometheus-alertmanager`` (``.ci/run``
does it).

Flags that keep them fast and private (see the shared notes on Alertmanager and Prometheus):

- Alertmanager: ``--cluster.listen-address=`` (empty: no gossip, which would otherwise listen on
  0.0.0.0:9094); ``group_wait: 1s``, ``group_interval: 2s`` in the route.
- Prometheus: ``--rules.alert.resend-delay=1s`` (else the first alerts, evaluated before it has
  discovered Alertmanager, are resent only a minute later); ``evaluation_interval`` and
  ``scrape_interval`` 1s. Its discovery managers publish changes every 5 s: a new alert reaches
  Alertmanager about 6 s after start-up, and a removed file_sd target takes as long to vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.helpers import free_port

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
READY_WITHIN = 30.0
STOP_WITHIN = 10.0
INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager (.ci/run does it)"


@dataclass
class Running:
    """A started binary: its URL, its PID and its log file."""

    name: str
    url: str
    process: asyncio.subprocess.Process
    log: Path
    workdir: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def _wait_ready(running: Running) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WITHIN
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            if running.process.returncode is not None:
                pytest.fail(
                    f"{running.name} exited with {running.process.returncode} while starting:\n"
                    + running.log_tail()
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{running.url}/-/ready") as response:
                    if response.status == 200:
                        return
            if loop.time() > deadline:
                pytest.fail(
                    f"{running.name} not ready within {READY_WITHIN}s:\n" + running.log_tail()
                )
            await asyncio.sleep(0.1)


async def _stop(running: Running) -> None:
    process = running.process
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_WITHIN)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()


class Stack:
    """Starts binaries for one test; ``aclose()`` (the fixture's teardown) stops them all."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._running: list[Running] = []

    async def _start(self, name: str, argv: list[str], url: str, workdir: Path) -> Running:
        log = workdir / f"{name}.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
        running = Running(name, url, process, log, workdir)
        self._running.append(running)
        await _wait_ready(running)
        return running

    async def alertmanager(
        self, *, webhook_url: str, token: str, port: int | None = None
    ) -> Running:
        """Alertmanager sending every alert to ``webhook_url`` with a bearer token."""
        assert ALERTMANAGER is not None
        workdir = self._base / "alertmanager"
        (workdir / "data").mkdir(parents=True)
        config = {
            "route": {
                "receiver": "sentinel",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "2s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "sentinel",
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "max_alerts": 0,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials": token}
                            },
                        }
                    ],
                }
            ],
        }
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        port = port or free_port()
        argv = [
            ALERTMANAGER,
            "--config.file=alertmanager.yml",
            "--storage.path=data",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        return await self._start("alertmanager", argv, f"http://127.0.0.1:{port}", workdir)

    async def prometheus(
        self,
        *,
        alertmanager_url: str | None = None,
        rules: list[dict[str, Any]],
        external_labels: dict[str, str] | None = None,
        toggle_on: bool = False,
        port: int | None = None,
        self_job: str | None = None,
    ) -> Running:
        """Prometheus evaluating ``rules`` every second and sending to Alertmanager (when
        ``alertmanager_url`` is given). ``port`` is chosen beforehand when something must know
        the URL before it starts.

        It scrapes itself as job ``sentinel-toggle`` through the file_sd file ``toggle.json``
        while the toggle is on (``set_toggle``), so ``up{job="sentinel-toggle"}`` exists only
        then: a rule on it fires and resolves on demand. With ``self_job`` it also scrapes
        itself every second as that job, all along (a static target).
        """
        assert PROMETHEUS is not None
        workdir = self._base / "prometheus"
        (workdir / "data").mkdir(parents=True)
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        scrape_configs: list[dict[str, Any]] = [
            {
                "job_name": "sentinel-toggle",
                "file_sd_configs": [{"files": ["toggle.json"], "refresh_interval": "1s"}],
            }
        ]
        if self_job is not None:
            scrape_configs.append(
                {"job_name": self_job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            )
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "external_labels": external_labels or {},
            },
            "rule_files": ["rules.yml"],
            "scrape_configs": scrape_configs,
        }
        if alertmanager_url is not None:
            alertmanager_host = alertmanager_url.removeprefix("http://")
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager_host]}]}]
            }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        (workdir / "rules.yml").write_text(
            yaml.safe_dump({"groups": [{"name": "sentinel", "interval": "1s", "rules": rules}]})
        )
        set_toggle(workdir, f"127.0.0.1:{port}" if toggle_on else None)
        argv = [
            PROMETHEUS,
            "--config.file=prometheus.yml",
            "--storage.tsdb.path=data",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ]
        return await self._start("prometheus", argv, url, workdir)

    async def aclose(self) -> None:
        for running in reversed(self._running):
            await _stop(running)


def set_toggle(prometheus_dir: Path, target: str | None) -> None:
    """Write the file_sd file: one target (on) or none (off), atomically."""
    groups = [{"targets": [target], "labels": {"toggle": "on"}}] if target else []
    temporary = prometheus_dir / ".toggle.json.tmp"
    temporary.write_text(json.dumps(groups))
    temporary.replace(prometheus_dir / "toggle.json")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    missing = [
        name
        for name, path in (("prometheus", PROMETHEUS), ("prometheus-alertmanager", ALERTMANAGER))
        if path is None
    ]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found on PATH; install with: {INSTALL_HINT}")
    binaries = Stack(tmp_path / "binaries")
    try:
        yield binaries
    finally:
        await binaries.aclose()
