"""Local resources failing: an audit log that cannot be written (its disk full, its directory
impossible) and a state database that cannot grow. Each is a clear error; while it lasts,
``/readyz`` answers 503 naming it and the webhook refuses alerts with 503 instead of accepting
what it could not keep. Nothing accepted before is dropped."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from mcp_sentinel.dispatcher.sqlite_queue import SqliteQueueBackend
from mcp_sentinel.errors import PermanentError
from tests.durability.support import state_rows
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.helpers import AUTH, FINDING, wait_for, write_config

FULL_DISK = Path("/dev/full")  # every write fails with ENOSPC


def alert(template: dict[str, Any], fingerprint: str, description: str = "") -> bytes:
    payload = json.loads(json.dumps(template))
    payload["alerts"][0]["fingerprint"] = fingerprint
    if description:
        payload["alerts"][0]["annotations"]["description"] = description
    return json.dumps(payload).encode()


async def readiness(http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
    async with http.get("/readyz") as r:
        return r.status, await r.json()


@pytest.mark.skipif(not FULL_DISK.exists(), reason="needs /dev/full to simulate a full disk")
async def test_a_full_audit_disk_turns_not_ready_and_refuses_alerts(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    template = fixture_json("webhook_firing_single_alert")
    async with FakeOpenAI([FinalJSON(FINDING)]) as model:
        settings = write_config(
            tmp_path,
            model_url=model.base_url,
            overrides={"sinks": {"audit": {"path": "/dev/full"}}},
        )
        database = settings.resolve(settings.dispatcher.sqlite_path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            assert (await readiness(http))[0] == 200
            async with http.post(
                "/webhook/alertmanager", data=alert(template, "disk-1"), headers=AUTH
            ) as r:
                assert r.status == 200  # accepted while the audit log still looked fine
            await wait_for(
                lambda: s.dispatcher is not None and not s.dispatcher.accepting,
                what="the audit failure to stop intake",
            )
            status, body = await readiness(http)
            assert status == 503
            assert "sink audit cannot deliver" in body["reason"]
            assert "cannot write the audit log /dev/full" in body["reason"]
            async with http.post(
                "/webhook/alertmanager", data=alert(template, "disk-2"), headers=AUTH
            ) as r:
                refused = await r.json()
                assert r.status == 503 and r.headers["Retry-After"]
            assert "audit" in refused["error"]
            # The first incident's audit record is not dropped: it waits in the outbox (the
            # console's row goes once its acknowledgement, which nobody waits for, commits).
            await wait_for(
                lambda: state_rows(database, "SELECT sink FROM outbox") == [("audit",)],
                what="only the audit delivery left in the outbox",
            )


async def test_an_audit_path_that_cannot_exist_stops_the_start_with_a_clear_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    settings = write_config(
        tmp_path, overrides={"sinks": {"audit": {"path": "a-file/audit.jsonl"}}}
    )
    with pytest.raises(PermanentError, match=r"cannot open the audit log .*a-file/audit\.jsonl"):
        async with Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()):
            pass


async def test_a_full_state_database_answers_503_until_it_can_write_again(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    template = fixture_json("webhook_firing_single_alert")
    async with FakeOpenAI([FinalJSON(FINDING), FinalJSON(FINDING)]) as model:
        settings = write_config(tmp_path, model_url=model.base_url)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            assert s.dispatcher is not None
            queue = s.dispatcher.queue
            assert isinstance(queue, SqliteQueueBackend)
            db = queue.database
            (pages,) = await db.read(lambda c: c.execute("PRAGMA page_count").fetchone())
            await db.read(lambda c: c.execute(f"PRAGMA max_page_count = {pages}").fetchone())

            big = alert(template, "full-1", description="x" * 300_000)
            async with http.post("/webhook/alertmanager", data=big, headers=AUTH) as r:
                assert r.status == 503, await r.text()
                assert "nothing of this payload was taken" in (await r.json())["error"]
            status, body = await readiness(http)
            assert status == 503 and "database or disk is full" in body["reason"]
            async with http.post(
                "/webhook/alertmanager", data=alert(template, "full-2"), headers=AUTH
            ) as r:
                assert r.status == 503  # refused while unhealthy, even a small one

            await db.read(lambda c: c.execute("PRAGMA max_page_count = 1073741823").fetchone())
            await wait_for(
                lambda: s.dispatcher is not None and s.dispatcher.accepting,
                what="the state database to recover",
            )
            assert (await readiness(http))[0] == 200
            async with http.post("/webhook/alertmanager", data=big, headers=AUTH) as r:
                assert r.status == 200  # Alertmanager's retry of the refused payload is taken
