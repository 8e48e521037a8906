"""The ``Sink`` seam, the record every sink receives, and the fan-out the handler talks to.

The fan-out's implementation is ``delivery.SinkDispatcher``; ``factory.open_sinks`` builds it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mcp_sentinel.models import Incident, IncidentReport
from mcp_sentinel.prompts import RenderedPrompt

# One encoder for all: json.dumps builds a new one on every call that passes options.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: keys sorted, no spaces, non-ASCII characters as they are."""
    return _CANONICAL.encode(value)


def canonical_object(fields: Mapping[str, str]) -> str:
    """The canonical JSON of an object whose values come already encoded by
    ``canonical_json``: the very text ``canonical_json`` gives for the decoded object."""
    members = ",".join(f"{canonical_json(key)}:{fields[key]}" for key in sorted(fields))
    return "{" + members + "}"


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """Everything known about one finished incident: what came in, what the agent was told,
    what it did and found."""

    incident: Incident
    prompt: RenderedPrompt | None
    report: IncidentReport
    _json: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def json_fields(self) -> Mapping[str, str]:
        """Each value of ``as_dict()`` as ``canonical_json`` text, by key; encoded on first
        use and kept, since the outbox and the audit log both write the record (nothing changes
        a record once it is made)."""
        if self._json is None:
            encoded = {key: canonical_json(value) for key, value in self.as_dict().items()}
            object.__setattr__(self, "_json", encoded)  # a cache, on a frozen dataclass
            return encoded
        return self._json

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view: the notification, the card, the prompt and the report."""
        prompt = self.prompt
        return {
            "incident_id": self.incident.incident_id,
            "card": self.incident.card.resource,
            "notification": self.incident.notification.as_dict(),
            "prompt": None
            if prompt is None
            else {
                "template": prompt.template,
                "instructions": prompt.instructions,
                "alert_data": prompt.alert_data,
            },
            "report": self.report.model_dump(mode="json"),
        }


class Sink(Protocol):
    """Delivers incident records somewhere. ``deliver`` raises on failure; the message must
    never contain the sink's secret (a shared test checks every sink).

    A record whose ``report.outcome`` is ``resolved`` closes the incident with the same
    ``notification.key`` (fingerprint, startsAt) as the firing record before it. A sink may
    receive the same record twice (a redelivered dead letter, a repeat after the dedupe TTL)
    and should then update rather than post again where its medium allows.
    """

    @property
    def name(self) -> str: ...

    async def deliver(self, record: IncidentRecord) -> None: ...


@runtime_checkable
class LifecycleSink(Sink, Protocol):
    """A sink that also wants to know when an investigation starts (the Slack bot posts an
    "investigating" message and later updates it in place). Optional: the fan-out checks for
    ``investigation_started`` and skips sinks without it."""

    async def investigation_started(self, incident: Incident) -> None: ...


class SinkFanout(Protocol):
    """What the incident handler holds: hands records and lifecycle events to a card's sinks.

    Neither method raises for a sink's failure, and neither waits for a remote sink: those are
    queued and delivered by the sinks' own tasks (``delivery.SinkDispatcher``), failures going
    to the dead-letter files. Names not configured are skipped.
    """

    @property
    def names(self) -> list[str]: ...

    async def started(self, incident: Incident, sink_names: Sequence[str]) -> None:
        """An investigation of ``incident`` began; tells the sinks that implement
        ``LifecycleSink``. Call it before the report's ``deliver``: per sink, events are
        delivered in the order they were given."""
        ...

    async def deliver(self, record: IncidentRecord, sink_names: Sequence[str]) -> None:
        """Deliver a finished incident (or a resolution) to the named sinks."""
        ...
