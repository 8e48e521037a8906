"""Shared pieces of the benchmark suite: configs, payloads, processes, percentiles, /proc.

Nothing here runs as a test. Every process a benchmark starts is stopped by its PID; every
wait is bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SINGLE = FIXTURES / "webhook_firing_single_alert.json"
GROUP_50 = FIXTURES / "webhook_firing_group_50_alerts.json"
PY = sys.executable

# A card that matches every alert, so every fresh alert takes the real path: routed and queued.
MATCH_ALL_CARD = {
    "resource": "Bench",
    "match": ['alertname=~".+"'],
    "prompt": "prompts/triage.md.j2",
    "tools": [],
    "sinks": ["console", "audit"],
    "max_iterations": 10,
    "timeout_seconds": 30,
}


def load_fixture(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class BenchRedis:
    """A ``redis-server`` for the ``redis`` backend's figures (the tests' ``RedisServer``):
    loopback, a free port, no persistence (the figures are the daemon's, not the disk's),
    pinned to ``core`` beside the daemon (the server side), stopped by its PID."""

    def __init__(self, directory: Path, *, core: int | None = 0) -> None:
        from tests.redis.server import RedisServer

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: apt-get install -y redis-server")
        prefix = ("taskset", "-c", str(core)) if core is not None else ()
        self._server = RedisServer(binary, directory, prefix=prefix)
        self._server.start()
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> BenchRedis:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def proc_status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM, VmRSS) in kB; 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _stat_cpu_seconds(stat: Path) -> float:
    """User plus system CPU time in a ``/proc/.../stat`` file, in seconds (clock ticks)."""
    # The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    fields = stat.read_text().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` and all its threads so far, in seconds
    (``/proc/PID/stat``, clock-tick resolution)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User plus system CPU time of each thread of process ``pid`` so far, in seconds, by
    thread id (``/proc/PID/task/TID/stat``); the main thread's id is ``pid``. A thread that
    ends while it is read is left out."""
    times: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[int(task.name)] = _stat_cpu_seconds(task / "stat")
        except OSError:
            continue
    return times


def wait_http_ok(url: str, *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def stop_on_signals() -> None:
    """Take SIGTERM as Ctrl-C (SIGINT) is taken: the benchmark unwinds and stops every server
    it started (by its PID) on the way out; SIGTERM's default action would end it at once and
    leave those servers, each a process of its own, running. Only the first signal counts:
    a second (``run_all`` passing its SIGTERM on while a Ctrl-C already stops this one) must
    not cut the clean-up short."""

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 15) -> None:
    """SIGTERM the one process we started (by PID), then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def ready_or_stopped(
    proc: subprocess.Popen[Any], ready: Callable[[], bool], failure: Callable[[], str]
) -> None:
    """Return once ``ready()`` says ``proc`` is; otherwise stop it (by its PID) and raise
    ``RuntimeError`` with ``failure()`` (read then: a log's last lines). Stopped too when
    the wait is interrupted (Ctrl-C, SIGTERM): no caller holds it yet to stop it."""
    try:
        ok = ready()
    except BaseException:
        stop_process(proc)
        raise
    if not ok:
        stop_process(proc)
        raise RuntimeError(failure())


def start_daemon(
    directory: Path,
    *,
    backend: str,
    model_url: str | None = None,
    queue_size: int = 1_000_000,
    workers: int = 1,
    ttl: float = 3600,
    core: int | None = 0,
    model_delay: float = 3600,
    runs_per_minute: float = 30,
    redis_url: str | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``benchmarks/_daemon.py`` (the real ``Sentinel``) pinned to ``core``; return it and
    its base URL. Commands go to its stdin (``stats``), answers come on its stdout."""
    args = [
        PY,
        str(ROOT / "benchmarks" / "_daemon.py"),
        "--dir",
        str(directory),
        "--backend",
        backend,
        "--queue-size",
        str(queue_size),
        "--workers",
        str(workers),
        "--ttl",
        str(ttl),
        "--model-delay",
        str(model_delay),
        "--runs-per-minute",
        str(runs_per_minute),
    ]
    if model_url:
        args += ["--model-url", model_url]
    if redis_url:
        args += ["--redis-url", redis_url]
    if core is not None:
        args = ["taskset", "-c", str(core), *args]
    log = (directory / "daemon.log").open("w")
    proc = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    stdout = proc.stdout
    line = ""

    def announced() -> bool:
        nonlocal line
        line = stdout.readline()  # "URL http://..." once ready; EOF when it failed
        return line.startswith("URL ")

    ready_or_stopped(
        proc,
        announced,
        lambda: f"daemon did not start: {(directory / 'daemon.log').read_text()[-2000:]}",
    )
    return proc, line.split()[1]


def daemon_stats(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("stats\n")
    proc.stdin.flush()
    stats: dict[str, Any] = json.loads(proc.stdout.readline())
    return stats


def start_floor(core: int = 0) -> tuple[subprocess.Popen[str], str]:
    """The framework floor: a bare aiohttp receiver that only parses the JSON."""
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", str(core), PY, str(ROOT / "benchmarks" / "_floor.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    ready_or_stopped(
        proc,
        lambda: wait_http_ok(url + "/healthz", within=15),
        lambda: "floor receiver did not start",
    )
    return proc, url


def alertmanager_binary() -> str | None:
    """The Alertmanager binary (Debian names it ``prometheus-alertmanager``), if installed."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def start_alertmanager(directory: Path, core: int = 0) -> tuple[subprocess.Popen[str], str]:
    """Alertmanager itself, as the baseline for 50-alert ingest: one route to a receiver that
    sends nothing, clustering off, pinned to ``core`` (its Go runtime then uses one thread)."""
    binary = alertmanager_binary()
    if binary is None:
        raise RuntimeError("Alertmanager is missing: apt-get install -y prometheus-alertmanager")
    port = free_port()
    config = directory / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    storage = directory / "alertmanager-data"
    storage.mkdir(exist_ok=True)
    command = ["taskset", "-c", str(core), binary, f"--config.file={config}"]
    command += [f"--storage.path={storage}", f"--web.listen-address=127.0.0.1:{port}"]
    command += ["--cluster.listen-address=", "--log.level=warn"]
    log = (directory / "alertmanager.log").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory, text=True)
    url = f"http://127.0.0.1:{port}"
    ready_or_stopped(
        proc,
        lambda: wait_http_ok(url + "/-/ready", within=30),
        lambda: f"alertmanager did not start: {directory / 'alertmanager.log'}",
    )
    return proc, url


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


def cpu_steal() -> tuple[int, int]:
    """(all, stolen) CPU time of the machine so far, in clock ticks (``/proc/stat``): time the
    hypervisor gave to others while this machine wanted to run."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return sum(ticks), ticks[7]


def emit(name: str, result: dict[str, Any]) -> None:
    """Print the figures, and a machine-readable line for run_all.py."""
    print("RESULT " + json.dumps({"benchmark": name, **result}), flush=True)
