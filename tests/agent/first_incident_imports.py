"""Run by ``test_first_incident_imports.py`` in a fresh interpreter: start ``Sentinel`` against a
fake model, wait until the agent is loaded, then send one alert and print, as one JSON line, the
modules imported between the agent being ready and that incident's audit record.

    python -m tests.agent.first_incident_imports WORKDIR ALERT_BODY_FILE
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING, audit_records, wait_for, write_config


async def main(workdir: Path, body: bytes) -> None:
    async with FakeOpenAI([FinalJSON(FINDING)]) as model:
        settings = write_config(workdir, model_url=model.base_url)
        audit = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as app,
            aiohttp.ClientSession() as http,
        ):
            assert app.investigator is not None
            await app.investigator.wait_loaded()
            before = set(sys.modules)
            headers = {**AUTH, "Content-Type": "application/json"}
            async with http.post(
                f"{app.url}/webhook/alertmanager", data=body, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
            await wait_for(lambda: len(audit_records(audit)) == 1, what="the audit record")
            outcome = audit_records(audit)[0]["report"]["outcome"]
            print(json.dumps({"outcome": outcome, "imported": sorted(set(sys.modules) - before)}))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]).read_bytes()))
