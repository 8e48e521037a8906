"""No false positives: real Alertmanager alerts and realistic tool output pass untouched.

The alerts are every alert in the captured fixtures (``tests.conftest.FIXTURES``)
(webhook payloads, the Alertmanager v2 API and the Prometheus alerts API), seen three ways:
each label and annotation value, each alert as JSON, and each webhook alert fenced exactly as
the prompt renders it. The tool outputs are in corpus/benign/: Prometheus and Loki query
results, logs with ids and hashes, stack traces, kubectl output, JSON API objects, HTML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_sentinel.models import WebhookPayload
from mcp_sentinel.prompts import fence_alert_data
from mcp_sentinel.validators import AgentInput, Approved, ToolOutput
from mcp_sentinel.validators.injection_guard import InjectionGuard
from mcp_sentinel.validators.secret_redaction import SecretRedactor, redact
from tests.conftest import FIXTURES
from tests.validators.conftest import CORPUS, context

BENIGN_FILES = sorted((CORPUS / "benign").iterdir())
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def _alerts(document: Any) -> list[dict[str, Any]]:
    """Every object with ``labels`` in a fixture: alerts of any of the three APIs."""
    found: list[dict[str, Any]] = []
    if isinstance(document, dict):
        if isinstance(document.get("labels"), dict) and (
            "annotations" in document or "fingerprint" in document or "state" in document
        ):
            found.append(document)
        for value in document.values():
            found.extend(_alerts(value))
    elif isinstance(document, list):
        for value in document:
            found.extend(_alerts(value))
    return found


def _alert_texts(path: Path) -> list[str]:
    texts: list[str] = []
    for alert in _alerts(json.loads(path.read_text())):
        texts.append(json.dumps(alert))
        for group in ("labels", "annotations"):
            texts.extend(f"{key}={value}" for key, value in alert.get(group, {}).items())
    return texts


def test_the_fixtures_hold_alerts() -> None:
    alerts = [alert for path in FIXTURE_FILES for alert in _alerts(json.loads(path.read_text()))]
    assert len(FIXTURE_FILES) >= 13 and len(alerts) >= 180


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_alert_text_yields_no_false_positive(path: Path) -> None:
    guard, redactor = InjectionGuard(action="reject"), SecretRedactor()
    for text in _alert_texts(path):
        output = ToolOutput("Checkout", "inc-1", "am", "alerts", text, is_error=False)
        assert isinstance(guard.validate(output, context()), Approved), text
        assert isinstance(redactor.validate(output, context()), Approved), text


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fenced_fixture_alerts_yield_no_false_positive(path: Path) -> None:
    document = json.loads(path.read_text())
    if not (isinstance(document, dict) and document.get("version") == "4"):
        pytest.skip("not a webhook payload")
    guard, redactor = InjectionGuard(action="reject"), SecretRedactor()
    for notification in WebhookPayload.model_validate(document).notifications():
        action = AgentInput("Checkout", "inc-1", "Investigate.", fence_alert_data(notification))
        assert isinstance(guard.validate(action, context()), Approved)
        assert isinstance(redactor.validate(action, context()), Approved)


@pytest.mark.parametrize("path", BENIGN_FILES, ids=lambda p: p.name)
def test_realistic_tool_output_yields_no_false_positive(path: Path) -> None:
    text = path.read_text()
    output = ToolOutput("Checkout", "inc-1", "ops", "read", text, is_error=False)
    guard_result = InjectionGuard(action="reject").validate(output, context())
    assert isinstance(guard_result, Approved), guard_result
    redacted, counts = redact(text)
    assert not counts, counts
    assert redacted == text


def test_the_benign_corpus_is_varied() -> None:
    assert len(BENIGN_FILES) >= 15
    suffixes = {path.suffix for path in BENIGN_FILES}
    assert {".json", ".txt", ".log", ".html"} <= suffixes


def test_captured_request_headers_do_get_redacted() -> None:
    # Not an alert: the captured webhook request, whose bearer token is a real credential.
    headers = json.loads((FIXTURES / "webhook_request_headers.json").read_text())
    text = json.dumps(headers)
    redacted, counts = redact(text)
    assert "probe-secret-token" not in redacted and counts
