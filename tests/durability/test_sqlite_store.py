"""The SQLite queue and dedupe store behind the dispatcher: one transaction per payload, what a
restart resumes and what it never repeats, cards that disappeared, and a full disk."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mcp_sentinel.dispatcher.codec import key_to_row, notification_from_json, notification_to_json
from mcp_sentinel.dispatcher.dispatcher import Dispatcher
from mcp_sentinel.dispatcher.routing import CardRouter
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase, StorageError
from mcp_sentinel.dispatcher.sqlite_dedupe import SqliteDedupeStore
from mcp_sentinel.dispatcher.sqlite_queue import SqliteQueueBackend
from mcp_sentinel.models import (
    DispatchOutcome,
    Incident,
    IncidentCard,
    IncidentNotification,
    WebhookPayload,
)
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from tests.durability.support import state_rows
from tests.helpers import wait_for
from tests.sinks.support import captured_logs

Notifications = Callable[[str], list[IncidentNotification]]
CARD = IncidentCard(resource="Checkout", match=('service=~".+"',), prompt="p.md.j2")
OTHER = IncidentCard(resource="Fallback", match=('team="none"',), prompt="p.md.j2")


class HeldHandler:
    """Implements ``IncidentHandler``: records what it was given; holds until ``release``."""

    def __init__(self) -> None:
        self.taken: list[Incident] = []
        self.release = asyncio.Event()

    async def handle(self, incident: Incident, release_slot: Callable[[], None]) -> None:
        self.taken.append(incident)
        await self.release.wait()


@asynccontextmanager
async def stores(
    path: Path,
    *,
    capacity: int = 10,
    cards: tuple[IncidentCard, ...] = (CARD,),
    default: IncidentCard | None = None,
    ttl: float = 3600,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[tuple[SqliteDatabase, SqliteDedupeStore, SqliteQueueBackend]]:
    """An opened database with its dedupe store and queue, recovered as the app does it."""
    async with SqliteDatabase(path, probe_interval=0.05) as db:
        extra = {} if clock is None else {"clock": clock}
        dedupe = SqliteDedupeStore(db, ttl, **extra)
        await dedupe.open()
        queue = SqliteQueueBackend(
            db, capacity=capacity, cards=cards, default_card=default, dedupe=dedupe, **extra
        )
        await queue.open()
        yield db, dedupe, queue


@asynccontextmanager
async def dispatcher_over(
    db: SqliteDatabase,
    dedupe: SqliteDedupeStore,
    queue: SqliteQueueBackend,
    handler: HeldHandler,
    *,
    workers: int = 1,
) -> AsyncIterator[Dispatcher]:
    """A dispatcher on the stores. Tests that count commits pass ``workers=0``: a worker's
    claim of an incident is a commit of its own, at a moment the test does not control."""
    async with Dispatcher(
        router=CardRouter([CARD]),
        dedupe=dedupe,
        queue=queue,
        handler=handler,
        metrics=SentinelMetrics(CollectorRegistry()),
        worker_concurrency=workers,
        drain_timeout=0,
        health=(lambda: db.problem,),
    ) as dispatcher:
        yield dispatcher


async def test_a_payload_is_one_transaction_for_its_incidents_and_its_dedupe_keys(
    tmp_path: Path, notifications: Notifications
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    async with (
        stores(tmp_path / "state.db") as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        before = db.commits
        result = await dispatcher.dispatch(alerts)
        assert result.count(DispatchOutcome.QUEUED) == 3
        assert db.commits == before + 1  # the incidents and their keys: one commit
        assert state_rows(db.path, "SELECT count(*) FROM dedupe") == [(3,)]
        assert state_rows(db.path, "SELECT count(*) FROM incidents") == [(3,)]

        before = db.commits
        repeat = await dispatcher.dispatch(alerts)
        assert repeat.count(DispatchOutcome.DUPLICATE) == 3 and db.commits == before


async def test_a_refused_payload_leaves_neither_rows_nor_keys(
    tmp_path: Path, notifications: Notifications
) -> None:
    (single,) = notifications("webhook_firing_single_alert")
    group = notifications("webhook_firing_group_3_alerts")
    handler = HeldHandler()
    async with (
        stores(tmp_path / "state.db", capacity=2) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, handler) as dispatcher,
    ):
        assert (await dispatcher.dispatch([single])).accepted
        await wait_for(lambda: bool(handler.taken), what="the worker to take it")
        refused = await dispatcher.dispatch(group)  # 3 do not fit in 2
        assert not refused.accepted
        assert len(dedupe) == 1 and queue.depth() == 0
        assert state_rows(db.path, "SELECT count(*) FROM dedupe") == [(1,)]
        assert state_rows(db.path, "SELECT count(*) FROM incidents") == [(1,)]
        handler.release.set()


async def test_a_restart_resumes_what_was_cut_off_and_never_repeats_what_finished(
    tmp_path: Path, notifications: Notifications
) -> None:
    group = notifications("webhook_firing_group_3_alerts")
    alerts = [
        replace(group[0], labels={**group[0].labels, "severity": "info"}),
        replace(group[1], labels={**group[1].labels, "severity": "warning"}),
        replace(group[2], labels={**group[2].labels, "severity": "critical"}),
    ]
    incidents = [Incident(alert, CARD) for alert in alerts]
    path = tmp_path / "state.db"
    async with stores(path) as (_, _, queue):
        assert await queue.put_all(incidents)
        finished = await queue.get()  # critical first
        queue.task_done(finished)
        cut_off = await queue.get()  # claimed, then the process "dies"
        assert state_rows(path, "SELECT count(*) FROM incidents WHERE state = 'claimed'")
    async with stores(path) as (_, dedupe, queue):
        assert queue.depth() == 2
        first, second = await queue.get(), await queue.get()
    assert finished.notification.severity == "critical"
    assert (first.incident_id, first.notification) == (cut_off.incident_id, cut_off.notification)
    assert second.notification.severity == "info"
    assert first.card is CARD and second.card is CARD  # the configured card object
    assert all(dedupe.seen(alert.dedupe_key) for alert in alerts)


async def test_a_card_gone_from_the_config_goes_to_the_default_card_or_is_logged_unrouted(
    tmp_path: Path, notifications: Notifications
) -> None:
    single, other, third = notifications("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    gone = IncidentCard(resource="Retired", prompt="p.md.j2")
    async with stores(path, cards=(CARD, gone)) as (_, _, queue):
        assert await queue.put_all([Incident(single, gone), Incident(other, gone)])
        assert await queue.put_all([Incident(third, CARD)])
    connection = sqlite3.connect(path)
    with connection:  # a row this version cannot read
        connection.execute(
            "INSERT INTO incidents (incident_id, priority, card, notification, state, "
            "enqueued_at) VALUES ('broken', 2, 'Checkout', '{not json', 'queued', 0)"
        )
    connection.close()

    with captured_logs() as logs:
        async with stores(path, cards=(CARD, OTHER), default=OTHER) as (_, _, queue):
            taken = [await queue.get() for _ in range(3)]
    assert sorted(i.card.resource for i in taken) == ["Checkout", "Fallback", "Fallback"]
    assert any("Retired, which is no longer configured" in line for line in logs)
    assert any("queued incident broken cannot be read" in line for line in logs)
    assert state_rows(path, "SELECT state FROM incidents WHERE incident_id = 'broken'") == [
        ("unreadable",)
    ]

    # Without a default card they are reported unrouted and not kept.
    async with stores(path, cards=(CARD, gone)) as (_, _, queue):
        for incident in [await queue.get() for _ in range(3)]:
            queue.release(incident)  # back to queued: as if never taken
    with captured_logs() as logs:
        async with stores(path, cards=(CARD,)) as (_, _, queue):
            assert queue.depth() == 1
    unrouted = [line for line in logs if "unrouted alert" in line]
    assert len(unrouted) == 2 and all("card Retired" in line for line in unrouted)
    assert sorted(state_rows(path, "SELECT card, state FROM incidents")) == [
        ("Checkout", "queued"),
        ("Checkout", "unreadable"),
    ]


async def test_dedupe_keys_survive_a_restart_for_their_ttl(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    now = [1_000_000.0]
    path = tmp_path / "state.db"
    async with stores(path, ttl=60, clock=lambda: now[0]) as (_, dedupe, _):
        dedupe.remember_all([alert.dedupe_key])  # written by the database thread, not awaited
    async with stores(path, ttl=60, clock=lambda: now[0]) as (_, dedupe, _):
        assert dedupe.seen(alert.dedupe_key) and len(dedupe) == 1
    now[0] += 61
    async with stores(path, ttl=60, clock=lambda: now[0]) as (_, dedupe, _):
        assert not dedupe.seen(alert.dedupe_key) and len(dedupe) == 0
    assert state_rows(path, "SELECT count(*) FROM dedupe") == [(0,)]  # purged on open


async def test_a_full_disk_refuses_intake_with_a_clear_problem_then_recovers(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    big = replace(alert, annotations={"description": "x" * 200_000})
    handler = HeldHandler()
    handler.release.set()
    async with (
        stores(tmp_path / "state.db") as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, handler) as dispatcher,
    ):
        # The file may not grow past its current size: SQLite's own "disk is full".
        (pages,) = await db.read(lambda c: c.execute("PRAGMA page_count").fetchone())
        await db.read(lambda c: c.execute(f"PRAGMA max_page_count = {pages}").fetchone())
        refused = await dispatcher.dispatch([big])
        assert refused.outcomes == (DispatchOutcome.REJECTED,)
        assert not dispatcher.accepting
        problem = dispatcher.problem or ""
        assert "cannot write the state database" in problem and "full" in problem
        assert str(db.path) in problem
        assert len(dedupe) == 0 and queue.depth() == 0  # nothing half-taken
        # While unhealthy nothing is taken, not even what would fit.
        assert not (await dispatcher.dispatch([alert])).accepted

        await db.read(lambda c: c.execute("PRAGMA max_page_count = 1073741823").fetchone())
        await wait_for(lambda: dispatcher.accepting, what="the probe to clear the problem")
        assert (await dispatcher.dispatch([big])).count(DispatchOutcome.QUEUED) == 1


async def test_one_daemon_per_state_file(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "state.db"):
        with pytest.raises(StorageError, match="in use by another sentinel process"):
            async with SqliteDatabase(tmp_path / "state.db"):
                pass


async def test_a_close_cancelled_midway_still_lets_go_of_the_file(tmp_path: Path) -> None:
    """The task closing the database is cancelled while the close waits for its probe to
    stop: the cancellation reaches that task, and the database is closed all the same, so the
    file can be opened again in this process."""
    db = SqliteDatabase(tmp_path / "state.db")
    await db.__aenter__()
    await db.transaction(lambda c: c.execute("CREATE TABLE notes (text TEXT)"), what="create")
    closing = asyncio.create_task(db.__aexit__(None, None, None))
    await asyncio.sleep(0)  # the close has cancelled the probe and waits for its end
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    async with SqliteDatabase(tmp_path / "state.db") as again:
        tables = await again.read(lambda c: c.execute("SELECT name FROM sqlite_master").fetchall())
    assert ("notes",) in tables
    threads = [thread.name for thread in threading.enumerate()]
    assert not [name for name in threads if name.startswith("sentinel-sqlite")]


# The dedupe table as schema 1 created it (with its primary key), and one stored key.
_SCHEMA_1_DEDUPE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema', '1');
CREATE TABLE dedupe (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, starts_at, status)
) WITHOUT ROWID;
CREATE INDEX dedupe_by_expiry ON dedupe (expires_at);
"""


async def test_a_schema_1_file_is_migrated_and_keeps_its_dedupe_keys(
    tmp_path: Path, notifications: Notifications
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    path = tmp_path / "state.db"
    fingerprint, starts_at, status = alert.dedupe_key
    with sqlite3.connect(path) as connection:
        connection.executescript(_SCHEMA_1_DEDUPE)
        connection.execute(
            "INSERT INTO dedupe VALUES (?, ?, ?, ?)",
            (fingerprint, starts_at.isoformat(), status, 1_000_060.0),
        )
    connection.close()
    with captured_logs() as logs:
        async with stores(path, ttl=60, clock=lambda: 1_000_000.0) as (_, dedupe, _):
            assert dedupe.seen(alert.dedupe_key) and len(dedupe) == 1
    assert any("schema 1 migrated to 4" in line for line in logs)
    assert state_rows(path, "SELECT value FROM meta WHERE key = 'schema'") == [("4",)]
    # No primary key any more: the only index is the one by expiry.
    indexes = state_rows(path, "SELECT name FROM pragma_index_list('dedupe')")
    assert indexes == [("dedupe_by_expiry",)]


# The incidents table as schema 2 created it (AUTOINCREMENT, a unique index on the id).
_SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema', '2');
CREATE TABLE incidents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL UNIQUE,
    priority INTEGER NOT NULL,
    card TEXT NOT NULL,
    notification TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'unreadable')),
    claimed_by TEXT,
    enqueued_at REAL NOT NULL
);
"""


async def test_a_schema_2_file_is_migrated_and_keeps_its_queue_in_order(
    tmp_path: Path, notifications: Notifications
) -> None:
    first, second, third = notifications("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(_SCHEMA_2)
        connection.executemany(
            "INSERT INTO incidents (incident_id, priority, card, notification, state, "
            "enqueued_at) VALUES (?, 2, 'Checkout', ?, ?, 0)",
            [
                ("one", notification_to_json(first), "claimed"),
                ("two", notification_to_json(second), "queued"),
                ("three", notification_to_json(third), "queued"),
            ],
        )
        connection.execute("DELETE FROM incidents WHERE incident_id = 'two'")
    connection.close()
    with captured_logs() as logs:
        async with stores(path) as (_, _, queue):
            taken = [await queue.get() for _ in range(2)]
            assert [i.incident_id for i in taken] == ["one", "three"]
            assert [i.notification for i in taken] == [first, third]
            queue.task_done(taken[0])
            assert await queue.put_all([Incident(second, CARD)])
    assert any("schema 2 migrated to 4" in line for line in logs)
    assert state_rows(path, "SELECT value FROM meta WHERE key = 'schema'") == [("4",)]
    assert state_rows(path, "SELECT name FROM pragma_index_list('incidents')") == []
    ((table,),) = state_rows(path, "SELECT sql FROM sqlite_master WHERE name = 'incidents'")
    assert "AUTOINCREMENT" not in table
    # The new row comes after the ones the earlier process left; the finished one is gone.
    assert state_rows(path, "SELECT seq, incident_id FROM incidents ORDER BY seq")[0] == (
        3,
        "three",
    )
    assert state_rows(path, "SELECT seq FROM incidents ORDER BY seq") == [(3,), (4,)]


# The state file as schema 3 created it: incidents and dedupe keys a row each, no payloads.
_SCHEMA_3 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema', '3');
CREATE TABLE incidents (
    seq INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    card TEXT NOT NULL,
    notification TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'unreadable')),
    claimed_by TEXT,
    enqueued_at REAL NOT NULL
);
CREATE TABLE dedupe (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX dedupe_by_expiry ON dedupe (expires_at);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL,
    record TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX outbox_by_sink ON outbox (sink, id);
"""


async def test_a_schema_3_file_is_migrated_and_its_rows_still_load(
    tmp_path: Path, notifications: Notifications, fixture_bytes: Callable[[str], bytes]
) -> None:
    first, second, third = notifications("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(_SCHEMA_3)
        connection.executemany(
            "INSERT INTO incidents (seq, incident_id, priority, card, notification, state, "
            "enqueued_at) VALUES (?, ?, 2, 'Checkout', ?, ?, 0)",
            [
                (7, "one", notification_to_json(first), "claimed"),
                (9, "two", notification_to_json(second), "queued"),
            ],
        )
        connection.executemany(
            "INSERT INTO dedupe VALUES (?, ?, ?, 1000060.0)",
            [key_to_row(n.dedupe_key) for n in (first, second, third)],
        )
    connection.close()
    body = fixture_bytes("webhook_firing_single_alert")
    with captured_logs() as logs:
        async with (
            stores(path, ttl=60, clock=lambda: 1_000_000.0) as (db, dedupe, queue),
            dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
        ):
            assert all(dedupe.seen(n.dedupe_key) for n in (first, second, third))
            taken = [await queue.get() for _ in range(2)]
            assert [(i.incident_id, i.notification) for i in taken] == [
                ("one", first),
                ("two", second),
            ]
            single = WebhookPayload.model_validate_json(body).notifications()
            assert (await dispatcher.dispatch(single, body=body)).accepted
    assert any("schema 3 migrated to 4" in line for line in logs)
    assert state_rows(path, "SELECT value FROM meta WHERE key = 'schema'") == [("4",)]
    # The payload after the migration is a row of the new table, after the old rows' seqs.
    assert state_rows(path, "SELECT seq, incident_count FROM payloads") == [(10, 1)]
    assert state_rows(path, "SELECT seq FROM incidents ORDER BY seq") == [(7,), (9,)]


async def test_an_incident_from_a_poller_keeps_a_row_of_its_own(
    tmp_path: Path, notifications: Notifications
) -> None:
    """Without a body (the pollers, replay) an incident is a row of ``incidents`` with its
    notification, and its dedupe key a row of ``dedupe``, as before payloads were stored."""
    (alert,) = notifications("webhook_firing_single_alert")
    polled = replace(alert, source="alertmanager")
    path = tmp_path / "state.db"
    async with (
        stores(path) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch([polled])).count(DispatchOutcome.QUEUED) == 1
    ((incident_id, stored),) = state_rows(path, "SELECT incident_id, notification FROM incidents")
    assert notification_from_json(stored) == polled
    assert state_rows(path, "SELECT fingerprint FROM dedupe") == [(polled.fingerprint,)]
    assert state_rows(path, "SELECT count(*) FROM payloads") == [(0,)]
    async with stores(path) as (_, dedupe, queue):
        assert dedupe.seen(polled.dedupe_key)
        taken = await queue.get()
        assert (taken.incident_id, taken.notification) == (incident_id, polled)


async def test_a_newer_schema_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(_SCHEMA_1_DEDUPE.replace("'1'", "'99'"))
    connection.close()
    for _ in range(2):  # the refused open let go of its lock and thread: the next one asks again
        with pytest.raises(StorageError, match=r"has schema 99, newer than this version"):
            async with SqliteDatabase(path):
                pass
    assert not [t for t in threading.enumerate() if t.name.startswith("sentinel-sqlite")]
