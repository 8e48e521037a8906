"""Grounding: flag claims in a report that nothing the agent saw supports (the hallucination check).

For a ``ReportCheck`` with a finding, the figures, hosts and metric names (see ``claims``) cited
in the summary, probable cause, evidence details and recommended actions are looked up in:

* ``ReportCheck.seen_texts`` (the alert data and every tool output the agent saw) and the
  report's own ``alert``;
* for figures and metric names only, also the arguments of the report's successful tool calls:
  a time window (``[5m]``) or a metric the agent queried came from its own query, and a
  Prometheus result drops ``__name__`` under ``rate()``. Hosts are not grounded this way: a
  host the agent guessed and queried is still a guess.

Each claim found nowhere is ungrounded. A finding with no evidence while the card offered tools
is flagged too. Then the result is ``Modified``: ``report.flags`` gains one line per problem
("ungrounded: 87% not found in any tool output or the alert", "no evidence cited although
tools were available") and ``finding.confidence`` is multiplied by
``max(min_factor, 1 - penalty_per_claim * n)``, n counting each problem. Otherwise ``Approved``.

Lexical, not semantic: it checks that a figure or a name *occurs* in what was seen, not that
the sentence around it is true ("latency is 250 ms" passes if any 250 ms was seen).
"""

from __future__ import annotations

import json
from dataclasses import replace

from mcp_sentinel.models import Finding
from mcp_sentinel.validators.actions import Action, ActionKind, ReportCheck
from mcp_sentinel.validators.claims import Claim, Evidence, extract_claims
from mcp_sentinel.validators.pipeline import (
    Approved,
    IncidentContext,
    Modified,
    ValidationResult,
)

NO_EVIDENCE_FLAG = "no evidence cited although tools were available"
_MAX_NAMED = 5  # claims named in the reason; the flags list them all


def ungrounded_flag(claim: Claim) -> str:
    return f"ungrounded: {claim.describe()} not found in any tool output or the alert"


def finding_texts(finding: Finding) -> list[str]:
    """The parts of a finding whose claims are checked."""
    return [
        finding.summary,
        finding.probable_cause,
        *(item.detail for item in finding.evidence),
        *finding.recommended_actions,
    ]


class GroundingCheck:
    """The ``grounding`` validator. Stateless."""

    name = "grounding"
    can_modify = True
    kinds: frozenset[ActionKind] = frozenset({"report"})

    def __init__(
        self, *, priority: int = 20, penalty_per_claim: float = 0.15, min_factor: float = 0.2
    ) -> None:
        if not (0 <= penalty_per_claim <= 1 and 0 <= min_factor <= 1):
            raise ValueError("penalty_per_claim and min_factor must be between 0 and 1")
        self.priority = priority
        self._penalty = penalty_per_claim
        self._min_factor = min_factor

    def validate(self, action: Action, context: IncidentContext) -> ValidationResult:
        if not isinstance(action, ReportCheck) or action.report.finding is None:
            return Approved()
        report = action.report
        finding = report.finding
        assert finding is not None
        seen = Evidence([*action.seen_texts, json.dumps(report.alert, default=str)])
        queried = Evidence([call.arguments for call in report.tools_called if call.status == "ok"])
        claims: dict[str, Claim] = {}
        for text in finding_texts(finding):
            for claim in extract_claims(text):
                claims.setdefault(f"{claim.kind}:{claim.text.lower()}", claim)
        ungrounded = [
            claim
            for claim in claims.values()
            if not seen.supports(claim) and (claim.kind == "host" or not queried.supports(claim))
        ]
        problems = [ungrounded_flag(claim) for claim in ungrounded]
        if action.tools_available and not finding.evidence:
            problems.append(NO_EVIDENCE_FLAG)
        if not problems:
            return Approved()
        factor = max(self._min_factor, 1.0 - self._penalty * len(problems))
        before = min(1.0, max(0.0, finding.confidence))
        after = round(before * factor, 4)
        flags = list(report.flags) + [flag for flag in problems if flag not in report.flags]
        changed = report.model_copy(
            update={
                "finding": finding.model_copy(update={"confidence": after}),
                "flags": flags,
            }
        )
        named = ", ".join(claim.describe() for claim in ungrounded[:_MAX_NAMED])
        if len(ungrounded) > _MAX_NAMED:
            named += f" and {len(ungrounded) - _MAX_NAMED} more"
        parts = [f"{len(ungrounded)} ungrounded claim(s): {named}"] if ungrounded else []
        if NO_EVIDENCE_FLAG in problems:
            parts.append(NO_EVIDENCE_FLAG)
        reason = f"{'; '.join(parts)}; confidence {before:g} -> {after:g}"
        return Modified(replace(action, report=changed), reason)
