"""An alert storm through the real webhook: 100,000 alerts in 10 s, 95% repeats of 5,000
incidents, in 50-alert payloads (as Alertmanager groups them).

The daemon (``Sentinel``, sqlite backend by default, 16 workers) runs in a subprocess pinned to
core 0; this process, pinned to core 1, paces the payloads evenly over the storm (at most 64 in
flight, a 503 retried after its Retry-After like Alertmanager, at most 20 times) and serves the
fake model, which answers every request at once, so each agent run is one model request.
Reported: wall time, the daemon's peak RSS (VmHWM), 503s, other errors, agent runs started
(model requests, and ``sentinel_agent_runs_total``) against the distinct incidents, and the
dedupe entries held as the storm ends, once the TTL and one dedupe purge interval (the lesser
of 60 s and the TTL) have passed, and after one more alert.

    uv run python benchmarks/storm.py [--alerts 100000] [--incidents 5000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from benchmarks._common import (
    daemon_stats,
    emit,
    proc_status,
    start_daemon,
    stop_on_signals,
    stop_process,
)
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING

STARTS_AT = "2026-11-22T03:31:11.684Z"


def alert(incident: int) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": "StormProbe",
            "instance": f"host-{incident:05d}",
            "service": "bulk",
            "severity": "warning",
        },
        "annotations": {"summary": f"StormProbe on host-{incident:05d}"},
        "startsAt": STARTS_AT,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:19090/graph?g0.expr=storm",
        "fingerprint": f"{incident:016x}",
    }


def payloads(alerts: int, incidents: int, per_payload: int) -> list[bytes]:
    """``alerts`` alerts over ``incidents`` incidents (each one at least once), shuffled with a
    fixed seed, grouped ``per_payload`` to a body."""
    order = [index % incidents for index in range(alerts)]
    random.Random(42).shuffle(order)
    bodies = []
    for start in range(0, alerts, per_payload):
        group = order[start : start + per_payload]
        body = {
            "version": "4",
            "groupKey": f"storm-{start}",
            "status": "firing",
            "receiver": "sentinel",
            "groupLabels": {"alertname": "StormProbe"},
            "commonLabels": {"alertname": "StormProbe"},
            "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:19093",
            "truncatedAlerts": 0,
            "alerts": [alert(i) for i in group],
        }
        bodies.append(json.dumps(body).encode())
    return bodies


async def storm(url: str, bodies: list[bytes], seconds: float) -> dict[str, Any]:
    statuses: dict[int, int] = {}
    errors: list[str] = []
    in_flight = asyncio.Semaphore(64)
    interval = seconds / len(bodies)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as http:

        async def send(index: int, body: bytes) -> None:
            await asyncio.sleep(max(0.0, started + index * interval - loop.time()))
            for _ in range(20):  # bounded: Alertmanager too retries a 503
                async with in_flight:
                    try:
                        async with http.post(
                            "/webhook/alertmanager", data=body, headers=AUTH
                        ) as response:
                            await response.read()
                            status = response.status
                            retry = float(response.headers.get("Retry-After", "1"))
                    except aiohttp.ClientError as error:
                        errors.append(repr(error))
                        return
                statuses[status] = statuses.get(status, 0) + 1
                if status != 503:
                    return
                await asyncio.sleep(min(retry, 2.0))

        started = loop.time()
        timed_out = False
        try:
            async with asyncio.timeout(seconds * 3 + 30):
                await asyncio.gather(*(send(i, body) for i, body in enumerate(bodies)))
        except TimeoutError:
            timed_out = True  # reported: payloads still refused (503) when the bound ran out
        wall = loop.time() - started
    return {
        "wall_s": wall,
        "statuses": statuses,
        "client_errors": errors[:5],
        "timed_out": timed_out,
    }


async def metrics_text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        return await response.text()


def agent_runs(text: str) -> float:
    """``sentinel_agent_runs_total`` summed over its cards and outcomes."""
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("sentinel_agent_runs_total{")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--incidents", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--per-payload", type=int, default=50)
    parser.add_argument("--backend", choices=("memory", "sqlite"), default="sqlite")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--ttl", type=float, default=20, help="dedupe_ttl_seconds")
    parser.add_argument(
        "--runs-per-minute",
        type=float,
        default=1_000_000,
        help="validators.rate_limiter.runs_per_minute (its default, 30, paces runs over hours)",
    )
    parser.add_argument("--drain-timeout", type=float, default=300, help="bound on the wait")
    parser.add_argument("--quick", action="store_true", help="20,000 alerts, 1,000 incidents")
    args = parser.parse_args()
    if args.quick:
        args.alerts, args.incidents, args.seconds, args.ttl = 20_000, 1_000, 4, 10
    os.sched_setaffinity(0, {1})
    bodies = payloads(args.alerts, args.incidents, args.per_payload)
    with tempfile.TemporaryDirectory(prefix="sentinel-storm-") as tmp:
        async with FakeOpenAI([FinalJSON(FINDING)] * (args.incidents * 2)) as model:
            proc, url = start_daemon(
                Path(tmp),
                backend=args.backend,
                model_url=model.base_url,
                queue_size=max(10_000, args.incidents * 2),
                workers=args.workers,
                ttl=args.ttl,
                core=0,
                runs_per_minute=args.runs_per_minute,
            )
            try:
                startup_peak = proc_status(proc.pid, "VmHWM")
                resident_before = proc_status(proc.pid, "VmRSS")
                result = await storm(url, bodies, args.seconds)
                sent_at = time.monotonic()
                held_before = daemon_stats(proc)["dedupe_entries"]
                # Bounded wait for the investigations to finish.
                deadline = time.monotonic() + args.drain_timeout
                while time.monotonic() < deadline:
                    text = await metrics_text(url)
                    runs = agent_runs(text)
                    if len(model.requests) >= args.incidents and runs >= args.incidents:
                        break
                    if int(time.monotonic() - sent_at) % 5 == 0:
                        print(
                            f"  waiting: {len(model.requests)} model requests, {runs:g} runs",
                            file=sys.stderr,
                            flush=True,
                        )
                    await asyncio.sleep(0.25)
                drained_s = time.monotonic() - sent_at
                await asyncio.sleep(2)  # anything extra would show up now
                text = await metrics_text(url)
                model_requests = len(model.requests)
                runs_metric = agent_runs(text)
                peak_kb = proc_status(proc.pid, "VmHWM")
                # After the TTL and one purge interval, the daemon holds no expired entry.
                purged_by = args.ttl + min(60.0, args.ttl) + 1
                await asyncio.sleep(max(0.0, purged_by - (time.monotonic() - sent_at)))
                held_after_ttl = daemon_stats(proc)["dedupe_entries"]
                after = payloads(1, 1, 1)[0].replace(b'"0000000000000000"', b'"after-ttl"')
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(url + "/webhook/alertmanager", data=after, headers=AUTH) as r,
                ):
                    after_status = r.status
                held_after_next = daemon_stats(proc)["dedupe_entries"]
            finally:
                stop_process(proc)
    statuses = result["statuses"]
    other_errors = sum(n for code, n in statuses.items() if code not in (200, 503))
    row = {
        "backend": args.backend,
        "alerts": args.alerts,
        "incidents": args.incidents,
        "payloads": len(bodies),
        "target_seconds": args.seconds,
        "wall_s": result["wall_s"],
        "send_timed_out": result["timed_out"],
        "drained_after_s": drained_s,
        "startup_peak_rss_mb": startup_peak / 1024,
        "resident_before_storm_mb": resident_before / 1024,
        "peak_rss_mb": peak_kb / 1024,
        "s503": statuses.get(503, 0),
        "other_errors": other_errors + len(result["client_errors"]),
        "statuses": {str(k): v for k, v in statuses.items()},
        "model_requests": model_requests,
        "agent_runs_metric": runs_metric,
        "dedupe_ttl_s": args.ttl,
        "runs_per_minute": args.runs_per_minute,
        "dedupe_held_before_ttl": held_before,
        "dedupe_held_after_ttl": held_after_ttl,
        "dedupe_held_after_next_alert": held_after_next,
        "after_ttl_status": after_status,
    }
    print(
        f"{row['alerts']} alerts ({row['incidents']} incidents) in {row['wall_s']:.2f} s "
        f"(target {args.seconds:g} s), drained {row['drained_after_s']:.1f} s later; "
        f"peak RSS {row['peak_rss_mb']:.1f} MB (start-up peak {row['startup_peak_rss_mb']:.1f} MB, "
        f"{row['resident_before_storm_mb']:.1f} MB resident as the storm began); "
        f"statuses {row['statuses']}; agent runs {model_requests} model requests / "
        f"{runs_metric:g} metric for {args.incidents} incidents; dedupe entries "
        f"{held_before} as the storm ended, {held_after_ttl} after the TTL and a purge, "
        f"{held_after_next} after the next alert",
        flush=True,
    )
    emit("storm", row)


if __name__ == "__main__":
    stop_on_signals()
    asyncio.run(main())
