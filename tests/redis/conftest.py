"""A real ``redis-server`` for the redis backend's tests: on a free loopback port, in the test's
temp dir, without persistence, stopped by its PID. Skips when the binary is missing
(``scripts/install-test-deps`` installs the Debian package ``redis-server``)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process; ``stop`` and ``start`` again on the same port (a restart:
    without persistence it comes back empty)."""

    def __init__(self, binary: str, directory: Path, *, prefix: tuple[str, ...] = ()) -> None:
        """``prefix`` goes before the command (benchmarks pin it: ``taskset -c 0``)."""
        self.binary = binary
        self.prefix = prefix
        self.directory = directory
        self.port = free_port()
        self.log = directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, within: float = 20) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    *self.prefix,
                    self.binary,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                ],
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + within
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self._process.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not answer within {within}s")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL by PID and wait: the server is gone at once, as in a crash."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=20)
        self._process = None


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
