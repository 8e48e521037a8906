"""Grounding: claims in a report must occur in what the agent saw."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from mcp_sentinel.models import IncidentNotification, IncidentReport, ToolCallRecord
from mcp_sentinel.prompts import fence_alert_data
from mcp_sentinel.validators import Approved, Modified, ReportCheck
from mcp_sentinel.validators.claims import Evidence, extract_claims
from mcp_sentinel.validators.grounding import NO_EVIDENCE_FLAG, GroundingCheck
from tests.validators.conftest import context, make_finding, make_report

PROM_OUTPUT = json.dumps(
    {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {
                    "metric": {"instance": "app-01.example.internal:8080", "job": "checkout"},
                    "value": [1763782400.362, "0.4213"],
                },
                {
                    "metric": {"__name__": "process_resident_memory_bytes"},
                    "value": [1, "1.610612736e+09"],
                },
            ],
        },
    }
)
LOGS = '2026-11-22T03:30:12Z level=warn msg="pool exhausted" wait=0.25 in_use=50 host=orders-db-0'


@pytest.fixture
def alert_data(notifications: Callable[[str], list[IncidentNotification]]) -> str:
    (notification,) = notifications("webhook_firing_single_alert")
    return fence_alert_data(notification)


def check(report: IncidentReport, *seen: str, tools_available: bool = True) -> ReportCheck:
    return ReportCheck("Checkout", "inc-1", report, tuple(seen), tools_available)


def grounded_finding(confidence: float = 0.8) -> IncidentReport:
    return make_report(
        make_finding(
            summary=(
                "Checkout on app-01.example.internal:8080 answers 42% of requests with 5xx; "
                "resident memory is at 1.5 GiB."
            ),
            probable_cause="The orders database pool is exhausted (50 in use, 250 ms waits).",
            evidence=[
                ("prom.query", "error ratio 0.4213 on app-01.example.internal:8080"),
                ("prom.query", "process_resident_memory_bytes = 1.61e9"),
                ("loki.query", "pool exhausted, wait=0.25"),
            ],
            actions=["1. Raise the pool size", "2. Check orders-db-0"],
            confidence=confidence,
        )
    )


def test_a_grounded_report_passes(alert_data: str) -> None:
    result = GroundingCheck().validate(
        check(grounded_finding(), alert_data, PROM_OUTPUT, LOGS), context()
    )
    assert isinstance(result, Approved), result


def test_invented_figure_host_and_metric_are_flagged_and_confidence_lowered(
    alert_data: str,
) -> None:
    report = make_report(
        make_finding(
            summary="Errors reached 87% on app-01.example.internal:8080.",
            probable_cause="db-7.example.internal is saturated.",
            evidence=[("prom.query", 'pg_stat_activity_count{state="active"} is high')],
            confidence=0.8,
        )
    )
    result = GroundingCheck().validate(check(report, alert_data, PROM_OUTPUT, LOGS), context())
    assert isinstance(result, Modified) and isinstance(result.action, ReportCheck)
    changed = result.action.report
    assert changed.flags == [  # in the order the finding states them
        "ungrounded: 87% not found in any tool output or the alert",
        "ungrounded: host db-7.example.internal not found in any tool output or the alert",
        "ungrounded: metric pg_stat_activity_count not found in any tool output or the alert",
    ]
    assert changed.finding is not None
    assert changed.finding.confidence == pytest.approx(0.8 * (1 - 0.15 * 3))
    assert result.reason == (
        "3 ungrounded claim(s): 87%, host db-7.example.internal, metric pg_stat_activity_count; "
        "confidence 0.8 -> 0.44"
    )
    assert changed.finding.summary == report.finding.summary if report.finding else False


@pytest.mark.parametrize(
    ("claim", "grounded"),
    [
        ("42%", True),
        ("42.1%", True),
        ("0.42", True),
        ("0.4213", True),
        ("43%", False),  # 42.13% neither rounds nor truncates to 43%
        ("44%", False),
        ("41.5%", False),
        ("250 ms", True),  # 0.25 s in the logs
        ("0.25 s", True),
        ("1.5 GiB", True),  # 1610612736 bytes
        ("1.6 GB", True),
        ("2 GiB", True),  # 1.5 GiB rounds to 2
        ("3 GiB", False),
        ("1.8 GB", False),  # the sample timestamp 1763782400.362 is not a size
        ("50 connections", True),
        ("51 connections", False),
    ],
)
def test_figures_match_with_rounding_and_units(claim: str, grounded: bool) -> None:
    report = make_report(make_finding(summary=f"Observed {claim}.", evidence=[("x", "y")]))
    result = GroundingCheck().validate(check(report, PROM_OUTPUT, LOGS), context())
    assert isinstance(result, Approved) is grounded, result


def test_trivial_numbers_ordinals_and_names_are_not_claims() -> None:
    text = (
        "1. Restart step 2 of the runbook on 2026-11-22 at 03:30 (v1.14.2); 0 errors, HTTP 503, "
        "p99 on app-02 and host-01; see java.lang.OutOfMemoryError in config.yaml, 1 pod"
    )
    assert [claim.describe() for claim in extract_claims(text)] == []


def test_claim_extraction_kinds() -> None:
    text = (
        'rate(http_requests_total[5m]) on 10.0.3.7:9100 and db-7.example.internal, up{job="x"}, '
        "2.3 s p99, 14 restarts"
    )
    found = {(c.kind, c.text) for c in extract_claims(text)}
    assert found == {
        ("metric", "http_requests_total"),
        ("metric", "up"),
        ("host", "10.0.3.7:9100"),
        ("host", "db-7.example.internal"),
        ("figure", "2.3 s"),
        ("figure", "14 restarts"),
    }


def test_metrics_and_windows_from_the_agents_own_queries_count_but_hosts_do_not() -> None:
    query = ToolCallRecord(
        tool="query",
        server="prom",
        arguments=json.dumps({"query": 'rate(http_requests_total{instance="db-9:9100"}[5m])'}),
        result='{"data": {"result": []}}',
        status="ok",
    )
    report = make_report(
        make_finding(
            summary="http_requests_total over 5 minutes is flat on db-9:9100.",
            evidence=[("prom.query", "empty result")],
        ),
        tools_called=[query],
    )
    result = GroundingCheck().validate(check(report, '{"data": {"result": []}}'), context())
    assert isinstance(result, Modified) and isinstance(result.action, ReportCheck)
    assert result.action.report.flags == [
        "ungrounded: host db-9:9100 not found in any tool output or the alert"
    ]


def test_no_evidence_while_tools_were_available_is_flagged() -> None:
    report = make_report(make_finding(summary="Checkout is down.", evidence=[], confidence=0.6))
    result = GroundingCheck().validate(check(report, PROM_OUTPUT), context())
    assert isinstance(result, Modified) and isinstance(result.action, ReportCheck)
    assert result.action.report.flags == [NO_EVIDENCE_FLAG]
    assert result.action.report.finding is not None
    assert result.action.report.finding.confidence == pytest.approx(0.6 * 0.85)
    without_tools = check(report, PROM_OUTPUT, tools_available=False)
    assert isinstance(GroundingCheck().validate(without_tools, context()), Approved)


def test_confidence_never_drops_below_the_floor_and_flags_are_not_repeated() -> None:
    invented = ", ".join(f"{n}.5 ms" for n in range(10, 20))
    report = make_report(make_finding(summary=f"Latencies {invented}.", confidence=1.0))
    report = report.model_copy(update={"flags": [NO_EVIDENCE_FLAG]})
    result = GroundingCheck().validate(check(report, "nothing"), context())
    assert isinstance(result, Modified) and isinstance(result.action, ReportCheck)
    changed = result.action.report
    assert changed.finding is not None and changed.finding.confidence == pytest.approx(0.2)
    assert changed.flags.count(NO_EVIDENCE_FLAG) == 1
    assert len(changed.flags) == 11


def test_a_report_without_a_finding_passes() -> None:
    report = make_report(None, error="model timed out")
    assert isinstance(GroundingCheck().validate(check(report), context()), Approved)


def test_the_alert_itself_grounds_its_own_facts() -> None:
    report = make_report(
        make_finding(summary="app-01:8080 fired.", evidence=[("alert", "instance app-01:8080")]),
        alert={"labels": {"instance": "app-01:8080"}},
    )
    assert isinstance(GroundingCheck().validate(check(report), context()), Approved)


def test_evidence_reads_escaped_and_percent_encoded_text() -> None:
    evidence = Evidence(['{"q": "up%7Bjob%3D%22api%22%7D", "d": "\\u003capp-09:80\\u003e"}'])
    (metric,) = extract_claims('up{job="api"}')
    (host,) = extract_claims("app-09:80")
    assert evidence.supports(metric) and evidence.supports(host)


@pytest.mark.parametrize(
    ("seen", "found"),
    [
        ("host app-01 is down", True),
        ("see app-01.", True),  # a dot that ends the sentence
        ("(APP-01:8080)", True),
        ("app-011 and web-app-01x", False),
        ("app-01.example.internal", False),  # a longer name
        ("my_app-01", False),
        ("web-app-01, then app-01 itself", True),  # the second occurrence stands alone
    ],
)
def test_a_name_is_seen_only_on_its_own(seen: str, found: bool) -> None:
    assert Evidence([seen]).has_name("app-01") is found
