"""Boundary types: what comes in from Alertmanager, what a card says, what an investigation yields.

External JSON is parsed into pydantic models here (``WebhookPayload``); inside the daemon an
alert travels as the plain, immutable ``IncidentNotification``. The agent's structured output is
``Finding``; the ``IncidentReport`` wraps it with the facts of the run and is what sinks receive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypedDict

from mcp_sentinel.dispatcher.routing import LabelMatcher

AlertStatus = Literal["firing", "resolved"]
Source = Literal["webhook", "prometheus", "alertmanager", "replay"]
NonEmpty = Annotated[str, Field(min_length=1)]
DedupeKey = tuple[str, datetime, str]

#: Alertmanager's "not set" time, sent as ``endsAt`` of a firing alert.
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- Alertmanager


class WebhookAlert(TypedDict):
    """One alert of an Alertmanager webhook payload (version 4). Unknown fields are ignored.

    A ``TypedDict``, not a model: pydantic validates it as strictly, and a payload's alerts
    then parse ~20% faster (no model instance per alert), which a storm's intake pays per
    alert. Read it with ``WebhookPayload.notifications``.
    """

    status: AlertStatus
    labels: dict[str, str]
    annotations: NotRequired[dict[str, str]]
    startsAt: datetime  # the wire spelling, as every key here
    endsAt: NotRequired[datetime]  # ZERO_TIME (or absent) while firing
    generatorURL: NotRequired[str]
    fingerprint: NonEmpty


class WebhookPayload(BaseModel):
    """The body Alertmanager POSTs to a webhook receiver (``version`` "4").

    Every documented field is here; ``notification_reason`` (Alertmanager 0.32+) is optional and
    fields this version does not know are ignored, so a newer Alertmanager still gets through.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: Literal["4"]
    groupKey: str  # noqa: N815
    truncatedAlerts: int = Field(default=0, ge=0)  # noqa: N815
    status: AlertStatus
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815
    alerts: list[WebhookAlert] = Field(min_length=1)
    notification_reason: str | None = None

    def notifications(
        self, *, source: Source = "webhook", received_at: datetime | None = None
    ) -> list[IncidentNotification]:
        """One ``IncidentNotification`` per alert, sharing this payload's group facts."""
        when = received_at or datetime.now(UTC)
        group = AlertGroup(
            key=self.groupKey,
            labels=self.groupLabels,
            receiver=self.receiver,
            external_url=self.externalURL,
        )
        notifications = []
        for alert in self.alerts:
            # ``endsAt`` unset is ZERO_TIME, in year 1; a year test is ~20x cheaper than
            # comparing aware datetimes, per alert.
            ends_at = alert.get("endsAt")
            # Positional: a keyword call of ten arguments costs a third more, per alert.
            notifications.append(
                IncidentNotification(
                    alert["fingerprint"],
                    alert["startsAt"],
                    ends_at if ends_at is not None and ends_at.year > 1 else None,
                    alert["status"],
                    alert["labels"],
                    alert.get("annotations") or {},
                    alert.get("generatorURL", ""),
                    group,
                    source,
                    when,
                )
            )
        return notifications


# --------------------------------------------------------------------------- inside


# The three classes below are built for every alert on the intake path. They are not
# ``frozen``: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
# which costs ~2 µs more per object than plain slot stores. Nothing assigns their fields after
# construction; treat them as immutable.


@dataclass(slots=True)
class AlertGroup:
    """The Alertmanager group an alert arrived in."""

    key: str
    labels: dict[str, str]
    receiver: str
    external_url: str


@dataclass(slots=True)
class IncidentNotification:
    """One alert, as the daemon carries it from a watcher to a worker.

    Its identity is ``key`` = (fingerprint, startsAt): Alertmanager repeats byte-identical
    notifications every ``repeat_interval``, and a re-fire keeps the fingerprint with a new
    startsAt. ``ends_at`` is None while the alert fires.
    """

    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    group: AlertGroup
    source: Source
    received_at: datetime

    @property
    def key(self) -> tuple[str, datetime]:
        return (self.fingerprint, self.starts_at)

    @property
    def dedupe_key(self) -> DedupeKey:
        """The identity plus the status: a resolved notice is not a repeat of its firing one."""
        return (self.fingerprint, self.starts_at, self.status)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def runbook_url(self) -> str:
        return self.annotations.get("runbook_url", "") or self.annotations.get("runbook", "")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view, for the audit log and the prompt context."""
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "generator_url": self.generator_url,
            "runbook_url": self.runbook_url,
            "group": {
                "key": self.group.key,
                "labels": dict(self.group.labels),
                "receiver": self.group.receiver,
                "external_url": self.group.external_url,
            },
            "source": self.source,
            "received_at": self.received_at.isoformat(),
        }


def new_incident_id() -> str:
    """32 random hex digits, as ``uuid4().hex`` spells them, without a system call per id.

    An id names an incident; it guards nothing, so the process's PRNG (seeded from the OS at
    start) serves, at a fraction of ``uuid4``'s cost on the intake path. Every digit is random
    because people read the first 12 (``incident 1a2b3c4d5e6f`` in the console, Slack and
    Jira): ids ordered by a per-process counter would share those (measured, the ordered
    ids saved only ~2-9 µs per alert of the state database's insert).
    """
    return _ids.getrandbits(128).to_bytes(16).hex()  # a third of an f-string's "032x" cost


_ids = random.Random()


@dataclass(slots=True)
class Incident:
    """A routed notification waiting for, or under, investigation."""

    notification: IncidentNotification
    card: IncidentCard
    incident_id: str = field(default_factory=new_incident_id)
    enqueued_monotonic: float = 0.0
    # The W3C ``traceparent`` of the span that accepted it (the webhook request), so the
    # worker's spans join that trace; None when tracing is off or the source had no span.
    traceparent: str | None = None


@dataclass(slots=True)
class PayloadOrigin:
    """The webhook payload a batch of incidents came from, as it arrived.

    ``body`` is an Alertmanager webhook payload (version 4), byte for byte; ``positions[i]`` is
    the index in its ``alerts`` of the alert that ``incidents[i]`` of the batch was made from
    (``WebhookPayload.notifications`` keeps the payload's order). A durable queue may keep the
    body once for the whole batch, rather than encode every alert again, and parse it anew
    after a restart (with ``received_at`` and ``source`` from the notifications). Built per
    payload, so not ``frozen`` (that costs ~2 µs more to build); treat it as immutable.
    """

    body: bytes
    positions: list[int]


class DispatchOutcome(StrEnum):
    """What ``dispatch`` did with one notification."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    UNROUTED = "unrouted"
    REJECTED = "rejected"


# --------------------------------------------------------------------------- cards


class IncidentCard(BaseModel):
    """An incident card: which alerts it takes and how the agent investigates them.

    The spellings of the original design load too: ``max-iterations`` and ``mcp-servers``
    (for ``tools``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    resource: NonEmpty
    match: tuple[str, ...] | None = None
    prompt: NonEmpty
    model: str | None = None
    tools: tuple[str, ...] = Field(
        default=(), validation_alias=AliasChoices("tools", "mcp-servers", "mcp_servers")
    )
    sinks: tuple[str, ...] = ("console", "audit")
    max_iterations: int = Field(
        default=8, ge=1, le=100, validation_alias=AliasChoices("max_iterations", "max-iterations")
    )
    timeout_seconds: float = Field(default=300, gt=0, le=3600)

    @field_validator("match")
    @classmethod
    def _matchers_parse(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for text in value or ():
            LabelMatcher.parse(text)
        return value

    def matchers(self) -> tuple[LabelMatcher, ...]:
        """The card's matchers; without ``match``: ``alertname="<resource>"``."""
        if self.match is None:
            return (LabelMatcher("alertname", "=", self.resource),)
        return tuple(LabelMatcher.parse(text) for text in self.match)

    def tool_servers(self) -> dict[str, frozenset[str] | None]:
        """Server name -> allowed tool names (None: every tool of that server)."""
        allowed: dict[str, set[str] | None] = {}
        for entry in self.tools:
            server, _, tool = entry.partition(".")
            if not tool:
                allowed[server] = None
            elif server not in allowed or allowed[server] is not None:
                current = allowed.setdefault(server, set())
                assert current is not None
                current.add(tool)
        return {
            name: None if tools is None else frozenset(tools) for name, tools in allowed.items()
        }


# --------------------------------------------------------------------------- findings


class EvidenceItem(BaseModel):
    """One piece of evidence the agent cites: what it saw and where."""

    source: str = Field(description="Where it was seen: the alert, or the tool that returned it.")
    detail: str = Field(description="What was seen, quoting the figures and names involved.")


class Finding(BaseModel):
    """The agent's structured answer. Every field is required so the schema is strict-mode."""

    summary: str = Field(description="Two or three sentences on what is happening.")
    probable_cause: str = Field(description="The most likely cause, or 'unknown' and why.")
    evidence: list[EvidenceItem] = Field(description="What supports the cause, from tool output.")
    recommended_actions: list[str] = Field(description="What the on-call engineer should do next.")
    confidence: float = Field(description="0.0 (a guess) to 1.0 (certain).")


class Outcome(StrEnum):
    """How an investigation ended."""

    COMPLETED = "completed"
    ANALYSIS_FAILED = "analysis_failed"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"  # resolved before the investigation finished


class ToolCallRecord(BaseModel):
    """One tool call the agent made, with what it returned."""

    tool: str
    server: str | None = None
    arguments: str
    result: str | None = None
    status: Literal["ok", "error", "refused", "pending"] = "pending"
    duration_seconds: float | None = None


class IncidentReport(BaseModel):
    """What an incident yields, for every sink: the finding (if any) and the facts of the run.

    A report exists for every incident taken, even when the model failed: then ``outcome`` is
    ``analysis_failed``, ``error`` says why, and ``finding`` is None, so the alert's own facts
    (``alert``) still reach people.
    """

    incident_id: str
    card: str
    alert: dict[str, Any]
    outcome: Outcome
    finding: Finding | None = None
    error: str | None = None
    model: str | None = None
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tools_called: list[ToolCallRecord] = Field(default_factory=list)
    tools_unavailable: list[str] = Field(default_factory=list)
    queued_seconds: float = 0.0
    duration_seconds: float = 0.0
    started_at: datetime
    finished_at: datetime
    validation: list[dict[str, Any]] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
