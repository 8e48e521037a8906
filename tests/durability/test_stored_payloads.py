"""Webhook payloads in the state database: one row per payload holding the body as it arrived,
what a restart makes of it (its incidents, in order, with their ids; its dedupe keys), what it
never repeats, what becomes of it once finished, and a body this version cannot read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from mcp_sentinel.dispatcher.lifecycle import IncidentTracker
from mcp_sentinel.dispatcher.sqlite_db import SqliteDatabase
from mcp_sentinel.dispatcher.sqlite_queue import SqliteQueueBackend
from mcp_sentinel.dispatcher.sqlite_recovery import Recovery
from mcp_sentinel.dispatcher.state import open_state
from mcp_sentinel.models import (
    DispatchOutcome,
    Incident,
    IncidentCard,
    Outcome,
    PayloadOrigin,
)
from mcp_sentinel.sinks.base import IncidentRecord
from mcp_sentinel.sinks.outbox import SqliteOutbox
from tests.durability.support import parsed, state_rows
from tests.durability.test_sqlite_store import CARD, OTHER, HeldHandler, dispatcher_over, stores
from tests.helpers import FINDING, write_config
from tests.sinks.support import captured_logs, report_for

FixtureBytes = Callable[[str], bytes]


def with_severities(fixture: Any, severities: list[str]) -> bytes:
    """The fixture's first ``len(severities)`` alerts, with those severity labels."""
    payload = json.loads(json.dumps(fixture))
    payload["alerts"] = payload["alerts"][: len(severities)]
    for alert, severity in zip(payload["alerts"], severities, strict=True):
        alert["labels"]["severity"] = severity
    return json.dumps(payload).encode()


async def take(queue: SqliteQueueBackend, count: int) -> list[Incident]:
    return [await queue.get() for _ in range(count)]


async def test_a_webhook_payload_is_one_row_holding_its_body(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_50_alerts")
    async with (
        stores(tmp_path / "state.db", capacity=100) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        before = db.commits
        result = await dispatcher.dispatch(parsed(body), body=body)
        assert result.count(DispatchOutcome.QUEUED) == 50
        assert db.commits == before + 1
        ((state, stored, count, incidents),) = state_rows(
            db.path, "SELECT state, body, incident_count, incidents FROM payloads"
        )
        assert (state, stored, count) == ("queued", body, 50)
        columns = json.loads(incidents)
        assert columns["position"] == list(range(50)) and columns["fresh"] == [True] * 50
        assert len(set(columns["incident_id"])) == 50
        # No row per alert, nor per dedupe key.
        for table in ("incidents", "dedupe", "payload_incidents"):
            assert state_rows(db.path, f"SELECT count(*) FROM {table}") == [(0,)], table
        assert len(dedupe) == 50 and queue.depth() == 50

        before = db.commits
        repeat = await dispatcher.dispatch(parsed(body), body=body)
        assert repeat.count(DispatchOutcome.DUPLICATE) == 50 and db.commits == before


async def test_a_restart_loads_a_payloads_incidents_in_order_with_their_ids_and_keys(
    tmp_path: Path, fixture_json: Callable[[str], Any]
) -> None:
    severities = ["info", "warning", "critical", "warning", "critical", "info"]
    body = with_severities(fixture_json("webhook_firing_group_50_alerts"), severities)
    notifications = parsed(body)
    path = tmp_path / "state.db"
    async with (
        stores(path) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch(notifications, body=body)).accepted
        finished, *cut_off = await take(queue, 3)  # both criticals, then the first warning
        queue.task_done(finished)
        accepted = {i.incident_id: i.notification for i in [finished, *cut_off]}
        accepted.update({i.incident_id: i.notification for i in await take(queue, 3)})
        # Leaving without release: as if the process died with these claimed.
    assert state_rows(path, "SELECT count(*) FROM payload_incidents WHERE state = 'claimed'") == [
        (5,)
    ]

    async with (
        stores(path) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert queue.depth() == 5
        loaded = await take(queue, 5)
        # Critical first, then by arrival; the finished one is not there.
        assert [i.notification.severity for i in loaded] == [
            "critical",
            "warning",
            "warning",
            "info",
            "info",
        ]
        assert finished.incident_id not in {i.incident_id for i in loaded}
        assert {i.incident_id: i.notification for i in loaded} == {
            incident_id: notification
            for incident_id, notification in accepted.items()
            if incident_id != finished.incident_id
        }
        assert all(i.card is CARD for i in loaded)
        # Every key of the payload survived, the finished incident's too.
        assert all(dedupe.seen(n.dedupe_key) for n in notifications) and len(dedupe) == 6
        repeat = await dispatcher.dispatch(parsed(body), body=body)
        assert repeat.count(DispatchOutcome.DUPLICATE) == 6


async def recovered(path: Path) -> Recovery:
    """What a start finds in ``path`` (it releases the claims it finds, as every start does)."""
    async with SqliteDatabase(path) as db:
        return await SqliteQueueBackend(db, capacity=10, cards=(CARD,), default_card=None).open()


async def test_claims_are_resumed_and_a_released_incident_is_queued_again(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    async with (
        stores(path) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch(parsed(body), body=body)).accepted
        released, _ = await take(queue, 2)
        queue.release(released)  # a worker stopped by the shutdown: not cut off
    assert state_rows(path, "SELECT position, state FROM payload_incidents") == [(1, "claimed")]
    recovery = await recovered(path)
    assert (recovery.resumed, recovery.queued, recovery.unreadable) == (1, 3, 0)
    assert state_rows(path, "SELECT count(*) FROM payload_incidents") == [(0,)]


async def test_a_finished_payload_keeps_only_its_keys_until_they_expire(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    notifications = parsed(body)
    now = [1_000_000.0]
    path = tmp_path / "state.db"
    async with (
        stores(path, ttl=600, clock=lambda: now[0]) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch(notifications, body=body)).accepted
        for incident in await take(queue, 3):
            queue.task_done(incident)
    assert state_rows(path, "SELECT state, body, incidents, keys_expire_at FROM payloads") == [
        ("finished", None, "[]", 1_000_600.0)
    ]
    assert state_rows(path, "SELECT count(*) FROM payload_incidents") == [(0,)]

    now[0] += 500
    async with stores(path, ttl=600, clock=lambda: now[0]) as (_, dedupe, queue):
        assert queue.depth() == 0
        assert all(dedupe.seen(n.dedupe_key) for n in notifications) and len(dedupe) == 3
    now[0] += 101
    async with stores(path, ttl=600, clock=lambda: now[0]) as (_, dedupe, _):
        assert len(dedupe) == 0
    assert state_rows(path, "SELECT count(*) FROM payloads") == [(0,)]  # purged on open


async def test_the_intake_purge_deletes_finished_payloads_whose_keys_expired(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    first = fixture_bytes("webhook_firing_group_3_alerts")
    second = fixture_bytes("webhook_firing_single_alert")
    now = [1_000_000.0]
    async with (
        stores(tmp_path / "state.db", ttl=60, clock=lambda: now[0]) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch(parsed(first), body=first)).accepted
        for incident in await take(queue, 3):
            queue.task_done(incident)
        now[0] += 61  # its keys expired, and the purge (at most once a minute) is due
        assert (await dispatcher.dispatch(parsed(second), body=second)).accepted
        assert state_rows(db.path, "SELECT state, incident_count FROM payloads") == [("queued", 1)]


async def test_a_completion_by_the_outbox_is_never_investigated_again(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    async with (
        stores(path) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch(parsed(body), body=body)).accepted
        delivered = await queue.get()
        record = IncidentRecord(delivered, None, report_for(delivered, Outcome.COMPLETED, FINDING))
        added = await SqliteOutbox(db, queue=queue).add(record, ["webhook"])
        assert list(added) == ["webhook"]
        # The process dies before the worker's task_done.
    assert state_rows(path, "SELECT position, state FROM payload_incidents") == [(0, "done")]

    async with stores(path) as (db, _, queue):
        assert queue.depth() == 2
        rest = await take(queue, 2)
        assert delivered.incident_id not in {i.incident_id for i in rest}
        (pending,) = await SqliteOutbox(db, queue=queue).pending()
        assert pending.record().incident.incident_id == delivered.incident_id
        for incident in rest:
            queue.task_done(incident)
    # The last one done finished the payload.
    assert state_rows(path, "SELECT state FROM payloads") == [("finished",)]


async def test_a_card_gone_from_the_config_goes_to_the_default_or_the_incident_is_finished(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    body = fixture_bytes("webhook_firing_group_3_alerts")
    path = tmp_path / "state.db"
    gone = IncidentCard(resource="Retired", prompt="p.md.j2")
    first, second, third = parsed(body)
    async with stores(path, cards=(CARD, gone)) as (_, _, queue):
        incidents = [Incident(first, gone), Incident(second, CARD), Incident(third, gone)]
        assert await queue.put_all(incidents, PayloadOrigin(body, [0, 1, 2]))

    with captured_logs() as logs:
        async with stores(path, cards=(CARD, OTHER), default=OTHER) as (_, _, queue):
            taken = await take(queue, 3)
            for incident in taken:
                queue.release(incident)
    assert sorted(i.card.resource for i in taken) == ["Checkout", "Fallback", "Fallback"]
    assert sum("Retired, which is no longer configured" in line for line in logs) == 2

    with captured_logs() as logs:
        async with stores(path, cards=(CARD,)) as (_, _, queue):
            (kept,) = await take(queue, 1)
            assert kept.incident_id == incidents[1].incident_id
            queue.task_done(kept)
    unrouted = [line for line in logs if "unrouted alert" in line]
    assert len(unrouted) == 2 and all("card Retired" in line for line in unrouted)
    # The unrouted ones were finished at the start, the last one by its task_done.
    assert state_rows(path, "SELECT state FROM payloads") == [("finished",)]


def _replace_body(connection: sqlite3.Connection) -> None:
    connection.execute(
        'UPDATE payloads SET body = CAST(\'{"version": "5", "alerts": []}\' AS BLOB) WHERE seq = 1'
    )


def _truncate_body(connection: sqlite3.Connection) -> None:
    connection.execute("UPDATE payloads SET body = substr(body, 1, 100) WHERE seq = 1")


def _position_past_the_alerts(connection: sqlite3.Connection) -> None:
    connection.execute(
        "UPDATE payloads SET incidents = json_set(incidents, '$.position[0]', 99) WHERE seq = 1"
    )


def _incidents_not_columns(connection: sqlite3.Connection) -> None:
    connection.execute(
        'UPDATE payloads SET incidents = \'[[0, "x", "Checkout", 2, true]]\' WHERE seq = 1'
    )


@pytest.mark.parametrize(
    "damage",
    [_replace_body, _truncate_body, _position_past_the_alerts, _incidents_not_columns],
    ids=["newer-version", "truncated", "position-past-the-alerts", "incidents-not-columns"],
)
async def test_a_payload_this_version_cannot_read_is_kept_and_reported(
    tmp_path: Path,
    fixture_bytes: FixtureBytes,
    damage: Callable[[sqlite3.Connection], None],
) -> None:
    broken = fixture_bytes("webhook_firing_group_3_alerts")
    sound = fixture_bytes("webhook_firing_single_alert")
    path = tmp_path / "state.db"
    async with (
        stores(path) as (db, dedupe, queue),
        dispatcher_over(db, dedupe, queue, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch(parsed(broken), body=broken)).accepted
        ids = [i.incident_id for i in await take(queue, 3)]  # claimed when the process died
        assert (await dispatcher.dispatch(parsed(sound), body=sound)).accepted
    connection = sqlite3.connect(path)
    with connection:
        damage(connection)  # the first payload only: the sound one has no claimed incident
    connection.close()
    before = state_rows(path, "SELECT seq, body, incidents FROM payloads ORDER BY seq")[0]

    with captured_logs() as logs:
        async with stores(path) as (_, _, queue):
            (loaded,) = await take(queue, 1)  # the sound payload's, not half of the broken one
            assert loaded.notification.fingerprint == parsed(sound)[0].fingerprint
            queue.release(loaded)
    (line,) = [line for line in logs if "cannot be read" in line]
    assert f"queued payload {before[0]} cannot be read" in line
    if damage is not _incidents_not_columns:
        assert ids[0] in line  # its incidents are named
    if damage is _replace_body:  # the reason names the field, as the webhook's 400 does
        assert "version: Input should be '4'" in line, line
    assert "1 unreadable row(s) kept" in "".join(logs)
    # Kept as it was, for a human.
    assert state_rows(path, "SELECT seq, body, incidents FROM payloads ORDER BY seq")[0] == before
    assert state_rows(path, "SELECT state FROM payloads ORDER BY seq") == [
        ("unreadable",),
        ("queued",),
    ]

    with captured_logs() as logs:
        async with stores(path) as (_, dedupe, queue):
            assert queue.depth() == 1
            # Its keys are not restored: Alertmanager's repeat of it is investigated.
            assert not any(dedupe.seen(n.dedupe_key) for n in parsed(broken))
    assert "1 unreadable row(s) kept" in "".join(logs)


async def test_a_key_the_payload_did_not_make_new_keeps_its_own_expiry(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    """A payload keeps the keys its intake made new: a key remembered earlier (by a poller)
    expires when it was due to, before and after the payload is finished."""
    body = fixture_bytes("webhook_firing_group_3_alerts")
    known, new, _ = parsed(body)
    now = [1_000_000.0]
    path = tmp_path / "state.db"
    async with stores(path, ttl=60, clock=lambda: now[0]) as (_, dedupe, queue):
        dedupe.remember_all([known.dedupe_key])  # expires at 1_000_060
        now[0] += 30
        incidents = [Incident(known, CARD), Incident(new, CARD)]
        assert await queue.put_all(incidents, PayloadOrigin(body, [0, 1]))  # new: 1_000_090
    now[0] += 40
    async with stores(path, ttl=60, clock=lambda: now[0]) as (_, dedupe, queue):
        assert (dedupe.seen(known.dedupe_key), dedupe.seen(new.dedupe_key)) == (False, True)
        for incident in await take(queue, 2):
            queue.task_done(incident)
    assert state_rows(path, "SELECT state FROM payloads") == [("finished",)]
    async with stores(path, ttl=60, clock=lambda: now[0]) as (_, dedupe, _):
        assert (dedupe.seen(known.dedupe_key), dedupe.seen(new.dedupe_key)) == (False, True)


async def test_a_restart_tells_the_incident_tracker_which_queued_alerts_resolved(
    tmp_path: Path, fixture_bytes: FixtureBytes
) -> None:
    settings = write_config(tmp_path)
    mixed = fixture_bytes("webhook_mixed_group_45_firing_5_resolved")  # a payload row
    resolved = parsed(fixture_bytes("webhook_resolved_single_alert"))  # a row of its own
    async with (
        stores(settings.resolve(settings.dispatcher.sqlite_path), capacity=100) as (db, d, q),
        dispatcher_over(db, d, q, HeldHandler(), workers=0) as dispatcher,
    ):
        assert (await dispatcher.dispatch(parsed(mixed), body=mixed)).accepted
        assert (await dispatcher.dispatch(resolved)).accepted  # no body: the poller's way

    tracker = IncidentTracker(3600)
    async with AsyncExitStack() as stack:
        state = await open_state(settings, stack=stack, tracker=tracker)
        assert state.queue.depth() == 51
    notifications = [*parsed(mixed), *resolved]
    gone = {n.key for n in notifications if n.status == "resolved"}
    assert len(gone) == 6
    assert {n.key for n in notifications if tracker.is_resolved(n.key)} == gone
