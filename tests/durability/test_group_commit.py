"""Group commit: payloads that arrive while a commit is under way share the next one, a write
that fails is rolled back alone, and an alert whose write failed is never called a duplicate."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase, StorageError
from mcp_sentinel.models import DispatchOutcome, IncidentNotification
from tests.durability.support import parsed, state_rows
from tests.durability.test_sqlite_store import HeldHandler, dispatcher_over, stores
from tests.helpers import wait_for

Notifications = Callable[[str], list[IncidentNotification]]


def numbered(notification: IncidentNotification, count: int) -> list[IncidentNotification]:
    return [
        replace(notification, fingerprint=f"{notification.fingerprint}-{n}") for n in range(count)
    ]


async def test_payloads_arriving_during_a_commit_share_the_next_one(
    tmp_path: Path, notifications: Notifications
) -> None:
    (single,) = notifications("webhook_firing_single_alert")
    async with (
        stores(tmp_path / "state.db", capacity=100) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        before = db.commits
        results = await asyncio.gather(
            *(dispatcher.dispatch([alert]) for alert in numbered(single, 20))
        )
        assert [r.count(DispatchOutcome.QUEUED) for r in results] == [1] * 20
        # The first payload commits alone; the 19 that came meanwhile share the next commit.
        assert db.commits - before <= 2, db.commits - before
        assert state_rows(db.path, "SELECT count(*) FROM incidents") == [(20,)]
        assert state_rows(db.path, "SELECT count(*) FROM dedupe") == [(20,)]


async def test_a_failing_write_in_a_group_is_rolled_back_alone(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "state.db") as db:
        await db.transaction(
            lambda c: c.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)"),
            what="create",
        )

        def note(text: str, *, then_fail: bool = False) -> Callable[[sqlite3.Connection], str]:
            def write(connection: sqlite3.Connection) -> str:
                connection.execute("INSERT INTO notes (text) VALUES (?)", (text,))
                if then_fail:  # after a write of its own, which must not survive
                    connection.execute("INSERT INTO notes (id, text) VALUES (1, 'clash')")
                return text

            return write

        before = db.commits
        first, second, third = await asyncio.gather(
            db.transaction(note("first"), what="first"),
            db.transaction(note("second", then_fail=True), what="second"),
            db.transaction(note("third"), what="third"),
            return_exceptions=True,
        )
        assert first == "first" and third == "third"
        assert isinstance(second, StorageError)
        assert "(second)" in str(second) and "UNIQUE constraint failed" in str(second)
        assert db.commits - before == 2  # "first" alone, then "second" and "third" together
        texts = await db.read(lambda c: [r[0] for r in c.execute("SELECT text FROM notes")])
        assert sorted(texts) == ["first", "third"]


async def test_the_same_new_alert_in_two_concurrent_payloads_is_queued_once(
    tmp_path: Path, notifications: Notifications
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    handler = HeldHandler()
    async with (
        stores(tmp_path / "state.db") as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, handler) as dispatcher,
    ):
        first, second = await asyncio.gather(
            dispatcher.dispatch(alerts), dispatcher.dispatch(alerts[1:])
        )
        assert first.count(DispatchOutcome.QUEUED) == 3
        assert second.count(DispatchOutcome.DUPLICATE) == 2
        assert state_rows(db.path, "SELECT count(*) FROM incidents") == [(3,)]
        handler.release.set()


async def test_an_alert_whose_write_failed_is_refused_to_the_waiting_payload_not_deduped(
    tmp_path: Path, notifications: Notifications
) -> None:
    """Payload A (two alerts) fails to commit; payload B holds one of A's alerts and waited on
    A's write. B must not be told "duplicate" (it would be lost): it is refused (503), and its
    retry is queued once the database is writable."""
    alerts = notifications("webhook_firing_group_3_alerts")
    shared, poisoned = alerts[0], alerts[1]
    handler = HeldHandler()
    async with (
        stores(tmp_path / "state.db") as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, handler) as dispatcher,
    ):
        # The database refuses any payload holding the poisoned alert, as a full disk would.
        await db.transaction(
            lambda c: c.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON incidents "
                f"WHEN NEW.notification LIKE '%{poisoned.fingerprint}%' "
                "BEGIN SELECT RAISE(ABORT, 'disk refused the write'); END"
            ),
            what="install the fault",
        )
        a, b = await asyncio.gather(
            dispatcher.dispatch([shared, poisoned]), dispatcher.dispatch([shared])
        )
        assert a.count(DispatchOutcome.REJECTED) == 2
        assert b.count(DispatchOutcome.REJECTED) == 1, b
        assert state_rows(db.path, "SELECT count(*) FROM incidents") == [(0,)]
        await wait_for(lambda: db.problem is None, what="the health probe to clear the problem")
        retry = await dispatcher.dispatch([shared])
        assert retry.count(DispatchOutcome.QUEUED) == 1
        handler.release.set()


def numbered_bodies(template: Any, count: int) -> list[bytes]:
    """``count`` copies of a webhook payload, each with fingerprints of its own."""
    bodies = []
    for n in range(count):
        payload = json.loads(json.dumps(template))
        for alert in payload["alerts"]:
            alert["fingerprint"] = f"{alert['fingerprint']}-{n}"
        bodies.append(json.dumps(payload).encode())
    return bodies


async def test_webhook_payloads_arriving_during_a_commit_share_the_next_one_a_row_each(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    bodies = numbered_bodies(fixture_json("webhook_firing_group_3_alerts"), 20)
    async with (
        stores(tmp_path / "state.db", capacity=100) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        before = db.commits
        results = await asyncio.gather(
            *(dispatcher.dispatch(parsed(body), body=body) for body in bodies)
        )
        assert [r.count(DispatchOutcome.QUEUED) for r in results] == [3] * 20
        assert db.commits - before <= 2, db.commits - before
        stored = state_rows(db.path, "SELECT seq, body FROM payloads ORDER BY seq")
        assert sorted(body for _, body in stored) == sorted(bodies)
        # Each payload's incidents take the seqs after its row's.
        assert [seq for seq, _ in stored] == list(range(1, 61, 3))
        assert state_rows(db.path, "SELECT count(*) FROM incidents") == [(0,)]
        assert state_rows(db.path, "SELECT count(*) FROM dedupe") == [(0,)]


async def test_a_payload_whose_row_failed_is_refused_to_the_one_waiting_on_it_not_deduped(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    """As above, with bodies: payload A's row cannot be written; payload B carries one of A's
    alerts and waited on A's write. B is refused, not called a duplicate, and its retry is
    queued once the database is writable."""
    group = fixture_bytes("webhook_firing_group_3_alerts")
    (shared, _, _) = parsed(group)
    single = json.loads(group)
    single["alerts"] = single["alerts"][:1]
    alone = json.dumps(single).encode()
    handler = HeldHandler()
    async with (
        stores(tmp_path / "state.db") as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, handler) as dispatcher,
    ):
        await db.transaction(
            lambda c: c.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON payloads WHEN NEW.incident_count = 3 "
                "BEGIN SELECT RAISE(ABORT, 'disk refused the write'); END"
            ),
            what="install the fault",
        )
        a, b = await asyncio.gather(
            dispatcher.dispatch(parsed(group), body=group),
            dispatcher.dispatch(parsed(alone), body=alone),
        )
        assert a.count(DispatchOutcome.REJECTED) == 3
        assert b.count(DispatchOutcome.REJECTED) == 1, b
        assert not dedupe.seen(shared.dedupe_key)
        assert state_rows(db.path, "SELECT count(*) FROM payloads") == [(0,)]
        await wait_for(lambda: db.problem is None, what="the health probe to clear the problem")
        retry = await dispatcher.dispatch(parsed(alone), body=alone)
        assert retry.count(DispatchOutcome.QUEUED) == 1
        handler.release.set()
