"""The webhook sink: POSTs each record as JSON to a URL, optionally signed.

Body (``Content-Type: application/json``; UTF-8)::

    {"schema": "mcp_sentinel.incident.v1", "incident_id": "...", "card": "...",
     "notification": {...}, "report": {...}}

``notification`` and ``report`` are the same objects the audit log stores
(``IncidentRecord.as_dict``); the rendered prompt is left out. A resolution is a record whose
``report.outcome`` is ``"resolved"``, with the same ``notification.fingerprint`` and
``starts_at`` as the firing one. A receiver may get the same record more than once (a retry
after a timeout, a delivery repeated after a crash, a redelivered dead letter): every attempt
carries ``Idempotency-Key`` and ``X-Sentinel-Delivery-Id`` (the same value), derived from
``incident_id`` and ``report.outcome`` only, so it is the same for every attempt and after a
restart. A receiver that remembers the keys it processed can drop repeats.

Signature (when ``hmac_secret`` is set), on every attempt::

    X-Sentinel-Timestamp: <unix seconds, integer>
    X-Sentinel-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The signed message is the timestamp's ASCII digits, a dot, then the exact body bytes as sent
(verify before parsing the JSON; do not re-serialise). Signing the timestamp lets a receiver
refuse replays: recompute the HMAC, compare in constant time (``hmac.compare_digest``), and
reject timestamps more than a few minutes from its own clock. Python::

    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(f"sha256={expected}", signature_header)

Answers: any 2xx is success; 429, 408 and 5xx are retried (honouring ``Retry-After``); other
statuses fail at once. The URL may hold a token, so only its host is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from mcp_sentinel.sinks.base import IncidentRecord
from mcp_sentinel.sinks.http import SinkHttpClient, host_of
from mcp_sentinel.sinks.retry import RetryPolicy
from mcp_sentinel.sinks.settings import WebhookSinkSettings

SCHEMA = "mcp_sentinel.incident.v1"
SIGNATURE_HEADER = "X-Sentinel-Signature"
TIMESTAMP_HEADER = "X-Sentinel-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DELIVERY_ID_HEADER = "X-Sentinel-Delivery-Id"
_DELIVERY_NAMESPACE = uuid.UUID("6f1f3c52-52a3-4be4-9f55-0b8f3a1d7e21")


def delivery_id(record: IncidentRecord) -> str:
    """The record's delivery id: a UUID from its incident id and outcome, stable across
    attempts and restarts."""
    name = f"{record.incident.incident_id}/{record.report.outcome.value}"
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, name))


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Sentinel-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def payload(record: IncidentRecord) -> dict[str, Any]:
    data = record.as_dict()
    return {
        "schema": SCHEMA,
        "incident_id": data["incident_id"],
        "card": data["card"],
        "notification": data["notification"],
        "report": data["report"],
    }


class WebhookSink:
    """POSTs records to ``url``; owns one ``SinkHttpClient``."""

    name = "webhook"

    def __init__(
        self,
        settings: WebhookSinkSettings,
        *,
        retry: RetryPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = settings.url.get_secret_value().strip()
        self._what = f"webhook at {host_of(self._url)}"
        self._secret = (
            settings.hmac_secret.get_secret_value().encode()
            if settings.hmac_secret is not None
            else None
        )
        self._clock = clock
        self._http = SinkHttpClient(
            policy=retry,
            timeout_seconds=settings.timeout_seconds,
            default_headers={
                name: value.get_secret_value() for name, value in settings.headers.items()
            },
        )

    async def __aenter__(self) -> WebhookSink:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, traceback)

    async def deliver(self, record: IncidentRecord) -> None:
        body = json.dumps(payload(record), ensure_ascii=False, separators=(",", ":")).encode()
        key = delivery_id(record)

        def headers() -> dict[str, str]:
            result = {
                "Content-Type": "application/json; charset=utf-8",
                IDEMPOTENCY_HEADER: key,
                DELIVERY_ID_HEADER: key,
            }
            if self._secret is not None:
                timestamp = int(self._clock())
                result[TIMESTAMP_HEADER] = str(timestamp)
                result[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
            return result

        await self._http.request("POST", self._url, what=self._what, body=body, headers=headers)
