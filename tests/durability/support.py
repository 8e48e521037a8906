"""A real ``sentinel run`` subprocess for the fault tests: started with a config, its URL read
from its log file, stopped by its PID (SIGTERM, or SIGKILL for a crash). Every wait is bounded.

The daemon's stderr goes to a file, not a pipe, so a chatty daemon never blocks on a pipe
nobody reads, and the log survives the process for the assertion messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from mcp_sentinel.models import IncidentNotification, WebhookPayload

_LISTENING = re.compile(r"listening on (https?://127\.0\.0\.1:\d+)")


class DaemonProcess:
    """One ``sentinel run`` process. ``async with`` starts it and makes sure it is gone after."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._log_start = 0

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def start(self, *, within: float = 60) -> str:
        """Start the daemon; return its URL once it listens (its log says so)."""
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as sink:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mcp_sentinel",
                "run",
                "--config",
                str(self.config),
                "--log-level",
                "DEBUG",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=sink,
                env={**os.environ, "NO_COLOR": "1"},
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            text = self.log_text()[self._log_start :]
            found = _LISTENING.search(text)
            if found:
                self.url = found.group(1)
                return self.url
            if self._process.returncode is not None:
                raise AssertionError(f"sentinel run exited before listening:\n{text}")
            if loop.time() > deadline:
                raise AssertionError(f"sentinel run did not listen within {within}s:\n{text}")
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: a crash, with no chance to drain or flush anything."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self._process.wait(), 30)

    async def terminate(self, *, within: float = 60) -> int:
        """SIGTERM, then wait for the exit; returns the exit status."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self._process.wait(), within)

    async def __aenter__(self) -> DaemonProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await asyncio.wait_for(self._process.wait(), 30)


def line_count(path: Path) -> int:
    """Lines in a JSONL file (cheap enough to poll while servers share the test's loop)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def state_rows(database: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of ``query`` on the state database, read with a connection of our own."""
    connection = sqlite3.connect(database, timeout=10)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def unfinished_fingerprints(database: Path) -> set[str]:
    """The fingerprints of the incidents ``database`` holds unfinished, read with plain JSON:
    the rows of ``incidents`` (the pollers') and the incidents of stored webhook payloads that
    are not done."""
    found = {
        json.loads(notification)["fingerprint"]
        for (notification,) in state_rows(database, "SELECT notification FROM incidents")
    }
    done = set(
        state_rows(database, "SELECT payload, position FROM payload_incidents WHERE state = 'done'")
    )
    for seq, incidents, body in state_rows(
        database, "SELECT seq, incidents, body FROM payloads WHERE state = 'queued'"
    ):
        alerts = json.loads(body)["alerts"]
        for position in json.loads(incidents)["position"]:
            if (seq, position) not in done:
                found.add(alerts[position]["fingerprint"])
    return found


def parsed(body: bytes) -> list[IncidentNotification]:
    """The notifications of a webhook payload's ``body``, as the webhook makes them."""
    return WebhookPayload.model_validate_json(body).notifications(received_at=datetime.now(UTC))
