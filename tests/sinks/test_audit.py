from __future__ import annotations

import asyncio
import json
import resource
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mcp_sentinel.errors import PermanentError
from mcp_sentinel.models import (
    AlertGroup,
    Incident,
    IncidentCard,
    IncidentNotification,
    IncidentReport,
    Outcome,
)
from mcp_sentinel.sinks.audit import AuditSink, canonical_hash, verify_audit_log
from mcp_sentinel.sinks.base import IncidentRecord, canonical_json

CARD = IncidentCard(resource="Probe", prompt="p")


def record_for(notification: IncidentNotification) -> IncidentRecord:
    incident = Incident(notification, CARD)
    now = datetime.now(UTC)
    report = IncidentReport(
        incident_id=incident.incident_id,
        card=CARD.resource,
        alert=notification.as_dict(),
        outcome=Outcome.RESOLVED,
        started_at=now,
        finished_at=now,
    )
    return IncidentRecord(incident, None, report)


async def test_chain_survives_reopen_and_detects_tampering(
    tmp_path: Path, notifications: Callable[[str], list[IncidentNotification]]
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    path = tmp_path / "sub" / "audit.jsonl"
    async with AuditSink(path) as sink:
        for alert in alerts[:2]:
            await sink.deliver(record_for(alert))
    async with AuditSink(path) as sink:  # a restart continues the chain
        await sink.deliver(record_for(alerts[2]))

    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[2]["prev_hash"] == records[1]["hash"]
    assert records[0]["notification"]["fingerprint"] == alerts[0].fingerprint
    result = verify_audit_log(path)
    assert result.ok and result.records == 3

    records[1]["notification"]["labels"]["severity"] = "info"
    lines[1] = json.dumps(records[1])
    path.write_text("\n".join(lines) + "\n")
    broken = verify_audit_log(path)
    assert not broken.ok
    assert broken.problems == ["line 2 (seq 2): content does not match its hash"]

    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    removed = verify_audit_log(path)
    assert any("prev_hash does not link" in p for p in removed.problems)


async def log_with_one_record(path: Path, alert: IncidentNotification) -> Path:
    async with AuditSink(path) as sink:
        await sink.deliver(record_for(alert))
    return path


async def test_torn_last_line_is_not_glued_to_the_next_record(
    tmp_path: Path, notifications: Callable[[str], list[IncidentNotification]]
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    path = await log_with_one_record(tmp_path / "audit.jsonl", alert)
    with path.open("a") as handle:
        handle.write('{"seq": 2, "trunc')  # a crash mid-write
    async with AuditSink(path) as sink:
        await sink.deliver(record_for(alert))
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["seq"] == 2
    assert verify_audit_log(path).problems == ["line 2: not a complete audit record"]


async def test_a_last_line_still_being_written_is_named_as_unfinished(
    tmp_path: Path, notifications: Callable[[str], list[IncidentNotification]]
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    path = await log_with_one_record(tmp_path / "audit.jsonl", alert)
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2])  # what a reader racing a write sees
    assert verify_audit_log(path).problems == [
        "line 2: the last record is unfinished (being written now, or cut short by a crash)"
    ]


async def test_a_line_is_its_canonical_form_with_the_hash_last(tmp_path: Path) -> None:
    notification = IncidentNotification(
        fingerprint="f1",
        starts_at=datetime(2026, 11, 22, 3, 31, tzinfo=UTC),
        ends_at=None,
        status="firing",
        labels={"alertname": "Zürich \u2028 <probe>", "a": "1.5"},
        annotations={"summary": 'naïve "quoted" \\ text'},
        generator_url="",
        group=AlertGroup(key="k", labels={}, receiver="r", external_url=""),
        source="webhook",
        received_at=datetime(2026, 11, 22, 3, 32, tzinfo=UTC),
    )
    record = record_for(notification)
    async with AuditSink(tmp_path / "audit.jsonl") as sink:
        await sink.deliver(record)
    line = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").rstrip("\n")
    entry = json.loads(line)
    digest = entry.pop("hash")
    assert line == canonical_json(entry)[:-1] + f',"hash":"{digest}"}}'
    assert digest == canonical_hash(entry)
    assert entry["notification"] == notification.as_dict()


async def test_records_delivered_together_keep_the_chain(
    tmp_path: Path, notifications: Callable[[str], list[IncidentNotification]]
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts") * 7
    path = tmp_path / "audit.jsonl"

    async with AuditSink(path) as sink:

        async def deliver(record: IncidentRecord) -> None:
            await sink.deliver(record)
            # Returned: the record is in the file already.
            assert record.incident.incident_id in path.read_text()

        await asyncio.gather(*(deliver(record_for(alert)) for alert in alerts))
    result = verify_audit_log(path)
    assert result.ok and result.records == len(alerts)


async def test_a_cancelled_delivery_does_not_break_the_chain(
    tmp_path: Path, notifications: Callable[[str], list[IncidentNotification]]
) -> None:
    first, second, _ = notifications("webhook_firing_group_3_alerts")
    path = tmp_path / "audit.jsonl"
    async with AuditSink(path) as sink:
        task = asyncio.create_task(sink.deliver(record_for(first)))
        # Polled: the line is written by a thread, and the fsync after it takes milliseconds.
        while not path.stat().st_size:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        task.cancel()
        await sink.deliver(record_for(second))
    result = verify_audit_log(path)
    assert result.ok, result.problems
    assert result.records == 2


async def test_a_failed_write_fails_its_records_and_the_chain_goes_on(
    tmp_path: Path, notifications: Callable[[str], list[IncidentNotification]]
) -> None:
    alerts = notifications("webhook_firing_group_3_alerts")
    path = tmp_path / "audit.jsonl"
    async with AuditSink(path) as sink:
        await sink.deliver(record_for(alerts[0]))
        size = path.stat().st_size
        # A file-size limit just past the first record: the next write fails part way
        # (EFBIG), as on a disk that fills up.
        ignored = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))
        try:
            failed = await asyncio.gather(
                sink.deliver(record_for(alerts[1])),
                sink.deliver(record_for(alerts[2])),
                return_exceptions=True,
            )
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, ignored)
        assert all(isinstance(error, PermanentError) for error in failed), failed
        assert path.stat().st_size == size  # the torn part was cut back off
        await sink.deliver(record_for(alerts[2]))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seq"] for r in records] == [1, 2]
    assert verify_audit_log(path).ok
