"""Webhook intake throughput: the SQLite backend (fsync per payload) against the memory one.

Runs the whole daemon in this process on loopback, with one worker held by a model that never
answers, so what is measured is intake only: authenticate, parse, route, dedupe, commit
(sqlite) and answer 200. Client and daemon share one event loop, so the figures are a lower
bound and mostly good for comparing the two backends on one machine.

    uv run python benchmarks/webhook_throughput.py [--payloads 2000] [--alerts 1] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from loguru import logger
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp_sentinel.app import Sentinel
from tests.fakes.openai_server import Delay, FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING, write_config


def payload(index: int, alerts: int) -> bytes:
    items = [
        {
            "status": "firing",
            "labels": {"alertname": "Bench", "service": "checkout", "instance": f"i-{i}"},
            "annotations": {"summary": "benchmark alert"},
            "startsAt": "2026-11-22T03:33:20.362Z",
            "fingerprint": f"bench-{index:06d}-{i:03d}",
        }
        for i in range(alerts)
    ]
    body: dict[str, Any] = {
        "version": "4",
        "groupKey": f"bench-{index}",
        "status": "firing",
        "receiver": "bench",
        "alerts": items,
    }
    return json.dumps(body).encode()


async def measure(backend: str, payloads: int, alerts: int, clients: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as directory:
        async with FakeOpenAI([Delay(3600, FinalJSON(FINDING))] * 2) as model:
            settings = write_config(
                Path(directory),
                model_url=model.base_url,
                overrides={
                    "dispatcher": {
                        "backend": backend,
                        "queue_size": payloads * alerts + 10,
                        "worker_concurrency": 1,
                        "drain_timeout_seconds": 0,
                    }
                },
            )
            bodies = [payload(index, alerts) for index in range(payloads)]
            async with (
                Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
                aiohttp.ClientSession(base_url=s.url) as http,
            ):
                pending = iter(bodies)
                accepted = 0

                async def client() -> None:
                    nonlocal accepted
                    for body in pending:
                        async with http.post("/webhook/alertmanager", data=body, headers=AUTH) as r:
                            await r.read()
                            accepted += r.status == 200

                started = time.perf_counter()
                async with asyncio.TaskGroup() as group:
                    for _ in range(clients):
                        group.create_task(client())
                elapsed = time.perf_counter() - started
    return elapsed, accepted


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--payloads", type=int, default=2000)
    parser.add_argument("--alerts", type=int, default=1, help="alerts per payload")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    args = parser.parse_args()
    logger.remove()  # the daemon's log lines would dominate the run
    print(f"{args.payloads} payloads x {args.alerts} alert(s), {args.clients} clients")
    for backend in ("memory", "sqlite"):
        elapsed, accepted = await measure(backend, args.payloads, args.alerts, args.clients)
        print(
            f"{backend:>6}: {accepted / elapsed:8.0f} payloads/s  "
            f"{accepted * args.alerts / elapsed:8.0f} alerts/s  "
            f"({accepted}/{args.payloads} accepted in {elapsed:.2f}s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
