"""The SDK floor for ``end_to_end.py``: what openai-agents and the openai client alone allow.

WORKERS tasks take INCIDENTS prompts from a queue and each runs a bare ``Runner.run`` (one
agent, no tools, no guardrails, no validators, no sinks, no state) against the fake model:
the same SDK, client and model answers as the daemon, with nothing of the daemon around them.
The prompt is the daemon's own, rendered once from the benchmark card's template for the
single-alert fixture, so the requests are the same size.

    python benchmarks/_sdk_floor.py MODEL_URL INCIDENTS WORKERS

Prints ``RESULT {"elapsed_s": ..., "runs": ..., "run_mean_s": ...}``: from the first run
started to the last finished, and the mean time of one ``Runner.run``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, set_tracing_disabled
from openai import AsyncOpenAI

from benchmarks._common import MATCH_ALL_CARD, SINGLE
from mcp_sentinel.models import IncidentCard, WebhookPayload
from mcp_sentinel.prompts import PromptRenderer, PromptRepository
from tests.helpers import write_config


def rendered_prompt() -> tuple[str, str]:
    """The benchmark card's instructions and alert data for the single-alert fixture."""
    with tempfile.TemporaryDirectory(prefix="sentinel-sdk-floor-") as tmp:
        settings = write_config(Path(tmp), overrides={"incident_cards": [MATCH_ALL_CARD]})
        card: IncidentCard = settings.incident_cards[0]
        notification = WebhookPayload.model_validate_json(SINGLE.read_bytes()).notifications()[0]
        prompt = PromptRenderer(PromptRepository(settings.base_dir)).render(card, notification)
    return prompt.instructions, prompt.alert_data


async def main() -> None:
    model_url, incidents, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    instructions, alert_data = rendered_prompt()
    set_tracing_disabled(True)
    client = AsyncOpenAI(api_key="sentinel-no-key", base_url=model_url, max_retries=0)
    model = OpenAIChatCompletionsModel(model="bench", openai_client=client)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(incidents):
        queue.put_nowait(index)
    run_config = RunConfig(tracing_disabled=True)
    durations: list[float] = []

    async def work() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            agent = Agent(name=f"bench-{index}", instructions=instructions, model=model)
            began = time.monotonic()
            await Runner.run(agent, alert_data, max_turns=10, run_config=run_config)
            durations.append(time.monotonic() - began)

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(work())
    elapsed = time.monotonic() - started
    await client.close()
    result = {"elapsed_s": elapsed, "runs": incidents, "run_mean_s": statistics.fmean(durations)}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
