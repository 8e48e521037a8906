"""Expectations: replay as a prompt regression test.

An expectations file (YAML) is a list; each entry selects alerts by ``match`` (label equality,
and/or ``fingerprint``) and states what their investigation must show::

    - match: {alertname: TargetDown, instance: "app-01:8080"}
      card: TargetDown
      outcome: completed
      summary_contains: ["down"]              # case-insensitive phrases
      summary_not_contains: ["restarted"]
      summary_matches: ['up\\s*==\\s*0']        # regular expressions (search)
      tools_called: [prometheus.query]        # server.tool, or just the tool
      tools_not_called: [prometheus.restart]
      max_turns: 6

``summary_*`` look at the finding's summary and probable cause together. An entry that
matches no replayed alert fails too: a renamed alert must not pass silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mcp_sentinel.config import format_location
from mcp_sentinel.errors import PermanentError


class ExpectationsError(PermanentError):
    """The expectations file is unreadable or invalid."""


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: dict[str, str] = Field(default_factory=dict)
    fingerprint: str | None = None
    card: str | None = None
    outcome: str | None = None
    summary_contains: list[str] = Field(default_factory=list)
    summary_not_contains: list[str] = Field(default_factory=list)
    summary_matches: list[str] = Field(default_factory=list)
    tools_called: list[str] = Field(default_factory=list)
    tools_not_called: list[str] = Field(default_factory=list)
    max_turns: int | None = Field(default=None, ge=0)

    def selects(self, alert: dict[str, Any]) -> bool:
        labels = alert.get("labels", {})
        if self.fingerprint is not None and alert.get("fingerprint") != self.fingerprint:
            return False
        return all(labels.get(name) == value for name, value in self.match.items())

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match.items()]
        if self.fingerprint:
            parts.append(f"fingerprint={self.fingerprint}")
        return ", ".join(parts) or "every alert"


_EXPECTATIONS = TypeAdapter(list[Expectation])


def load_expectations(path: Path) -> list[Expectation]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ExpectationsError(f"{path}: cannot read expectations: {exc}") from None
    try:
        expectations = _EXPECTATIONS.validate_python(data or [])
    except ValidationError as exc:
        problems = [
            f"[{format_location(tuple(e['loc']))}] {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ExpectationsError(f"{path}: " + "; ".join(problems[:5])) from None
    for index, expectation in enumerate(expectations):
        for pattern in expectation.summary_matches:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ExpectationsError(f"{path}: [{index}].summary_matches: {exc}") from None
    return expectations


def _called(tools: list[dict[str, Any]], wanted: str) -> bool:
    for call in tools:
        if call.get("status") == "refused":
            continue
        qualified = f"{call.get('server')}.{call.get('tool')}"
        if wanted in (qualified, call.get("tool")):
            return True
    return False


def failures(expectation: Expectation, record: dict[str, Any]) -> list[str]:
    """What ``record`` (an incident record, as in the audit log) breaks of ``expectation``."""
    report = record["report"]
    found: list[str] = []
    if expectation.card is not None and record["card"] != expectation.card:
        found.append(f"card is {record['card']}, expected {expectation.card}")
    if expectation.outcome is not None and report["outcome"] != expectation.outcome:
        found.append(f"outcome is {report['outcome']}, expected {expectation.outcome}")
    finding = report.get("finding") or {}
    text = f"{finding.get('summary', '')}\n{finding.get('probable_cause', '')}"
    lowered = text.lower()
    for phrase in expectation.summary_contains:
        if phrase.lower() not in lowered:
            found.append(f"summary lacks {phrase!r}")
    for phrase in expectation.summary_not_contains:
        if phrase.lower() in lowered:
            found.append(f"summary contains {phrase!r}")
    for pattern in expectation.summary_matches:
        if re.search(pattern, text) is None:
            found.append(f"summary does not match /{pattern}/")
    tools = report.get("tools_called", [])
    for tool in expectation.tools_called:
        if not _called(tools, tool):
            found.append(f"{tool} was not called")
    for tool in expectation.tools_not_called:
        if _called(tools, tool):
            found.append(f"{tool} was called")
    if expectation.max_turns is not None and report["turns"] > expectation.max_turns:
        found.append(f"{report['turns']} turns, at most {expectation.max_turns} expected")
    return found


@dataclass(slots=True)
class ExpectationResult:
    """One alert's verdict: which expectations applied and what failed."""

    incident_id: str
    alert: str
    card: str
    outcome: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def evaluate(
    expectations: list[Expectation], records: list[dict[str, Any]]
) -> tuple[list[ExpectationResult], list[str]]:
    """Per record, the result of every expectation selecting it; and the expectations that
    selected nothing."""
    results = []
    used = [False] * len(expectations)
    for record in records:
        alert = record["report"]["alert"]
        result = ExpectationResult(
            incident_id=record["incident_id"],
            alert=alert.get("labels", {}).get("alertname", alert.get("fingerprint", "?")),
            card=record["card"],
            outcome=record["report"]["outcome"],
        )
        for index, expectation in enumerate(expectations):
            if expectation.selects(alert):
                used[index] = True
                result.checked += 1
                result.problems.extend(failures(expectation, record))
        results.append(result)
    unmatched = [
        f"expectation {index} ({expectations[index].describe()}) matched no replayed alert"
        for index, hit in enumerate(used)
        if not hit
    ]
    return results, unmatched
