"""The Alertmanager webhook receiver: ``POST /webhook/alertmanager``.

Answers, as Alertmanager needs them (it retries 5xx with backoff and never retries 4xx):

- 200 once every alert of the payload is accepted: queued, a known duplicate, or unrouted
  (counted and logged: a retry would not route it either);
- 400 for a malformed payload, naming the field (the body is parsed as JSON whatever its
  Content-Type says, so ``curl -d @payload.json`` works);
- 401 for missing or wrong credentials; 413 for a body over ``max_body_bytes`` (checked
  against ``Content-Length`` before the body is read, and while it is read);
- 408 when the body does not arrive within ``read_timeout_seconds`` (the connection is then
  closed: a client that stalls mid-body holds nothing for long);
- 503 with ``Retry-After`` when it cannot take the whole payload now (queue full, shutting
  down, or the intake is unhealthy: the state database or the audit log cannot be written),
  and then it takes none of it, so the retry is clean. With the SQLite backend, 200 means
  the payload's incidents are committed to disk.

Capture (``server.capture_dir``, ``sentinel run --capture DIR``): each request answered 200 is
also written to DIR as one file, ``<UTC time to the ms>Z-<8 hex>.json`` (names sort by time),
holding ``{"received_at": ISO 8601, "headers": {request headers minus credentials},
"payload": <the request body, byte for byte>}``; written atomically (temporary file, rename)
in a worker thread. A failed write is logged and does not change the answer. Refused requests
(4xx, 503) are not captured. The format in full: ``mcp_sentinel.watchers.capture``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from loguru import logger
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from pydantic import ValidationError

from mcp_sentinel.config import format_location
from mcp_sentinel.models import DispatchOutcome, WebhookPayload
from mcp_sentinel.telemetry.loop_counter import LoopCounterChild
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from mcp_sentinel.telemetry.tracing import extract_context
from mcp_sentinel.watchers.auth import RequestAuthenticator
from mcp_sentinel.watchers.base import Intake
from mcp_sentinel.watchers.capture import CaptureWriter

WEBHOOK_PATH = "/webhook/alertmanager"
_MAX_ERRORS_SHOWN = 10
_COUNTED = (DispatchOutcome.QUEUED, DispatchOutcome.DUPLICATE, DispatchOutcome.UNROUTED)


def _json_error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"status": "error", "error": message, **extra}, status=status)


def describe_validation_error(error: ValidationError) -> list[str]:
    """Readable problems: ``alerts[0].fingerprint: Field required``."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        location = format_location(tuple(item["loc"]))
        problems.append(f"{location or 'payload'}: {item['msg']}")
    return problems


class AlertmanagerWebhook:
    """Turns webhook payloads into notifications for the intake. One per HTTP server.

    With ``capture_dir`` it owns a ``CaptureWriter`` and captures every accepted request there.
    """

    def __init__(
        self,
        *,
        intake: Intake,
        authenticator: RequestAuthenticator,
        metrics: SentinelMetrics,
        max_body_bytes: int,
        retry_after_seconds: int,
        capture_dir: Path | None = None,
        read_timeout_seconds: float = 30.0,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer or trace.NoOpTracer()
        # Spans cost a few percent of a request even when nothing records them.
        self._traced = not isinstance(self._tracer, trace.NoOpTracer)
        # Label lookups cached: this is the per-request path.
        self._requests_by_status: dict[int, LoopCounterChild] = {}
        self._received = {
            status: metrics.alerts_received.labels("webhook", status)
            for status in ("firing", "resolved")
        }
        self._intake = intake
        self._authenticator = authenticator
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes
        self._read_timeout = read_timeout_seconds
        self._retry_after = str(retry_after_seconds)
        self._capture = CaptureWriter(capture_dir) if capture_dir is not None else None
        if capture_dir is not None:
            logger.info("capturing accepted webhook requests in {directory}", directory=capture_dir)

    def register(self, app: web.Application) -> None:
        app.router.add_post(WEBHOOK_PATH, self.receive)

    def _unavailable(self, message: str) -> web.Response:
        response = _json_error(503, message)
        response.headers["Retry-After"] = self._retry_after
        return response

    async def receive(self, request: web.Request) -> web.Response:
        if self._traced:
            # A caller's W3C traceparent is continued: its trace then holds this request, the
            # dispatch and, through the incidents, their investigations.
            with self._tracer.start_as_current_span(
                f"POST {WEBHOOK_PATH}",
                context=extract_context(request.headers.get("traceparent")),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "url.path": WEBHOOK_PATH},
            ) as span:
                response = await self._answer(request)
                span.set_attribute("http.response.status_code", response.status)
        else:
            response = await self._answer(request)
        counter = self._requests_by_status.get(response.status)
        if counter is None:
            counter = self._metrics.webhook_requests.labels(str(response.status))
            self._requests_by_status[response.status] = counter
        counter.inc()
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        if not self._authenticator.allows(request.headers.get("Authorization")):
            response = _json_error(
                401, "missing or invalid credentials in the Authorization header"
            )
            if self._authenticator.challenge:
                response.headers["WWW-Authenticate"] = self._authenticator.challenge
            return response
        declared = request.content_length
        if declared is not None and declared > self._max_body_bytes:
            return _json_error(
                413, f"body of {declared} bytes is over the limit of {self._max_body_bytes} bytes"
            )
        if not self._intake.accepting:
            problem = self._intake.problem or "starting up or shutting down"
            return self._unavailable(f"not accepting alerts now: {problem}")
        try:
            if request.content.is_eof():
                # The whole body came with the head (the usual case): nothing to wait for, so
                # no timer to arm.
                body = await request.read()
            else:
                async with asyncio.timeout(self._read_timeout):
                    body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, f"body is over the limit of {self._max_body_bytes} bytes")
        except TimeoutError:
            response = _json_error(
                408, f"the request body did not arrive within {self._read_timeout:g}s"
            )
            response.force_close()
            return response
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            problems = describe_validation_error(exc)
            return _json_error(
                400,
                "malformed Alertmanager webhook payload: "
                + "; ".join(problems[:_MAX_ERRORS_SHOWN]),
                problems=problems[:_MAX_ERRORS_SHOWN],
            )
        received_at = datetime.now(UTC)
        notifications = payload.notifications(received_at=received_at)
        resolved = [notification.status for notification in notifications].count("resolved")
        if resolved:
            self._received["resolved"].inc(resolved)
        if resolved < len(notifications):
            self._received["firing"].inc(len(notifications) - resolved)
        if payload.truncatedAlerts:
            logger.warning(
                "Alertmanager truncated {count} alert(s) of group {group}: they will never arrive "
                "here; raise max_alerts in the receiver's webhook_config",
                count=payload.truncatedAlerts,
                group=payload.groupKey,
            )
        if self._traced:
            with self._tracer.start_as_current_span(
                "dispatch", attributes={"sentinel.alerts": len(notifications)}
            ) as span:
                result = await self._intake.dispatch(notifications, body=body)
                for outcome in (DispatchOutcome.QUEUED, DispatchOutcome.DUPLICATE):
                    span.set_attribute(f"sentinel.{outcome.value}", result.count(outcome))
        else:
            result = await self._intake.dispatch(notifications, body=body)
        if not result.accepted:
            return self._unavailable(
                f"cannot take {len(notifications)} alert(s) now (queue full or shutting down); "
                "nothing of this payload was taken"
            )
        if self._capture is not None:
            await self._capture.write(body, request.headers.items(), received_at)
        # Written out rather than through json.dumps: the same JSON at a tenth of the cost,
        # once per request.
        queued, duplicate, unrouted = (result.count(outcome) for outcome in _COUNTED)
        answer = (
            f'{{"status": "accepted", "alerts": {len(notifications)}, "queued": {queued}, '
            f'"duplicate": {duplicate}, "unrouted": {unrouted}}}'
        )
        return web.Response(body=answer.encode(), content_type="application/json")
