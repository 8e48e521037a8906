"""Webhook intake: requests/s, alerts/s, p50/p99 accept latency, against the framework floor.

For the 1-alert and 50-alert Alertmanager payloads, at 16 and 64 connections: the real daemon
(``Sentinel`` with the memory, the sqlite and, when ``redis-server`` is installed, the redis
queue backend: a fresh local Redis per case, on the daemon's core) and, in the same run, two
baselines: a bare aiohttp receiver that only parses the JSON (the floor), and for 50-alert
payloads Alertmanager itself (``prometheus-alertmanager``, when installed) taking the same 50
alerts on its own ``POST /api/v2/alerts``, each alert fresh per request. The server runs in a
subprocess pinned with ``taskset -c 0``; the load generator is ``wrk`` pinned to core 1, one
thread, with a Lua script that POSTs the body with the bearer header and rewrites every fingerprint
per request (``-<thread>x<n>``) so that every alert is fresh and takes the real path (routed,
deduped, queued). The daemon has one worker held by a model that waits an hour and a queue large
enough for the run, so intake is what is measured. The duplicate-only case sends one fixed body.

Besides requests/s and latency, each run reports the server's CPU time per request
(``/proc/PID/stat``, every thread), which CPU steal hardly moves, and the same split between the
main thread (the daemon's event loop) and the others (``/proc/PID/task``: the durable queue's
database thread and its WAL checkpointer).

Every case runs ``--rounds`` times, interleaved: each round starts and measures every server
once (the baselines among them), in an order reversed every other round. A figure is the median
over the rounds, and a ratio the median of each round's ratio against the baseline's run of the
same round, so the drift of a shared machine (CPU steal that comes and goes over minutes) falls
on both sides of it. Each case's directory (its database and logs) is removed when the case
ends, so every case starts with the same page cache.

    uv run python benchmarks/ingest.py [--duration 3] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    GROUP_50,
    SINGLE,
    BenchRedis,
    alertmanager_binary,
    emit,
    load_fixture,
    process_cpu_seconds,
    redis_available,
    start_alertmanager,
    start_daemon,
    start_floor,
    stop_on_signals,
    stop_process,
    thread_cpu_seconds,
)
from tests.helpers import TOKEN

LUA = r"""
local body_file, vary = os.getenv("BENCH_BODY"), os.getenv("BENCH_VARY") == "1"
local f = assert(io.open(body_file, "rb")); local template = f:read("*a"); f:close()
local counter, tid = 0, 0
local threads = {}
function setup(thread) tid = tid + 1; thread:set("tid", tid); table.insert(threads, thread) end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  if not vary then wrk.body = template:gsub("@SEQ@", "dup") end
  non200 = 0; s503 = 0
end
function request()
  if vary then
    counter = counter + 1
    local body = template:gsub("@SEQ@", tid .. "x" .. counter)
    return wrk.format(nil, nil, nil, body)
  end
  return wrk.format()
end
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
  if status == 503 then s503 = s503 + 1 end
end
function done(summary, latency, requests)
  local n, s = 0, 0
  for _, t in ipairs(threads) do n = n + t:get("non200"); s = s + t:get("s503") end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "socket_errors": %d, "non200": %d, "s503": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, n, s))
end
"""


def template(path: Path) -> bytes:
    """The fixture with each fingerprint suffixed by ``-@SEQ@``, which the Lua script replaces."""
    data = load_fixture(path)
    for alert in data["alerts"]:
        alert["fingerprint"] = f"{alert['fingerprint']}-@SEQ@"
    return json.dumps(data).encode()


def alertmanager_template(path: Path) -> bytes:
    """The fixture's alerts as Alertmanager's own API takes them (``POST /api/v2/alerts``),
    each with a ``bench_seq`` label of ``@SEQ@``, so every request holds fresh alerts."""
    data = load_fixture(path)
    alerts = [
        {
            "labels": {**alert["labels"], "bench_seq": "@SEQ@"},
            "annotations": alert["annotations"],
            "startsAt": alert["startsAt"],
            "generatorURL": alert["generatorURL"],
        }
        for alert in data["alerts"]
    ]
    return json.dumps(alerts).encode()


def run_wrk(
    url: str,
    body_file: Path,
    lua: Path,
    *,
    connections: int,
    duration: int,
    vary: bool,
    path: str = "/webhook/alertmanager",
) -> dict[str, Any]:
    env = {
        "BENCH_BODY": str(body_file),
        "BENCH_VARY": "1" if vary else "0",
        "BENCH_TOKEN": TOKEN,
        "PATH": "/usr/bin:/bin",
    }
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    command += ["--timeout", "10s", "-s", str(lua), url + path]
    out = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=duration + 60, check=True
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    raw: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "socket_errors": raw["socket_errors"],
        "non200": raw["non200"],
        "s503": raw["s503"],
    }


def run_case(
    work: Path,
    target: str,
    alerts: int,
    connections: int,
    vary: bool,
    *,
    duration: int,
    lua: Path,
    bodies: dict[int, Path],
    am_body: Path,
    label: str,
) -> dict[str, Any]:
    """One wrk run against a freshly started server (stopped by its PID afterwards)."""
    case_dir = work / label
    case_dir.mkdir()
    redis = BenchRedis(case_dir, core=0) if target == "redis" else None
    body, path = bodies[alerts], "/webhook/alertmanager"
    if target == "floor":
        proc, url = start_floor(core=0)
    elif target == "alertmanager":
        proc, url = start_alertmanager(case_dir, core=0)
        body, path = am_body, "/api/v2/alerts"
    else:
        proc, url = start_daemon(
            case_dir, backend=target, core=0, redis_url=redis.url if redis is not None else None
        )
    try:
        if not vary:  # the one body, accepted once, then only duplicates
            run_wrk(url, bodies[alerts], lua, connections=1, duration=1, vary=False)
        cpu = process_cpu_seconds(proc.pid)
        threads = thread_cpu_seconds(proc.pid)
        result = run_wrk(
            url, body, lua, connections=connections, duration=duration, vary=vary, path=path
        )
        # The server's own CPU per request: unlike requests/s, it does not move with the time
        # the hypervisor takes from the core (the redis rows leave out Redis's own CPU).
        requests = max(result["requests"], 1)
        result["cpu_us_per_request"] = (process_cpu_seconds(proc.pid) - cpu) / requests * 1e6
        # The same split by thread: the main thread (the daemon's event loop) against all the
        # others (the durable queue's database thread and its WAL checkpointer).
        after = thread_cpu_seconds(proc.pid)
        main = after.get(proc.pid, 0.0) - threads.get(proc.pid, 0.0)
        result["main_thread_cpu_us_per_request"] = main / requests * 1e6
        result["other_threads_cpu_us_per_request"] = (
            sum(
                seconds - threads.get(tid, 0.0) for tid, seconds in after.items() if tid != proc.pid
            )
            / requests
            * 1e6
        )
        return result
    finally:
        stop_process(proc)
        if redis is not None:
            redis.stop()
        # A sqlite case leaves over 100 MB of database behind. Kept, a run's cases pile up
        # gigabytes of page cache, and with it every later case pays more system time for
        # each fresh page of memory it touches (the memory queue's 50-alert case 15% more
        # CPU per request): each case starts from the same machine instead.
        shutil.rmtree(case_dir, ignore_errors=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s runs")
    parser.add_argument(
        "--backends",
        default="memory,sqlite,redis" if redis_available() else "memory,sqlite",
        help="comma-separated (redis needs redis-server)",
    )
    parser.add_argument("--alerts", default="1,50", help="alerts per request, comma-separated")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    sizes = [int(n) for n in args.alerts.split(",") if n]
    duration, rounds = (2, 1) if args.quick else (args.duration, args.rounds)
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    # (target, alerts, connections, case) -> one result per round
    runs: dict[tuple[str, int, int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="sentinel-ingest-") as tmp:
        work = Path(tmp)
        lua = work / "post.lua"
        lua.write_text(LUA)
        bodies = {1: work / "single.json", 50: work / "group50.json"}
        bodies[1].write_bytes(template(SINGLE))
        bodies[50].write_bytes(template(GROUP_50))
        am_body = work / "alertmanager50.json"
        am_body.write_bytes(alertmanager_template(GROUP_50))
        with_alertmanager = alertmanager_binary() is not None
        for alerts in sizes:
            for connections in (16, 64):
                # Each round runs every server once, the baselines among them, in an order
                # reversed every other round: a ratio compares runs minutes apart at most,
                # and the machine's drift falls on both sides of it.
                plan = [("floor", True)]
                if alerts == 50 and with_alertmanager:
                    plan.append(("alertmanager", True))
                plan += [(backend, True) for backend in backends]
                if connections == 16:
                    plan += [(backend, False) for backend in backends]  # duplicate-only
                for index in range(rounds):
                    for target, vary in plan if index % 2 == 0 else plan[::-1]:
                        case = "fresh" if vary else "duplicates"
                        key = (target, alerts, connections, case)
                        result = run_case(
                            work,
                            target,
                            alerts,
                            connections,
                            vary,
                            duration=duration,
                            lua=lua,
                            bodies=bodies,
                            am_body=am_body,
                            label=f"{target}-{alerts}-{connections}-{case}-{index}",
                        )
                        runs.setdefault(key, []).append(result)
                        print(
                            f"round {index + 1}/{rounds} {target:>12} {alerts:>2} alert(s) "
                            f"c={connections:<3} {case:<10} {result['rps']:8.0f} req/s "
                            f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                            f"CPU {result['cpu_us_per_request']:6.0f} µs/req  "
                            f"non-200 {result['non200']}  socket errors "
                            f"{result['socket_errors']}",
                            flush=True,
                        )
    rows: list[dict[str, Any]] = []
    for (target, alerts, connections, case), results in runs.items():
        floor = runs[("floor", alerts, connections, "fresh")]
        am = runs.get(("alertmanager", alerts, connections, "fresh"))
        row: dict[str, Any] = {
            "target": target,
            "alerts_per_request": alerts,
            "connections": connections,
            "case": case,
            "rounds": len(results),
            "requests": sum(r["requests"] for r in results),
            "rps": median([r["rps"] for r in results]),
            "p50_ms": median([r["p50_ms"] for r in results]),
            "p99_ms": median([r["p99_ms"] for r in results]),
            "cpu_us_per_request": median([r["cpu_us_per_request"] for r in results]),
            "main_thread_cpu_us_per_request": median(
                [r["main_thread_cpu_us_per_request"] for r in results]
            ),
            "other_threads_cpu_us_per_request": median(
                [r["other_threads_cpu_us_per_request"] for r in results]
            ),
            "socket_errors": sum(r["socket_errors"] for r in results),
            "non200": sum(r["non200"] for r in results),
            "s503": sum(r["s503"] for r in results),
            # Each round's ratio against the baseline's run of the same round, then the median.
            "rps_vs_floor": median(
                [r["rps"] / f["rps"] for r, f in zip(results, floor, strict=True)]
            ),
            "p99_vs_floor": median(
                [r["p99_ms"] / f["p99_ms"] for r, f in zip(results, floor, strict=True)]
            ),
            "rps_all": [round(r["rps"]) for r in results],
        }
        row["alerts_per_s"] = row["rps"] * alerts
        if am is not None:
            row["alerts_vs_alertmanager"] = median(
                [r["rps"] / a["rps"] for r, a in zip(results, am, strict=True)]
            )
        rows.append(row)
        print(
            f"median of {row['rounds']}: {target:>12} {alerts:>2} alert(s) c={connections:<3} "
            f"{case:<10} {row['rps']:8.0f} req/s {row['alerts_per_s']:9.0f} alerts/s  "
            f"p99 {row['p99_ms']:7.2f} ms  vs floor {row['rps_vs_floor']:.0%} req/s, "
            f"{row['p99_vs_floor']:.1f}x p99"
            + (
                f", {row['alerts_vs_alertmanager']:.2f}x Alertmanager"
                if "alerts_vs_alertmanager" in row
                else ""
            ),
            flush=True,
        )
    emit("ingest", {"duration_s": duration, "rounds": rounds, "rows": rows})


if __name__ == "__main__":
    stop_on_signals()
    main()
