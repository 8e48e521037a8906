"""Incident ids: 32 hex digits, and the 12 that the console, Slack and Jira show tell
incidents apart."""

from __future__ import annotations

from mcp_sentinel.models import new_incident_id


def test_ids_are_32_hex_digits_and_their_short_form_differs_between_incidents() -> None:
    ids = [new_incident_id() for _ in range(1000)]
    assert all(len(incident_id) == 32 and int(incident_id, 16) >= 0 for incident_id in ids)
    assert len({incident_id[:12] for incident_id in ids}) == len(ids)
