"""Output bounds: item limits that count what they leave out, and character truncation."""

from __future__ import annotations

import pytest

from mcp_sentinel.toolsets.bounds import (
    MIN_MAX_CHARS,
    OutputLimits,
    limit_grouped,
    limit_items,
    truncate_text,
)
from mcp_sentinel.toolsets.render import rules_result, targets_result


def test_limit_items_counts_what_is_left_out() -> None:
    lines = [f"s{i}" for i in range(5)]
    assert limit_items(lines, 10, "series", "narrow it") == lines
    assert limit_items(lines, 5, "series", "narrow it") == lines
    assert limit_items(lines, 2, "series", "narrow it") == [
        "s0",
        "s1",
        "... 3 more series left out (showing 2 of 5); narrow it",
    ]


def test_limit_grouped_keeps_headers_with_their_items() -> None:
    sections = [("job a:", ["a1", "a2"]), ("job b:", ["b1", "b2"]), ("job c:", ["c1"])]
    assert limit_grouped(sections, 3, "targets", "pass job") == [
        "job a:",
        "  a1",
        "  a2",
        "job b:",
        "  b1",
        "... 2 more targets left out (showing 3 of 5); pass job",
    ]
    assert limit_grouped(sections, 5, "targets", "pass job")[-1] == "  c1"


def test_truncate_text_cuts_whole_lines_and_says_so() -> None:
    text = "\n".join(f"line {i:03d} " + "x" * 40 for i in range(100))
    assert truncate_text(text, len(text)) == text
    for budget in (MIN_MAX_CHARS, 500, 1000, len(text) - 1):
        cut = truncate_text(text, budget)
        assert len(cut) <= budget
        body, note = cut.rsplit("\n", 1)
        assert text.startswith(body + "\n")  # whole lines only
        assert note == (
            f"[output truncated: {len(body)} of {len(text)} characters shown; narrow the query "
            "(a label selector, topk(), a shorter range) to see the rest]"
        )


def test_truncate_text_cuts_a_single_long_line() -> None:
    text = "a, " * 1000
    cut = truncate_text(text, 300)
    assert len(cut) <= 300
    first, note = cut.split("\n")
    assert first.endswith("…") and text.startswith(first[:-1])
    assert note.startswith("[output truncated: ")


def test_limits_are_validated() -> None:
    assert OutputLimits() == OutputLimits(max_series=20, max_chars=6000)
    with pytest.raises(ValueError):
        OutputLimits(max_series=0)
    with pytest.raises(ValueError):
        OutputLimits(max_chars=MIN_MAX_CHARS - 1)


REFUSED = 'Get "http://n-2:9100/metrics": connection refused'


def _target(job: str, instance: str, health: str, error: str = "") -> dict[str, object]:
    return {
        "labels": {"job": job, "instance": instance},
        "scrapePool": job,
        "scrapeUrl": f"http://{instance}/metrics",
        "health": health,
        "lastError": error,
        "lastScrape": "2024-05-01T12:00:00.5Z",
        "lastScrapeDuration": 0.0042,
    }


def test_targets_put_jobs_with_targets_down_first_and_obey_the_limit() -> None:
    data = {
        "activeTargets": [
            _target("api", "api-1:80", "up"),
            _target("api", "api-2:80", "up"),
            _target("node", "n-1:9100", "up"),
            _target(
                "node", "n-2:9100", "down", 'Get "http://n-2:9100/metrics": connection refused'
            ),
        ]
    }
    assert targets_result(data, 3) == [
        "4 targets in 2 jobs: 3 up, 1 not up",
        "job node: 1/2 up",
        f"  down n-2:9100 scrape 4.2ms at 2024-05-01T12:00:00Z error: {REFUSED}",
        "  up n-1:9100 scrape 4.2ms at 2024-05-01T12:00:00Z",
        "job api: 2/2 up",
        "  up api-1:80 scrape 4.2ms at 2024-05-01T12:00:00Z",
        "... 1 more targets left out (showing 3 of 4); pass job=... for one job",
    ]
    assert targets_result(data, 20, job="missing") == ["no active targets in job missing"]


def test_rules_show_health_problems() -> None:
    data = {
        "groups": [
            {
                "name": "g",
                "file": "r.yml",
                "interval": 30,
                "rules": [
                    {
                        "type": "alerting",
                        "name": "Broken",
                        "query": "rate(x[5m]) >\n 1",
                        "duration": 300,
                        "state": "inactive",
                        "health": "err",
                        "lastError": "no match\n allowed",
                        "alerts": [],
                    }
                ],
            }
        ]
    }
    assert rules_result(data, 20) == [
        "1 rules in 1 groups",
        "group g (r.yml, every 30s):",
        "  alert Broken: rate(x[5m]) > 1 for 5m -> inactive [health err: no match allowed]",
    ]
