"""End to end: incidents per second with a model of fixed latency L and C workers, against the
ideal C/L, and the queue wait p99 (from the audit records' ``queued_seconds``).

The daemon (``Sentinel``, sqlite backend, ``worker_concurrency`` C, rate limiter opened up)
runs in a subprocess pinned to core 0; this process (core 1) serves the fake model, whose every
answer waits L seconds, and posts all N incidents at once in 50-alert payloads. The rate is N
over the time from the first POST to the N-th finished agent run (its audit record, read from
the file: scraping ``/metrics`` that often would spend the daemon's core on the measurement).
In the same run, ``_sdk_floor.py`` runs bare ``Runner.run`` calls with the same C, L and N on
the same core: what the SDK and the openai client alone allow, the floor under the daemon.

    uv run python benchmarks/end_to_end.py [--incidents 400] [--latency 0.5] [--workers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from benchmarks._common import (
    daemon_stats,
    emit,
    percentile,
    process_cpu_seconds,
    start_daemon,
    stop_on_signals,
    stop_process,
    thread_cpu_seconds,
)
from benchmarks.storm import agent_runs, payloads
from tests.fakes.openai_server import Delay, FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING, audit_records


class LineCounter:
    """Counts the newline-ended lines of a file that only grows, reading only what was
    appended since the last call: the poll runs every few milliseconds on the loop that also
    serves the fake model, and re-reading the whole audit log (megabytes by the end) each
    time delayed the model's answers, which the figure then charged to the daemon."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._lines = 0

    def count(self) -> int:
        try:
            with self._path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        self._lines += chunk.count(b"\n")
        return self._lines


SDK_FLOOR = Path(__file__).resolve().parent / "_sdk_floor.py"


async def sdk_floor(incidents: int, workers: int, latency: float) -> tuple[float, float]:
    """Incidents per second of bare ``Runner.run`` calls (``_sdk_floor.py``, pinned to the
    daemon's core) against a fake model of the same latency, and one call's mean seconds."""
    steps = [Delay(latency, FinalJSON(FINDING))] * (incidents + 10)
    async with FakeOpenAI(steps) as model:
        proc = await asyncio.create_subprocess_exec(
            "taskset",
            "-c",
            "0",
            sys.executable,
            str(SDK_FLOOR),
            model.base_url,
            str(incidents),
            str(workers),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks/_sdk_floor.py failed (exit status {proc.returncode})")
    result = json.loads(out.decode().split("RESULT ", 1)[1])
    return float(result["runs"]) / float(result["elapsed_s"]), float(result["run_mean_s"])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--incidents", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.5, help="model latency L, seconds")
    parser.add_argument("--workers", type=int, default=8, help="worker_concurrency C")
    parser.add_argument("--quick", action="store_true", help="80 incidents")
    args = parser.parse_args()
    if args.quick:
        args.incidents = 80
    os.sched_setaffinity(0, {1})
    bodies = payloads(args.incidents, args.incidents, 50)
    ideal = args.workers / args.latency
    with tempfile.TemporaryDirectory(prefix="sentinel-e2e-") as tmp:
        steps = [Delay(args.latency, FinalJSON(FINDING))] * (args.incidents + 10)
        async with FakeOpenAI(steps) as model:
            proc, url = start_daemon(
                Path(tmp),
                backend="sqlite",
                model_url=model.base_url,
                queue_size=args.incidents * 2,
                workers=args.workers,
                core=0,
                runs_per_minute=1_000_000,
            )
            try:
                stats_before = daemon_stats(proc)
                cpu_before = process_cpu_seconds(proc.pid)
                loop_before = thread_cpu_seconds(proc.pid)[proc.pid]
                async with aiohttp.ClientSession(base_url=url) as http:
                    started = time.monotonic()
                    for body in bodies:
                        async with http.post("/webhook/alertmanager", data=body, headers=AUTH) as r:
                            assert r.status == 200, await r.text()
                    runs = 0.0
                    deadline = started + args.incidents / ideal * 3 + 60
                    lines = LineCounter(Path(tmp) / "audit.jsonl")
                    # Finished runs counted from the audit log (one record each, written when
                    # the run ends), read here: scraping /metrics every few ms would spend
                    # the daemon's own core on the measurement.
                    while runs < args.incidents and time.monotonic() < deadline:
                        runs = float(lines.count())
                        await asyncio.sleep(0.02)
                    elapsed = time.monotonic() - started
                    cpu = process_cpu_seconds(proc.pid) - cpu_before
                    loop_cpu = thread_cpu_seconds(proc.pid)[proc.pid] - loop_before
                    stats_after = daemon_stats(proc)
                    async with http.get("/metrics") as r:
                        runs_metric = agent_runs(await r.text())
            finally:
                stop_process(proc)
            records = [r for r in audit_records(Path(tmp) / "audit.jsonl") if "queued_seconds" in r]
            if not records:  # the report may be nested in the record
                records = [
                    r["report"]
                    for r in audit_records(Path(tmp) / "audit.jsonl")
                    if isinstance(r.get("report"), dict) and "queued_seconds" in r["report"]
                ]
            waits = [float(r["queued_seconds"]) for r in records]
            # What a run takes beyond the model's L: the SDK, the validators, the prompt, the
            # HTTP to the model, and waiting for the core the other runs share.
            overheads = [(float(r["duration_seconds"]) - args.latency) * 1000 for r in records]
    rate = runs / elapsed

    def per_incident(total: float) -> float | None:
        return total / runs if runs else None

    floor_rate, floor_run = await sdk_floor(args.incidents, args.workers, args.latency)
    row = {
        "incidents": args.incidents,
        "finished": runs,
        "agent_runs_metric": runs_metric,
        "latency_s": args.latency,
        "workers": args.workers,
        "elapsed_s": elapsed,
        "incidents_per_s": rate,
        "ideal_per_s": ideal,
        "ratio": rate / ideal,
        "sdk_floor_per_s": floor_rate,
        "sdk_floor_ratio": floor_rate / ideal,
        "vs_sdk_floor": rate / floor_rate,
        "sdk_floor_run_beyond_latency_mean_ms": (floor_run - args.latency) * 1000,
        "queue_wait_p50_s": percentile(waits, 50),
        "queue_wait_p99_s": percentile(waits, 99),
        "queue_wait_samples": len(waits),
        "run_beyond_latency_mean_ms": statistics.fmean(overheads) if overheads else None,
        "run_beyond_latency_p50_ms": percentile(overheads, 50) if overheads else None,
        # The daemon's CPU from the first POST to the last run's audit record, per incident
        # (intake included): all of it, and its event loop's share (the rest: the state
        # database's thread and checkpointer, the audit log's writes).
        "daemon_cpu_ms_per_incident": per_incident(cpu * 1000),
        "loop_cpu_ms_per_incident": per_incident(loop_cpu * 1000),
        # The state database's commits per incident (the intake's included), and of them
        # those fsynced: the others only write what the next start would mend anyway.
        "commits_per_incident": per_incident(stats_after["commits"] - stats_before["commits"]),
        "fsynced_commits_per_incident": per_incident(
            stats_after["durable_commits"] - stats_before["durable_commits"]
        ),
    }
    print(
        f"{runs:g}/{args.incidents} incidents in {elapsed:.2f} s: {rate:.2f}/s against "
        f"C/L = {args.workers}/{args.latency:g} s = {ideal:.2f}/s ({rate / ideal:.1%}); "
        f"queue wait p50 {row['queue_wait_p50_s']:.2f} s, p99 {row['queue_wait_p99_s']:.2f} s "
        f"({len(waits)} audit records)",
        flush=True,
    )
    print(
        f"the SDK alone (benchmarks/_sdk_floor.py, same C, L and N): {floor_rate:.2f}/s "
        f"({floor_rate / ideal:.1%} of C/L); the daemon reaches {rate / floor_rate:.1%} of it",
        flush=True,
    )
    if overheads:
        print(
            f"a run takes L + {row['run_beyond_latency_mean_ms']:.1f} ms on average "
            f"(median L + {row['run_beyond_latency_p50_ms']:.1f} ms); a bare Runner.run "
            f"L + {row['sdk_floor_run_beyond_latency_mean_ms']:.1f} ms",
            flush=True,
        )
    if runs:
        print(
            f"the daemon: {row['daemon_cpu_ms_per_incident']:.2f} ms of CPU per incident "
            f"({row['loop_cpu_ms_per_incident']:.2f} on its event loop); the state database "
            f"{row['commits_per_incident']:.2f} commits per incident, "
            f"{row['fsynced_commits_per_incident']:.2f} of them fsynced",
            flush=True,
        )
    emit("end_to_end", row)


if __name__ == "__main__":
    stop_on_signals()
    asyncio.run(main())
