"""Which commits wait for the disk: a write whose loss in a crash of the machine the next start
mends (claims, releases, a finished payload's tidying) or a sink already expects (delivery
acknowledgements) is committed without an fsync, unless it shares its group with a write that
needs one; an investigated incident then costs one fsync, the outbox's."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.dispatcher.sqlite_queue import SqliteQueueBackend
from mcp_sentinel.models import Incident, Outcome
from mcp_sentinel.sinks.base import IncidentRecord
from mcp_sentinel.sinks.outbox import SqliteOutbox
from tests.durability.support import parsed, state_rows
from tests.durability.test_sqlite_store import HeldHandler, dispatcher_over, stores
from tests.helpers import FINDING, wait_for
from tests.sinks.support import report_for

FixtureBytes = Callable[[str], bytes]

FULL, NORMAL = 2, 1  # what ``PRAGMA synchronous`` answers


@asynccontextmanager
async def queued_payload(
    path: Path, body: bytes
) -> AsyncIterator[tuple[SqliteDatabase, SqliteQueueBackend]]:
    """The stores on ``path``, with ``body``'s alerts queued as one payload."""
    async with (
        stores(path) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch(parsed(body), body=body)).accepted
        yield db, queue


async def assert_done_after_a_restart(path: Path, incident: Incident, waiting: int) -> None:
    """After a restart ``waiting`` incidents wait, and ``incident`` is not one of them."""
    async with stores(path) as (_, _, queue):
        assert queue.depth() == waiting
        rest = [await queue.get() for _ in range(waiting)]
    assert incident.incident_id not in {i.incident_id for i in rest}


async def test_a_group_of_unsynced_writes_commits_without_an_fsync(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "state.db") as db:
        await db.transaction(
            lambda c: c.execute("CREATE TABLE notes (name TEXT, level INTEGER)"), what="create"
        )

        def note(name: str) -> Callable[[sqlite3.Connection], None]:
            """A write that stores the connection's setting in force while it runs."""

            def write(connection: sqlite3.Connection) -> None:
                level = connection.execute("PRAGMA synchronous").fetchone()[0]
                connection.execute("INSERT INTO notes VALUES (?, ?)", (name, level))

            return write

        # After an awaited transaction nothing is being written: the next write goes alone,
        # and what is submitted while it commits shares the group after it.
        commits, durable = db.commits, db.durable_commits
        db.submit(note("durable by default, alone"), what="default")
        db.submit(note("unsynced beside a durable one"), what="beside", durable=False)
        await db.transaction(note("durable"), what="durable")
        db.submit(note("unsynced, alone"), what="alone", durable=False)
        db.submit(note("unsynced, grouped"), what="grouped", durable=False)
        db.submit(note("unsynced, grouped too"), what="grouped too", durable=False)
        await wait_for(lambda: db.commits - commits == 4, what="four commits")
        assert db.durable_commits - durable == 2

        levels = await db.read(lambda c: dict(c.execute("SELECT name, level FROM notes")))
    assert levels == {
        "durable by default, alone": FULL,
        "unsynced beside a durable one": FULL,  # its group holds a durable write
        "durable": FULL,
        "unsynced, alone": NORMAL,
        "unsynced, grouped": NORMAL,
        "unsynced, grouped too": NORMAL,
    }
    # Committed all the same: there after the database is closed and opened again.
    assert len(state_rows(tmp_path / "state.db", "SELECT name FROM notes")) == 6


async def test_an_investigated_incident_costs_one_fsync_the_outboxs(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    async with queued_payload(path, body) as (db, queue):
        outbox = SqliteOutbox(db, queue=queue)
        for n in range(3):
            durable = db.durable_commits
            incident = await queue.get()  # its claim: not fsynced
            record = IncidentRecord(
                incident, None, report_for(incident, Outcome.COMPLETED, FINDING)
            )
            added = await outbox.add(record, ["console", "audit"])  # fsynced: completes it
            for entry_id in added.values():
                outbox.acknowledge(entry_id)  # not fsynced: lost, it is a repeat
            await db.transaction(lambda c: None, what="a barrier")  # what is ahead is written
            commits = db.commits
            queue.task_done(incident)
            await db.transaction(lambda c: None, what="a barrier")
            # Nothing for the first two (the outbox completed them); the last one's finish,
            # not fsynced (the next start would finish the payload again).
            assert db.commits - commits - 1 == (0 if n < 2 else 1)
            assert db.durable_commits - durable == 1 + 2  # the outbox's, and the two barriers
        assert state_rows(path, "SELECT state FROM payloads") == [("finished",)]
        assert state_rows(path, "SELECT count(*) FROM payload_incidents") == [(0,)]
        assert state_rows(path, "SELECT count(*) FROM outbox") == [(0,)]

    async with stores(path) as (db, _, queue):
        assert queue.depth() == 0
        assert await SqliteOutbox(db, queue=queue).pending() == []


async def test_an_incident_no_outbox_completed_is_completed_with_an_fsync(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    async with queued_payload(path, body) as (db, queue):
        incident = await queue.get()
        await db.transaction(lambda c: None, what="after the claim")
        durable = db.durable_commits
        queue.task_done(incident)  # its done mark is the only record that it is done
        await wait_for(lambda: db.durable_commits - durable == 1)
    assert state_rows(path, "SELECT position, state FROM payload_incidents") == [(0, "done")]

    await assert_done_after_a_restart(path, incident, waiting=2)


async def test_an_incident_released_after_its_outbox_commit_stays_done(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    async with queued_payload(path, body) as (db, queue):
        incident = await queue.get()
        record = IncidentRecord(incident, None, report_for(incident, Outcome.COMPLETED, FINDING))
        await SqliteOutbox(db, queue=queue).add(record, ["console"])
        queue.release(incident)  # a shutdown that stopped the worker after the commit
    await assert_done_after_a_restart(path, incident, waiting=2)
