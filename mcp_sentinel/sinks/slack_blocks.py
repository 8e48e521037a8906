"""Block Kit messages for an incident, within Slack's limits.

Limits kept (Slack rejects a message over them with ``invalid_blocks``): at most 50 blocks; a
section's text at most 3,000 characters; a header's at most 150; at most 10 fields of at most
2,000 characters each. Long content is cut with a note saying how much was cut; when the blocks
run out, the last one says how many were left out. Links and the run facts are kept whatever
happens to the body.

Alert and model text is untrusted: ``&``, ``<`` and ``>`` are escaped, so an annotation cannot
mention ``<!channel>`` or forge a link. Every function here is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp_sentinel.models import IncidentNotification, IncidentReport, Outcome
from mcp_sentinel.sinks import render

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_FALLBACK_TEXT = 3000  # Slack cuts `text` at 40,000; a notification needs far less
MAX_ITEM_TEXT = 1000  # one evidence item or action, so one long item cannot crowd out the rest
MAX_LINK_URL = 2000

_SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "page": ":red_circle:",
    "high": ":red_circle:",
    "error": ":large_orange_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
_NOTE = "cut to fit Slack; the audit log has the full report"

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """``text`` (the notification and fallback) and ``blocks``."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: the three characters that start entities, links and mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> str:
    """Already-escaped mrkdwn cut to ``limit`` characters with a note, never inside an entity
    (``&amp;``) or a link (``<url|label>``)."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(_cut_note(len(text))))
    head = text[:keep]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    opening = head.rfind("<")
    if opening != -1 and ">" not in head[opening:]:
        head = head[:opening]
    return head + _cut_note(len(text) - len(head))


def _cut_note(count: int) -> str:
    return f"… _({_NOTE}: {count} more characters)_"


def _plain(text: str, limit: int) -> str:
    return render.truncate(text, limit, note="cut")


def _link(link: render.Link) -> str | None:
    if len(link.url) > MAX_LINK_URL:
        return None
    # Inside <url|label> a `|` or `>` would end the URL early: percent-encode them.
    url = link.url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{url}|{link.label}>"


class _Blocks:
    """Collects body blocks, then appends the tail (links, run facts) within ``MAX_BLOCKS``."""

    def __init__(self) -> None:
        self.body: list[Block] = []

    def header(self, text: str) -> None:
        self.body.append(
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": _plain(text, MAX_HEADER_TEXT),
                    "emoji": True,
                },
            }
        )

    def section(self, mrkdwn: str) -> None:
        if mrkdwn.strip():
            self.body.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": fit(mrkdwn, MAX_SECTION_TEXT)},
                }
            )

    def fields(self, pairs: list[tuple[str, str]]) -> None:
        fields = [
            {"type": "mrkdwn", "text": fit(f"*{escape(name)}*\n{escape(value)}", MAX_FIELD_TEXT)}
            for name, value in pairs[:MAX_FIELDS]
        ]
        if fields:
            self.body.append({"type": "section", "fields": fields})

    def listing(self, title: str, items: list[str]) -> None:
        """A titled list packed into as few sections as fit, each item cut to MAX_ITEM_TEXT."""
        current = f"*{title}*"
        for item in items:
            line = "\n" + fit(item, MAX_ITEM_TEXT)
            if len(current) + len(line) > MAX_SECTION_TEXT:
                self.section(current)
                current = f"*{title}* (continued)"
            current += line
        self.section(current)

    def build(self, tail: list[Block]) -> list[Block]:
        room = MAX_BLOCKS - len(tail)
        if len(self.body) <= room:
            return self.body + tail
        kept = self.body[: room - 1]
        left_out = len(self.body) - len(kept)
        note: Block = {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"_{left_out} more block(s) left out: {_NOTE}._"}
            ],
        }
        return [*kept, note, *tail]


def _header(notification: IncidentNotification, lead: str) -> str:
    """``:red_circle: CRITICAL · Alert on host``, or ``<lead> · CRITICAL · ...``."""
    level = render.severity(notification)
    start = lead or _SEVERITY_EMOJI.get(level, ":white_circle:")
    separator = " · " if lead else " "
    return f"{start}{separator}{level.upper()} · {render.title(notification)}"


def _fallback(notification: IncidentNotification, state: str) -> str:
    summary = render.alert_summary(notification)
    text = f"[{state}] [{render.severity(notification).upper()}] {render.title(notification)}"
    return fit(escape(f"{text}: {summary}" if summary else text), MAX_FALLBACK_TEXT)


def _tail(notification: IncidentNotification, report: IncidentReport | None) -> list[Block]:
    tail: list[Block] = []
    rendered: list[str] = []
    for text in map(_link, render.links(notification)):
        # A link is never cut (it would break); one that does not fit is left out.
        if text and len("  ·  ".join([*rendered, text])) <= MAX_SECTION_TEXT:
            rendered.append(text)
    if rendered:
        tail.append({"type": "section", "text": {"type": "mrkdwn", "text": "  ·  ".join(rendered)}})
    facts = (
        render.run_facts(report)
        if report is not None and report.outcome is not Outcome.RESOLVED
        else ""
    )
    context = escape(facts or f"fingerprint {notification.fingerprint}")
    tail.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": fit(context, MAX_SECTION_TEXT)}],
        }
    )
    return tail


def incident_message(
    notification: IncidentNotification,
    report: IncidentReport | None,
    *,
    resolution: IncidentNotification | None = None,
) -> SlackMessage:
    """The incident's one message, in its current state.

    ``report`` None and no ``resolution``: "investigating". A report: its finding (or why there
    is none). ``resolution``: the same, marked resolved with when and after how long.
    """
    if resolution is not None:
        lead, state = ":white_check_mark: Resolved", "RESOLVED"
    elif report is None:
        lead, state = ":mag: Investigating", "INVESTIGATING"
    else:
        lead, state = "", "FIRING"
    blocks = _Blocks()
    blocks.header(_header(notification, lead))
    labels = render.key_labels(notification.labels, limit=MAX_FIELDS - 2)
    blocks.fields(
        [("Status", state.title()), ("Started", render.when(notification.starts_at)), *labels]
    )
    if resolution is not None:
        lasted = render.duration(resolution)
        blocks.section(
            f"*Resolved* at {render.when(resolution.ends_at)}"
            + (f" after {lasted}." if lasted else ".")
        )
    finding = report.finding if report is not None else None
    if finding is not None:
        blocks.section(f"*Summary*\n{escape(finding.summary)}")
        blocks.section(
            f"*Probable cause* (confidence {finding.confidence:.0%})\n"
            f"{escape(finding.probable_cause)}"
        )
        if finding.evidence:
            blocks.listing(
                "Evidence",
                [f"• *{escape(item.source)}*: {escape(item.detail)}" for item in finding.evidence],
            )
        if finding.recommended_actions:
            blocks.listing(
                "Recommended actions",
                [
                    f"{n}. {escape(action)}"
                    for n, action in enumerate(finding.recommended_actions, 1)
                ],
            )
    else:
        summary = render.alert_summary(notification)
        if summary:
            blocks.section(f"*Alert says*\n{escape(summary)}")
        if report is not None and report.outcome is not Outcome.RESOLVED:
            blocks.section(escape(render.outcome_line(report)))
        elif report is None and resolution is None:
            blocks.section("_The agent is investigating; this message will show its finding._")
    return SlackMessage(_fallback(notification, state), blocks.build(_tail(notification, report)))


def resolution_reply(resolution: IncidentNotification) -> SlackMessage:
    """The thread reply posted when the incident resolves."""
    lasted = render.duration(resolution)
    text = f":white_check_mark: Resolved at {render.when(resolution.ends_at)}" + (
        f" after {lasted}." if lasted else "."
    )
    return SlackMessage(text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])


def late_finding_reply(report: IncidentReport) -> SlackMessage:
    """A finding that arrived after the incident resolved: posted in the thread, not over the
    resolved message."""
    finding = report.finding
    body = escape(finding.summary if finding is not None else render.outcome_line(report))
    text = fit(f"Finding (after resolution): {body}", MAX_SECTION_TEXT)
    return SlackMessage(text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])
