"""Jira texts for an incident: the issue summary, the description and the comments.

Each text is built once as a small document (``Part``s: headings, paragraphs, lists of inline
runs) and rendered either as ADF for Jira Cloud (REST v3) or as wiki markup for Server/Data
Center (REST v2). ADF rules kept: a ``doc`` with ``version: 1``; text nodes are never empty;
list items hold paragraphs; links are ``link`` marks. Wiki markup escapes the characters that
would start markup, so alert or model text cannot inject macros or links. Texts are capped so a
huge finding cannot exceed Jira's field limits (32,767 characters). Every function is pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mcp_sentinel.models import IncidentNotification, IncidentReport
from mcp_sentinel.sinks import render

MAX_SUMMARY = 255
MAX_TEXT = 2000  # one paragraph or list item
MAX_ITEMS = 30  # evidence items or actions listed


@dataclass(frozen=True, slots=True)
class Run:
    """An inline piece of text, maybe bold, maybe a link."""

    text: str
    bold: bool = False
    href: str | None = None


@dataclass(frozen=True, slots=True)
class Heading:
    text: str


@dataclass(frozen=True, slots=True)
class Paragraph:
    runs: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class Listing:
    items: tuple[tuple[Run, ...], ...]
    numbered: bool = False


Part = Heading | Paragraph | Listing


def _cap(text: str) -> str:
    return render.truncate(text, MAX_TEXT, note="cut")


def _para(*runs: Run) -> Paragraph:
    return Paragraph(tuple(runs))


def _listing(items: list[tuple[Run, ...]], *, numbered: bool = False) -> Listing:
    shown = items[:MAX_ITEMS]
    if len(items) > MAX_ITEMS:
        shown.append((Run(f"... {len(items) - MAX_ITEMS} more in the audit log"),))
    return Listing(tuple(shown), numbered)


# --------------------------------------------------------------------------- the texts


def issue_summary(notification: IncidentNotification) -> str:
    """``[CRITICAL] ProbeAlwaysFiring on app-01:8080: Checkout API down``, at most 255 chars."""
    head = f"[{render.severity(notification).upper()}] {render.title(notification)}"
    summary = render.alert_summary(notification)
    text = f"{head}: {summary}" if summary else head
    text = " ".join(text.split())  # a summary is one line
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def _alert_parts(notification: IncidentNotification) -> list[Part]:
    parts: list[Part] = [Heading("Alert")]
    summary = render.alert_summary(notification)
    if summary:
        parts.append(_para(Run(_cap(summary))))
    parts.append(_para(Run("Started: ", bold=True), Run(render.when(notification.starts_at))))
    parts.append(
        _listing(
            [
                (Run(f"{name}: ", bold=True), Run(_cap(value)))
                for name, value in render.key_labels(notification.labels, limit=20)
            ]
        )
    )
    return parts


def _finding_parts(report: IncidentReport) -> list[Part]:
    finding = report.finding
    if finding is None:
        return [Heading("Finding"), _para(Run(_cap(render.outcome_line(report))))]
    parts: list[Part] = [
        Heading("Finding"),
        _para(Run(_cap(finding.summary))),
        Heading(f"Probable cause (confidence {finding.confidence:.0%})"),
        _para(Run(_cap(finding.probable_cause))),
    ]
    if finding.evidence:
        parts.append(Heading("Evidence"))
        parts.append(
            _listing(
                [(Run(f"{e.source}: ", bold=True), Run(_cap(e.detail))) for e in finding.evidence]
            )
        )
    if finding.recommended_actions:
        parts.append(Heading("Recommended actions"))
        parts.append(
            _listing([(Run(_cap(a)),) for a in finding.recommended_actions], numbered=True)
        )
    return parts


def _link_parts(notification: IncidentNotification) -> list[Part]:
    found = render.links(notification)
    if not found:
        return []
    return [Heading("Links"), _listing([(Run(link.label, href=link.url),) for link in found])]


def description(notification: IncidentNotification, report: IncidentReport) -> list[Part]:
    """The new issue's description: the alert, the finding, links and the run's facts."""
    return [
        *_alert_parts(notification),
        *_finding_parts(report),
        *_link_parts(notification),
        _para(Run(render.run_facts(report))),
        _para(Run("Fingerprint: ", bold=True), Run(notification.fingerprint)),
    ]


def finding_comment(notification: IncidentNotification, report: IncidentReport) -> list[Part]:
    """A repeat or re-fire of an incident that already has its issue."""
    return [
        _para(
            Run("Fired again", bold=True),
            Run(f" (started {render.when(notification.starts_at)}); a new investigation:"),
        ),
        *_finding_parts(report),
        _para(Run(render.run_facts(report))),
    ]


def resolution_comment(notification: IncidentNotification) -> list[Part]:
    lasted = render.duration(notification)
    return [
        _para(
            Run("Resolved", bold=True),
            Run(
                f" at {render.when(notification.ends_at)}"
                + (f" after {lasted}" if lasted else "")
                + f" (the alert that started {render.when(notification.starts_at)})."
            ),
        )
    ]


# --------------------------------------------------------------------------- ADF (v3)


def to_adf(parts: list[Part]) -> dict[str, Any]:
    """An Atlassian Document Format ``doc``."""
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Heading):
            content.append(
                {"type": "heading", "attrs": {"level": 3}, "content": _adf_runs((Run(part.text),))}
            )
        elif isinstance(part, Paragraph):
            content.append({"type": "paragraph", "content": _adf_runs(part.runs)})
        else:
            content.append(
                {
                    "type": "orderedList" if part.numbered else "bulletList",
                    "content": [
                        {
                            "type": "listItem",
                            "content": [{"type": "paragraph", "content": _adf_runs(item)}],
                        }
                        for item in part.items
                    ],
                }
            )
    return {"type": "doc", "version": 1, "content": content}


def _adf_runs(runs: tuple[Run, ...]) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    for run in runs:
        if not run.text:
            continue  # ADF rejects empty text nodes
        node: dict[str, Any] = {"type": "text", "text": run.text}
        marks: list[dict[str, Any]] = []
        if run.bold:
            marks.append({"type": "strong"})
        if run.href:
            marks.append({"type": "link", "attrs": {"href": run.href}})
        if marks:
            node["marks"] = marks
        nodes.append(node)
    return nodes


# --------------------------------------------------------------------------- wiki (v2)

_WIKI_SPECIAL = re.compile(r"([\\{}\[\]|!*_^~+#-])")


def wiki_escape(text: str) -> str:
    """Backslash-escape the characters that start wiki markup; newlines become spaces where
    a line break would end a list item."""
    return _WIKI_SPECIAL.sub(r"\\\1", text)


def to_wiki(parts: list[Part]) -> str:
    """Jira wiki markup."""
    lines: list[str] = []
    for part in parts:
        if isinstance(part, Heading):
            lines.append(f"h3. {wiki_escape(part.text)}")
        elif isinstance(part, Paragraph):
            lines.append(_wiki_runs(part.runs))
        else:
            bullet = "#" if part.numbered else "*"
            lines.extend(
                f"{bullet} {_wiki_runs(item).replace(chr(10), ' ')}" for item in part.items
            )
        lines.append("")
    return "\n".join(lines).strip() + "\n"


def _wiki_runs(runs: tuple[Run, ...]) -> str:
    out = []
    for run in runs:
        if not run.text:
            continue
        text = wiki_escape(run.text)
        if run.href:
            # In [label|url] only `]` and `|` would end the URL early.
            url = run.href.replace("|", "%7C").replace("]", "%5D")
            text = f"[{text}|{url}]"
        if run.bold:
            text = f"*{text.strip()}* " if text.endswith(" ") else f"*{text}*"
        out.append(text)
    return "".join(out)
