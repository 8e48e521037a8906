"""The console sink: a short, readable block per incident on standard output."""

from __future__ import annotations

import sys
from typing import TextIO

from mcp_sentinel.models import Outcome
from mcp_sentinel.sinks.base import IncidentRecord


def format_record(record: IncidentRecord) -> str:
    """The block printed for one incident."""
    report = record.report
    notification = record.incident.notification
    labels = notification.labels
    where = labels.get("instance") or labels.get("service") or labels.get("job") or ""
    head = (
        f"[{report.outcome.value}] {notification.alertname or '<no alertname>'}"
        f"{' on ' + where if where else ''} (card {report.card}, severity "
        f"{notification.severity or 'none'}, incident {report.incident_id[:12]})"
    )
    lines = [head]
    if report.finding is not None:
        finding = report.finding
        lines.append(f"  summary:    {finding.summary}")
        lines.append(
            f"  cause:      {finding.probable_cause} (confidence {finding.confidence:.2f})"
        )
        lines.extend(f"  evidence:   {item.source}: {item.detail}" for item in finding.evidence)
        lines.extend(f"  next step:  {action}" for action in finding.recommended_actions)
    elif report.outcome is Outcome.RESOLVED:
        lines.append(
            f"  resolved at {notification.ends_at.isoformat() if notification.ends_at else '?'}"
        )
    else:
        summary = notification.annotations.get("summary") or notification.annotations.get(
            "description", ""
        )
        if summary:
            lines.append(f"  alert says: {summary}")
        lines.append(f"  error:      {report.error}")
    if report.tools_called:
        tools = ", ".join(
            f"{call.server + '.' if call.server else ''}{call.tool}" for call in report.tools_called
        )
        lines.append(f"  tools:      {tools}")
    if notification.generator_url:
        lines.append(f"  source:     {notification.generator_url}")
    lines.append(
        f"  run:        {report.turns} turn(s), {report.input_tokens}+{report.output_tokens} "
        f"tokens, {report.duration_seconds:.1f}s"
    )
    return "\n".join(lines) + "\n"


class ConsoleSink:
    """Writes ``format_record`` blocks to a stream (standard output by default)."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def deliver(self, record: IncidentRecord) -> None:
        stream = self._stream or sys.stdout
        stream.write(format_record(record))
        stream.flush()
