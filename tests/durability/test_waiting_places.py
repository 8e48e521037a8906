"""An incident of a stored webhook payload waits in the durable queue as its place only: a
worker's ``get`` makes it again from the stored body. What it makes, what a cancelled worker
leaves, a body damaged after intake, and a read that fails for a while."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.dispatcher.sqlite_queue import SqliteQueueBackend
from mcp_sentinel.models import Incident, PayloadOrigin
from tests.durability.support import parsed, state_rows
from tests.durability.test_sqlite_store import CARD, HeldHandler, dispatcher_over, stores
from tests.helpers import wait_for
from tests.sinks.support import captured_logs

FixtureBytes = Callable[[str], bytes]
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def queue_payload(queue: SqliteQueueBackend, body: bytes) -> list[Incident]:
    """The incidents of ``body``, queued as the webhook's dispatch queues them."""
    incidents = [
        Incident(notification, CARD, enqueued_monotonic=1000.0 + index, traceparent=TRACEPARENT)
        for index, notification in enumerate(parsed(body))
    ]
    origin = PayloadOrigin(body, list(range(len(incidents))))
    assert await queue.put_all(incidents, origin)
    return incidents


async def test_a_worker_gets_each_incident_of_a_payload_as_it_was_queued(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_50_alerts")
    async with stores(tmp_path / "state.db", capacity=100) as (_, _, queue):
        queued = await queue_payload(queue, body)
        taken = [await queue.get() for _ in queued]
    for before, after in zip(queued, taken, strict=True):
        assert after.incident_id == before.incident_id
        assert after.notification == before.notification
        # Made again from the body: the queue did not hold the dispatched one.
        assert after.notification is not before.notification
        assert after.card is CARD
        assert after.enqueued_monotonic == before.enqueued_monotonic
        assert after.traceparent == TRACEPARENT


async def test_a_worker_cancelled_while_it_reads_the_body_leaves_the_incident_its_turn(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    async with stores(tmp_path / "state.db") as (db, _, queue):
        queued = await queue_payload(queue, body)
        gate = threading.Event()
        # The database thread busy, so the worker's read of the body waits behind it.
        db.submit(lambda _: gate.wait(5), what="hold the database thread")
        worker = asyncio.create_task(queue.get())
        await wait_for(lambda: queue.depth() == 2, what="the worker reading")
        worker.cancel()
        gate.set()
        await asyncio.gather(worker, return_exceptions=True)
        assert worker.cancelled()
        assert queue.depth() == 3 and queue.in_progress() == 0
        again = [await queue.get() for _ in queued]
    assert [i.incident_id for i in again] == [i.incident_id for i in queued]


def _truncate_first_body(connection: sqlite3.Connection) -> None:
    connection.execute("UPDATE payloads SET body = substr(body, 1, 100) WHERE seq = 1")


async def test_a_body_damaged_after_intake_is_set_aside_and_the_next_incident_goes_on(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    path = tmp_path / "state.db"
    broken = fixture_bytes("webhook_firing_group_3_alerts")
    sound = fixture_bytes("webhook_firing_single_alert")
    with captured_logs() as logs:
        async with (
            stores(path) as (db, dedupe, queue),
            dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
        ):
            assert (await dispatcher.dispatch(parsed(broken), body=broken)).accepted
            assert (await dispatcher.dispatch(parsed(sound), body=sound)).accepted
            await db.transaction(_truncate_first_body, what="damage the first body")
            # The sound one is critical, so first; then the damaged ones are set aside and the
            # worker waits for more.
            taken = await queue.get()
            assert taken.notification.fingerprint == parsed(sound)[0].fingerprint
            waiting = asyncio.create_task(queue.get())
            await wait_for(lambda: sum(" kept in " in line for line in logs) == 3)
            assert not waiting.done()
            waiting.cancel()
            assert queue.depth() == 0 and queue.in_progress() == 1
            queue.task_done(taken)
            async with asyncio.timeout(5):
                await queue.join()  # the set-aside incidents are not held any more
    # The first names the reason; the payload's other two incidents are named without a
    # second read of the body.
    set_aside = [line for line in logs if "cannot be read" in line]
    assert len(set_aside) == 1, logs
    assert "its payload 1 is kept" in set_aside[0] and "as unreadable" in set_aside[0]
    others = [line for line in logs if "is in unreadable payload 1" in line]
    assert len(others) == 2, logs
    assert state_rows(path, "SELECT seq, state FROM payloads ORDER BY seq") == [
        (1, "unreadable"),
        (4, "finished"),  # its seq follows the first payload's three incidents
    ]
    with captured_logs() as logs:
        async with stores(path) as (_, _, queue):
            assert queue.depth() == 0
    assert "1 unreadable row(s) kept" in "".join(logs)


async def test_a_read_of_the_body_that_fails_is_tried_again_until_it_succeeds(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_single_alert")

    async def rename(db: SqliteDatabase, old: str, new: str) -> None:
        await db.transaction(
            lambda connection: connection.execute(f"ALTER TABLE {old} RENAME TO {new}"),
            what=f"rename {old}",
        )

    with captured_logs() as logs:
        async with stores(tmp_path / "state.db") as (db, _, queue):
            (queued,) = await queue_payload(queue, body)
            await rename(db, "payloads", "payloads_elsewhere")  # every read of it fails
            worker = asyncio.create_task(queue.get())
            await wait_for(lambda: any("cannot read the stored alert" in line for line in logs))
            assert not worker.done()
            await rename(db, "payloads_elsewhere", "payloads")
            async with asyncio.timeout(5):
                taken = await worker
    assert taken.incident_id == queued.incident_id
    assert taken.notification == queued.notification
    (line, *_) = [line for line in logs if "cannot read the stored alert" in line]
    assert queued.incident_id in line and "no such table: payloads" in line
