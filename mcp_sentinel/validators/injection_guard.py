"""Injection guard: prompt injection and jailbreaks in the untrusted text the agent reads.

Looks at ``AgentInput.alert_data`` (never ``instructions``: that is our own template) and
``ToolOutput.output``. JSON is scanned string by string (the fenced alert data is parsed out of
its fence; a tool output that parses as JSON is walked), so a finding names its location
(``annotations.description``) and a neutralised document stays valid JSON; anything else is
scanned as one text. What counts as suspicious is in ``injection_scan`` and
``_injection_rules``.

* ``action="neutralise"`` (default): ``Modified``, each suspicious span replaced by
  ``[sentinel: removed suspected prompt injection]`` and invisible characters stripped.
* ``action="reject"``: ``Rejected`` naming the categories found and where. Text with only
  stray invisible characters (no finding) is still ``Modified`` (stripped) in this mode.
* ``Approved`` when there is nothing to change.

Reasons never quote the suspicious text: they go to logs and sinks, where an attacker's words
have no business either.

Without a classifier the scan is a pure function of the string, so the guard remembers the
short strings of JSON documents it found clean (``_CleanStrings``) and does not scan them
again: every alert repeats its label names, most of its label values and the notification's
own keys, and those were most of the scanning. Anything suspicious is never remembered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mcp_sentinel.prompts import ALERT_DATA_CLOSE, ALERT_DATA_OPEN, escape_json_text
from mcp_sentinel.validators.actions import Action, ActionKind, AgentInput, ToolOutput
from mcp_sentinel.validators.injection_scan import (
    NEUTRALISED,
    InjectionClassifier,
    InjectionVerdict,
    TextScan,
    scan_text,
)
from mcp_sentinel.validators.pipeline import (
    Approved,
    IncidentContext,
    Modified,
    Rejected,
    ValidationResult,
)

InjectionAction = Literal["neutralise", "reject"]
_MAX_LOCATIONS = 5  # named in a reason; the rest are counted

__all__ = [
    "NEUTRALISED",
    "InjectionAction",
    "InjectionClassifier",
    "InjectionGuard",
    "InjectionVerdict",
    "scan_text",
]


@dataclass(slots=True)
class _Findings:
    """What scanning one document found, by location."""

    locations: dict[str, set[str]] = field(default_factory=dict)
    stripped: int = 0

    def add(self, location: str, scan: TextScan) -> None:
        if scan.detections:
            self.locations.setdefault(location, set()).update(scan.categories)
        self.stripped += len(scan.hidden)

    def describe(self) -> str:
        parts = [
            f"{where or 'text'} ({', '.join(sorted(categories))})"
            for where, categories in list(self.locations.items())[:_MAX_LOCATIONS]
        ]
        more = len(self.locations) - _MAX_LOCATIONS
        if more > 0:
            parts.append(f"{more} more location(s)")
        return "; ".join(parts)


class _CleanStrings:
    """Strings of at most ``max_chars`` that scanned clean, at most ``capacity`` of them
    (emptied when full: the strings that repeat come back at once). Shared by every incident;
    the event loop is its only user."""

    def __init__(self, *, capacity: int = 4096, max_chars: int = 256) -> None:
        self._capacity = capacity
        self._max_chars = max_chars
        self._strings: set[str] = set()

    def __contains__(self, text: str) -> bool:
        return text in self._strings

    def add(self, text: str) -> None:
        if len(text) > self._max_chars:
            return
        if len(self._strings) >= self._capacity:
            self._strings.clear()
        self._strings.add(text)


class InjectionGuard:
    """The ``injection_guard`` validator. ``classifier`` is optional; without one the guard
    remembers the strings it found clean (see the module docstring)."""

    name = "injection_guard"
    can_modify = True
    kinds: frozenset[ActionKind] = frozenset({"agent_input", "tool_output"})

    def __init__(
        self,
        *,
        priority: int = 100,
        action: InjectionAction = "neutralise",
        classifier: InjectionClassifier | None = None,
    ) -> None:
        if action not in ("neutralise", "reject"):
            raise ValueError(f"action must be neutralise or reject, not {action!r}")
        self.priority = priority
        self._action: InjectionAction = action
        self._classifier = classifier
        # A classifier's verdict may change (a model, a service): then every string is asked.
        self._clean = _CleanStrings() if classifier is None else None

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        if isinstance(action, AgentInput):
            text, findings = self._document(action.alert_data, fenced=True)
            changed: Action = replace(action, alert_data=text)
            source = "alert data"
        elif isinstance(action, ToolOutput):
            text, findings = self._document(action.output, fenced=False)
            changed = replace(action, output=text)
            source = f"output of {action.qualified_name}"
        else:
            return Approved()
        if findings.locations and self._action == "reject":
            return Rejected(f"suspected prompt injection in {source}: {findings.describe()}")
        if not findings.locations and not findings.stripped:
            return Approved()
        reasons = []
        if findings.locations:
            reasons.append(
                f"neutralised suspected prompt injection in {source}: {findings.describe()}"
            )
        if findings.stripped:
            reasons.append(f"stripped {findings.stripped} invisible character(s) from {source}")
        return Modified(changed, "; ".join(reasons))

    # ----------------------------------------------------------------------- documents

    def _document(self, text: str, *, fenced: bool) -> tuple[str, _Findings]:
        """Scan (and neutralise) a whole document: structured when it is JSON."""
        findings = _Findings()
        if fenced:
            start, end = text.find(ALERT_DATA_OPEN), text.rfind(ALERT_DATA_CLOSE)
            if 0 <= start < end:
                body = text[start + len(ALERT_DATA_OPEN) : end]
                parsed = _json(body)
                if parsed is not _NOT_JSON:
                    walked = self._walk(parsed, "", findings)
                    if not findings.locations and not findings.stripped:
                        return text, findings
                    rendered = escape_json_text(json.dumps(walked, indent=2, ensure_ascii=False))
                    return (
                        f"{text[:start]}{ALERT_DATA_OPEN}\n{rendered}\n"
                        f"{ALERT_DATA_CLOSE}{text[end + len(ALERT_DATA_CLOSE) :]}",
                        findings,
                    )
        elif text.lstrip()[:1] in ("{", "["):
            parsed = _json(text)
            if parsed is not _NOT_JSON:
                walked = self._walk(parsed, "", findings)
                if not findings.locations and not findings.stripped:
                    return text, findings
                indent = 2 if "\n" in text.strip() else None
                return json.dumps(walked, indent=indent, ensure_ascii=False), findings
        scan = self._scan(text)
        findings.add("", scan)
        return scan.neutralised() if (scan.detections or scan.hidden) else text, findings

    def _walk(self, value: Any, path: str, findings: _Findings) -> Any:
        if isinstance(value, str):
            return self._string(value, path, findings)
        if isinstance(value, list):
            return [self._walk(item, f"{path}[{i}]", findings) for i, item in enumerate(value)]
        if isinstance(value, dict):
            walked: dict[str, Any] = {}
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                new_key = self._string(str(key), f"{where} (key)", findings)
                walked[new_key] = self._walk(item, where, findings)
            return walked
        return value

    def _string(self, text: str, where: str, findings: _Findings) -> str:
        clean = self._clean
        if clean is not None and text in clean:
            return text
        scan = self._scan(text)
        findings.add(where, scan)
        if scan.detections or scan.hidden:
            return scan.neutralised()
        if clean is not None:
            clean.add(text)
        return text

    def _scan(self, text: str) -> TextScan:
        return scan_text(text, self._classifier)


_NOT_JSON = object()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def scan_document(text: str, *, fenced: bool = False) -> dict[str, list[str]]:
    """Location -> categories found in a document, as the guard sees it (for tests and tools)."""
    guard = InjectionGuard()
    _, findings = guard._document(text, fenced=fenced)
    return {where: sorted(categories) for where, categories in findings.locations.items()}
