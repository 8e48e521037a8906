from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mcp_sentinel.models import (
    Incident,
    IncidentCard,
    IncidentNotification,
    IncidentReport,
    Outcome,
)
from mcp_sentinel.sinks.audit import AuditSink, verify_audit_log
from mcp_sentinel.sinks.base import IncidentRecord

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
