"""The real daemon (``Sentinel``) for the benchmarks, in its own process.

Writes a config with one card that matches every alert, starts ``Sentinel`` on port 0, prints
``URL <base url>`` on stdout when ready, answers ``stats`` lines on stdin with one JSON line
(dedupe entries, queue depth, VmHWM; the state database's commits, and of them those fsynced, with
the sqlite backend), and stops (draining nothing) on SIGTERM or stdin EOF.
Without ``--model-url`` it serves its own fake model whose every answer waits ``--model-delay``
seconds, so one held worker leaves the queue as the only consumer of intake.
Log lines go to stderr at INFO, as in production (the caller sends them to a file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from benchmarks._common import MATCH_ALL_CARD, proc_status
from mcp_sentinel.app import Sentinel
from tests.fakes.openai_server import Delay, FakeOpenAI, FinalJSON
from tests.helpers import FINDING, write_config


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--backend", choices=("memory", "sqlite", "redis"), default="sqlite")
    parser.add_argument("--redis-url", help="with --backend redis")
    parser.add_argument("--queue-size", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ttl", type=float, default=3600)
    parser.add_argument("--model-url")
    parser.add_argument("--model-delay", type=float, default=3600)
    parser.add_argument("--runs-per-minute", type=float, default=30, help="the rate limiter's")
    args = parser.parse_args()

    async with contextlib.AsyncExitStack() as stack:
        model_url = args.model_url
        if model_url is None:
            steps = [Delay(args.model_delay, FinalJSON(FINDING))] * (args.workers * 4)
            model_url = (await stack.enter_async_context(FakeOpenAI(steps))).base_url
        settings = write_config(
            args.dir,
            model_url=model_url,
            overrides={
                "dispatcher": {
                    "backend": args.backend,
                    "queue_size": args.queue_size,
                    "worker_concurrency": args.workers,
                    "dedupe_ttl_seconds": args.ttl,
                    "drain_timeout_seconds": 0,
                    **({"redis_url": args.redis_url} if args.backend == "redis" else {}),
                },
                "incident_cards": [MATCH_ALL_CARD],
                "validators": {"rate_limiter": {"runs_per_minute": args.runs_per_minute}},
            },
        )
        console = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
        sentinel = await stack.enter_async_context(
            Sentinel(settings, registry=CollectorRegistry(), console_stream=console)
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        # Steady state only: the agent loads in the background after intake is up.
        assert sentinel.investigator is not None
        await sentinel.investigator.wait_loaded()
        print(f"URL {sentinel.url}", flush=True)

        async def commands() -> None:
            while line := await reader.readline():
                if line.strip() == b"stats":
                    dispatcher = sentinel.dispatcher
                    assert dispatcher is not None
                    stats = {
                        "dedupe_entries": dispatcher.dedupe_entries,
                        "queue_depth": dispatcher.queue.depth(),
                        "vmhwm_kb": proc_status(os.getpid(), "VmHWM"),
                        "vmrss_kb": proc_status(os.getpid(), "VmRSS"),
                    }
                    # The state database's commits so far, and of them those fsynced.
                    database = getattr(dispatcher.queue, "database", None)
                    if database is not None:
                        stats["commits"] = database.commits
                        stats["durable_commits"] = database.durable_commits
                    print(json.dumps(stats), flush=True)
            stop.set()

        task = asyncio.create_task(commands())
        await stop.wait()
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
