"""Shared helpers for the validator tests: injectable clocks, corpus loaders, report builders."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mcp_sentinel.models import EvidenceItem, Finding, IncidentReport, Outcome, ToolCallRecord
from mcp_sentinel.validators.pipeline import IncidentContext

CORPUS = Path(__file__).resolve().parent / "corpus"


class MonotonicClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WallClock:
    """A wall clock (aware UTC datetime) the test sets by hand."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def load_jsonl(name: str) -> list[dict[str, Any]]:
    path = CORPUS / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def context(card: str = "Checkout", **kwargs: Any) -> IncidentContext:
    return IncidentContext(incident_id="inc-1", card=card, **kwargs)


def make_report(
    finding: Finding | None,
    *,
    tools_called: list[ToolCallRecord] | None = None,
    alert: dict[str, Any] | None = None,
    error: str | None = None,
) -> IncidentReport:
    moment = datetime(2026, 11, 22, 3, 31, tzinfo=UTC)
    return IncidentReport(
        incident_id="inc-1",
        card="Checkout",
        alert=alert or {"labels": {"alertname": "CheckoutDown", "instance": "app-01:8080"}},
        outcome=Outcome.COMPLETED if finding else Outcome.ANALYSIS_FAILED,
        finding=finding,
        error=error,
        tools_called=tools_called or [],
        started_at=moment,
        finished_at=moment,
    )


def make_finding(
    *,
    summary: str = "Checkout on app-01.example.internal:8080 is down.",
    probable_cause: str = "The process is not answering scrapes.",
    evidence: list[tuple[str, str]] | None = None,
    actions: list[str] | None = None,
    confidence: float = 0.8,
) -> Finding:
    return Finding(
        summary=summary,
        probable_cause=probable_cause,
        evidence=[EvidenceItem(source=s, detail=d) for s, d in (evidence or [])],
        recommended_actions=actions or [],
        confidence=confidence,
    )
