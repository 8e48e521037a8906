"""A record is encoded once for the outbox and the audit log: the text must be what encoding
the whole record gives, and read back to the same record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from mcp_sentinel.models import (
    AlertGroup,
    EvidenceItem,
    Finding,
    Incident,
    IncidentCard,
    IncidentNotification,
    IncidentReport,
    Outcome,
    ToolCallRecord,
)
from mcp_sentinel.prompts import RenderedPrompt
from mcp_sentinel.sinks.base import IncidentRecord, canonical_json, canonical_object
from mcp_sentinel.sinks.deadletter import record_from_json, record_to_json
from mcp_sentinel.sinks.outbox import stored_record

CARD = IncidentCard(resource="Checkout", prompt="prompts/triage.md.j2", tools=("ops",))


def record() -> IncidentRecord:
    notification = IncidentNotification(
        fingerprint="a1b2",
        starts_at=datetime(2026, 11, 22, 3, 31, 11, 684000, tzinfo=UTC),
        ends_at=None,
        status="firing",
        labels={"alertname": "Zürich <probe>", "zone": "\u2028 line\nbreak", "b": "2"},
        annotations={"summary": 'naïve "quoted" \\ text 🙂'},
        generator_url="http://127.0.0.1:9090/graph?g0.expr=up",
        group=AlertGroup(key="{}:{}", labels={"alertname": "x"}, receiver="r", external_url=""),
        source="webhook",
        received_at=datetime(2026, 11, 22, 3, 32, tzinfo=UTC),
    )
    incident = Incident(notification, CARD)
    now = datetime(2026, 11, 22, 3, 33, tzinfo=UTC)
    report = IncidentReport(
        incident_id=incident.incident_id,
        card=CARD.resource,
        alert=notification.as_dict(),
        outcome=Outcome.COMPLETED,
        finding=Finding(
            summary="down",
            probable_cause="unknown",
            evidence=[EvidenceItem(source="ops.query", detail="up => 0")],
            recommended_actions=["look"],
            confidence=0.1 + 0.2,  # a float that needs its full repr
        ),
        tools_called=[ToolCallRecord(tool="query", server="ops", arguments="{}", status="ok")],
        started_at=now,
        finished_at=now,
        validation=[{"validator": "grounding", "duration_ms": 0.5}],
    )
    prompt = RenderedPrompt(instructions="Look.", alert_data="<alert-data>", template="t.j2")
    return IncidentRecord(incident, prompt, report)


def test_the_fields_make_the_canonical_json_of_the_whole_record() -> None:
    subject = record()
    assert canonical_object(subject.json_fields()) == canonical_json(subject.as_dict())
    assert subject.json_fields() is subject.json_fields()  # encoded once


def test_the_outbox_row_reads_back_as_the_same_record() -> None:
    subject = record()
    stored = stored_record(subject)
    assert stored == canonical_json(record_to_json(subject))
    assert record_from_json(json.loads(stored)) == subject
