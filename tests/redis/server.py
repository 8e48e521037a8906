"""A real ``redis-server`` on a free loopback port, without persistence, stopped by its PID:
for the redis backend's tests (``conftest.redis_server``) and the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import free_port


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
        try:
            self._wait_ready(within)
        except BaseException:
            # Not answering in time, or interrupted while waiting: no caller holds a started
            # server to stop, so it is stopped here.
            self.stop()
            raise

    def _wait_ready(self, within: float) -> None:
        assert self._process is not None
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
