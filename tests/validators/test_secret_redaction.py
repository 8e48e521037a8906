"""Secret redaction against the corpus of credentials, and in every part of a report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcp_sentinel.models import ToolCallRecord
from mcp_sentinel.validators import AgentInput, Approved, Modified, ReportCheck, ToolOutput
from mcp_sentinel.validators.secret_redaction import SecretRedactor, redact, redact_report
from tests.validators.conftest import context, load_jsonl, make_finding, make_report

SECRETS = load_jsonl("secrets.jsonl")


@pytest.mark.parametrize("row", SECRETS, ids=[row["id"] for row in SECRETS])
def test_each_secret_disappears_behind_a_marker_of_its_kind(row: dict[str, Any]) -> None:
    redacted, counts = redact(row["text"])
    assert row["secret"] not in redacted
    assert f"[REDACTED:{row['kind']}]" in redacted
    assert counts[row["kind"]] >= 1
    assert redact(redacted) == (redacted, {})  # a second pass finds nothing more


@pytest.mark.parametrize("row", SECRETS, ids=[row["id"] for row in SECRETS])
def test_tool_output_is_modified_and_the_reason_names_kinds_only(row: dict[str, Any]) -> None:
    action = ToolOutput("Checkout", "inc-1", "ops", "read", row["text"], is_error=False)
    result = SecretRedactor().validate(action, context())
    assert isinstance(result, Modified)
    assert isinstance(result.action, ToolOutput)
    assert row["secret"] not in result.action.output
    assert row["secret"] not in result.reason and row["kind"] in result.reason


def test_the_corpus_covers_every_kind() -> None:
    kinds = {row["kind"] for row in SECRETS}
    assert kinds >= {
        "openai_api_key", "anthropic_api_key", "slack_token", "slack_webhook", "github_token",
        "aws_access_key_id", "aws_secret_access_key", "gcp_private_key", "gcp_private_key_id",
        "azure_key", "azure_sas", "bearer_token", "authorization_header", "cookie",
        "api_key_header", "password", "secret", "token", "url_credentials", "pem_private_key",
        "jwt", "stripe_key", "stripe_webhook_secret", "gitlab_token", "npm_token",
        "google_api_key", "sendgrid_key", "api_key",
    }  # fmt: skip
    assert len(SECRETS) >= 45


def test_keys_stay_readable_only_values_are_masked() -> None:
    assert redact("DB_PASSWORD=hunter2!x")[0] == "DB_PASSWORD=[REDACTED:password]"
    assert redact('{"password": "a b c"}')[0] == '{"password": "[REDACTED:password]"}'
    assert redact("postgres://app:s3cr3t@db:5432/orders")[0] == (
        "postgres://app:[REDACTED:url_credentials]@db:5432/orders"
    )


SECRET_KEYS = (
    "api_key", "API-KEY", "ApiKey", "access_key", "AccessKey", "access-key", "private_key",
    "privateKey", "private-key", "secret_key", "SECRET-KEY", "client_secret", "DB_PASSWORD",
    "passphrase", "auth_token", "refresh-token", "credentials", "stripe.api_key",
    # IGNORECASE folds these into ASCII letters; str.lower does not.
    "ap\u0131_key", "\u212aey_passwd",
)  # fmt: skip


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_every_spelling_of_a_secret_key_is_masked(key: str) -> None:
    redacted, counts = redact(f"{key}=s3cr3t-Value-42")
    assert redacted == f"{key}=[REDACTED:{counts.most_common(1)[0][0]}]", redacted


@pytest.mark.parametrize(
    "text",
    [
        '"group": {"key": "storm-50", "receiver": "sentinel"}',
        "fingerprint 493612e264dd2f37 and e05715e55116a32e",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
        "uid 6f1c2a9e-3b4d-4e8f-a1b2-c3d4e5f60718",
        "image@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "commit 3f9a1c2e7b4d5a6c8e0f1a2b3c4d5e6f7a8b9c0d",
        'sum(rate(http_requests_total{job="api",code=~"5.."}[5m])) > 0.05',
        "password=******** token: <none> secret: ${DB_SECRET} api_key={{ .Values.key }}",
        "password:  24 bytes",
        "PWD=/home/ec2-user USER=root",
        "next_page_token=MTAw&page_size=50",
        "uses Bearer authentication; see the token docs",
        "Authorization failed for user alice: invalid credentials",
        "task-runner-7d9f8b6c5-x2k4p sk-learn==1.4.2",
    ],
)
def test_ordinary_ids_and_text_are_not_masked(text: str) -> None:
    assert redact(text) == (text, {})


def test_alert_data_is_redacted_and_stays_json() -> None:
    body = json.dumps({"annotations": {"description": "token=ghp_" + "a1B2c3D4" * 5}}, indent=2)
    action = AgentInput("Checkout", "inc-1", "Investigate.", body)
    result = SecretRedactor().validate(action, context())
    assert isinstance(result, Modified) and isinstance(result.action, AgentInput)
    loaded = json.loads(result.action.alert_data)
    assert "ghp_" not in loaded["annotations"]["description"]


def test_every_string_of_a_report_is_redacted() -> None:
    key = "sk-proj-" + "Zx9Yw8Vu7Ts6" * 4
    token = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
    report = make_report(
        make_finding(
            summary=f"The app logged its key {key}.",
            probable_cause=f"A leaked Slack token {token} in the config.",
            evidence=[(f"ops.read {key}", f"Authorization: Bearer {key}")],
            actions=[f"Rotate {key}", "Restart the pod"],
        ),
        tools_called=[
            ToolCallRecord(
                tool="read",
                server="ops",
                arguments=json.dumps({"token": token}),
                result=f"OPENAI_API_KEY={key}",
                status="ok",
            )
        ],
        error=f"retry failed with key {key}",
    )
    result = SecretRedactor().validate(
        ReportCheck("Checkout", "inc-1", report, (), tools_available=True), context()
    )
    assert isinstance(result, Modified) and isinstance(result.action, ReportCheck)
    dumped = result.action.report.model_dump_json()
    assert key not in dumped and token not in dumped
    assert "Restart the pod" in dumped and "[REDACTED:openai_api_key]" in dumped
    assert result.action.report.alert == report.alert
    assert key not in result.reason and token not in result.reason


def test_nothing_to_redact_is_approved() -> None:
    report = make_report(make_finding())
    check = ReportCheck("Checkout", "inc-1", report, (), tools_available=False)
    assert isinstance(SecretRedactor().validate(check, context()), Approved)
    out = ToolOutput("Checkout", "inc-1", "prom", "query", "up 1", is_error=False)
    assert isinstance(SecretRedactor().validate(out, context()), Approved)


def test_a_report_with_nothing_to_mask_is_not_copied() -> None:
    report = make_report(
        make_finding(),
        tools_called=[ToolCallRecord(tool="q", server="ops", arguments="{}", result="up 1")],
        error="timed out",
    )
    assert redact_report(report, lambda text: redact(text)[0]) is report
