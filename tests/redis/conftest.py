"""A real ``redis-server`` for the redis backend's tests: on a free loopback port, in the test's
temp dir, without persistence, stopped by its PID. Skips when the binary is missing
(``scripts/install-test-deps`` installs the Debian package ``redis-server``)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis.server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/install-test-deps installs it)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(binary, directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _dump_running_tasks(signum: int, frame: object) -> None:
    """``kill -USR1 <pytest pid>``: every task of the running event loop writes its stack to
    stderr, straight to the file descriptor (pytest's capture would hold it): what a stuck
    redis test is waiting on."""
    loop = asyncio._get_running_loop()
    buffer = io.StringIO()
    for task in asyncio.all_tasks(loop) if loop is not None else ():
        buffer.write(f"--- {task.get_name()}\n")
        task.print_stack(file=buffer)
    os.write(2, (buffer.getvalue() or "no running event loop\n").encode())


signal.signal(signal.SIGUSR1, _dump_running_tasks)
