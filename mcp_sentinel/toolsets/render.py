"""Prometheus API answers as compact text, one line per series, target, alert or rule.

Each function takes the API's ``data`` (already checked to be a success by the client) and the
item limit, and returns the lines of the answer; the caller joins them and applies the
character limit. Shapes follow the Prometheus HTTP API (``/api/v1``); unknown fields are
ignored and missing ones tolerated, since Prometheus versions differ.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from mcp_sentinel.toolsets.bounds import limit_grouped, limit_items
from mcp_sentinel.toolsets.summarise import (
    format_labels,
    format_summary,
    parse_samples,
    summarise,
)
from mcp_sentinel.toolsets.timeparse import format_duration, format_time, parse_rfc3339
from mcp_sentinel.toolsets.units import Unit, format_value, unit_for

_SERIES_HINT = "narrow the selector, aggregate (sum by (...)) or use topk()"
_QUANTILE_OF = re.compile(r"histogram_quantile\s*\(.*?([a-zA-Z_:][a-zA-Z0-9_:]*)_bucket\b")


def query_unit(promql: str, labels: Mapping[str, str]) -> Unit:
    """The unit of a result series: from its ``__name__``; else, for ``histogram_quantile``
    over a single ``*_bucket`` metric, that metric's unit (the one obvious case)."""
    name = labels.get("__name__")
    if name:
        return unit_for(name)
    found = _QUANTILE_OF.search(promql)
    return unit_for(found.group(1)) if found else Unit.NONE


def instant_result(promql: str, data: Mapping[str, Any], max_series: int) -> list[str]:
    """An instant query's result: a vector, a scalar, a string, or a matrix (range selector)."""
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
        timestamp, value = result
        shown = value if result_type == "string" else format_value(float(value), Unit.NONE)
        return [f"{result_type} at {format_time(float(timestamp))}: {shown}"]
    series: list[Mapping[str, Any]] = result if isinstance(result, list) else []
    if result_type == "matrix":
        return matrix_result(promql, series, max_series)
    if not series:
        return ["no series: the query matched nothing at that time (check the metric and labels)"]
    at = series[0].get("value", [None])[0]
    head = f"{len(series)} series" + (f" at {format_time(float(at))}" if at is not None else "")
    lines = [_vector_line(promql, item) for item in series]
    return [head, *limit_items(lines, max_series, "series", _SERIES_HINT)]


def matrix_result(promql: str, series: Sequence[Mapping[str, Any]], max_series: int) -> list[str]:
    """A range result: one summary line per series (see ``summarise``)."""
    if not series:
        return ["no series: the query matched nothing in that window (check the metric and labels)"]
    lines = []
    for item in series:
        labels: dict[str, str] = dict(item.get("metric") or {})
        summary = summarise(labels, parse_samples(item.get("values") or []))
        unit = query_unit(promql, labels)
        if unit is not summary.unit:
            summary = replace(summary, unit=unit)
        lines.append(format_summary(summary))
    return [f"{len(series)} series", *limit_items(lines, max_series, "series", _SERIES_HINT)]


def alerts_result(data: Mapping[str, Any], max_items: int) -> list[str]:
    """Active alerts (firing first, then pending): state, name, labels, since, value, summary."""
    alerts: list[Mapping[str, Any]] = list(data.get("alerts") or [])
    if not alerts:
        return ["no active alerts (nothing pending or firing)"]
    alerts.sort(key=lambda alert: (alert.get("state") != "firing", _alertname(alert)))
    firing = sum(1 for alert in alerts if alert.get("state") == "firing")
    lines = [_alert_line(alert) for alert in alerts]
    head = f"{len(alerts)} active alerts: {firing} firing, {len(alerts) - firing} pending"
    return [head, *limit_items(lines, max_items, "alerts", "ask with query('ALERTS{...}')")]


def rules_result(data: Mapping[str, Any], max_items: int) -> list[str]:
    """Rules by group: alerting rules with state and ``for``, recording rules with their
    expression; a rule whose health is not ok shows its last error."""
    groups: list[Mapping[str, Any]] = list(data.get("groups") or [])
    sections: list[tuple[str, list[str]]] = []
    for group in groups:
        interval = group.get("interval")
        every = f", every {format_duration(float(interval))}" if interval else ""
        header = f"group {group.get('name')} ({group.get('file', '?')}{every}):"
        sections.append((header, [_rule_line(rule) for rule in group.get("rules") or []]))
    rule_count = sum(len(rules) for _, rules in sections)
    if not rule_count:
        return ["no rules loaded"]
    head = f"{rule_count} rules in {len(groups)} groups"
    return [head, *limit_grouped(sections, max_items, "rules", "filter with type=alert|record")]


def targets_result(data: Mapping[str, Any], max_items: int, job: str | None = None) -> list[str]:
    """Active scrape targets grouped by job: up/down, scrape duration, age of the last
    scrape and, for a target not up, its last error. Jobs with targets down come first."""
    targets: list[Mapping[str, Any]] = list(data.get("activeTargets") or [])
    if job is not None:
        targets = [t for t in targets if _job(t) == job]
    if not targets:
        return [f"no active targets{f' in job {job}' if job else ''}"]
    by_job: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for target in targets:
        by_job[_job(target)].append(target)
    up = sum(1 for t in targets if t.get("health") == "up")
    sections: list[tuple[str, list[str]]] = []
    for name, members in sorted(by_job.items(), key=lambda kv: (_all_up(kv[1]), kv[0])):
        members_up = sum(1 for t in members if t.get("health") == "up")
        members.sort(key=lambda t: (t.get("health") == "up", str(t.get("scrapeUrl"))))
        header = f"job {name}: {members_up}/{len(members)} up"
        sections.append((header, [_target_line(t) for t in members]))
    head = f"{len(targets)} targets in {len(by_job)} jobs: {up} up, {len(targets) - up} not up"
    return [head, *limit_grouped(sections, max_items, "targets", "pass job=... for one job")]


def names_result(what: str, names: Sequence[str]) -> list[str]:
    """Label names or values, comma-separated on one line after a count."""
    if not names:
        return [f"no {what} found (check the label and the match[] selectors)"]
    return [f"{len(names)} {what}:", ", ".join(str(name) for name in names)]


def metadata_result(metric: str, data: Mapping[str, Any]) -> list[str]:
    """Type, unit and help text of a metric (one line per distinct definition)."""
    entries: list[Mapping[str, Any]] = list(data.get(metric) or [])
    if not entries:
        return [
            f"no metadata for {metric}: Prometheus knows only metrics its targets expose with "
            "TYPE/HELP (recording rules and unknown names have none)"
        ]
    lines = []
    for entry in entries:
        unit = f", unit {entry['unit']}" if entry.get("unit") else ""
        lines.append(f"{metric}: {entry.get('type', 'unknown')}{unit} - {entry.get('help', '')}")
    return lines


# -- single lines -----------------------------------------------------------------------------


def _vector_line(promql: str, item: Mapping[str, Any]) -> str:
    labels: dict[str, str] = dict(item.get("metric") or {})
    value = item.get("value")
    if not value:
        return f"{format_labels(labels)} = (histogram sample; use histogram_quantile())"
    return f"{format_labels(labels)} = {format_value(float(value[1]), query_unit(promql, labels))}"


def _alertname(alert: Mapping[str, Any]) -> str:
    return str((alert.get("labels") or {}).get("alertname", ""))


def _alert_line(alert: Mapping[str, Any]) -> str:
    labels = {k: v for k, v in (alert.get("labels") or {}).items() if k != "alertname"}
    line = f"{alert.get('state', '?')} {_alertname(alert)}{format_labels(labels)}"
    active_at = parse_rfc3339(str(alert.get("activeAt") or ""))
    if active_at is not None:
        line += f" since {format_time(active_at)}"
    if alert.get("value") is not None:
        line += f", value {format_value(float(alert['value']), Unit.NONE)}"
    annotations = alert.get("annotations") or {}
    text = annotations.get("summary") or annotations.get("description")
    if text:
        line += f" - {' '.join(str(text).split())}"
    return line


def _rule_line(rule: Mapping[str, Any]) -> str:
    query = " ".join(str(rule.get("query", "")).split())
    if rule.get("type") == "alerting":
        duration = float(rule.get("duration") or 0)
        for_text = f" for {format_duration(duration)}" if duration else ""
        active = len(rule.get("alerts") or [])
        line = f"alert {rule.get('name')}: {query}{for_text} -> {rule.get('state', '?')}"
        if active:
            line += f" ({active} active)"
    else:
        line = f"record {rule.get('name')} = {query}"
    if rule.get("health") not in (None, "ok"):
        error = " ".join(str(rule.get("lastError") or "no error text").split())
        line += f" [health {rule.get('health')}: {error}]"
    return line


def _job(target: Mapping[str, Any]) -> str:
    return str((target.get("labels") or {}).get("job") or target.get("scrapePool") or "?")


def _all_up(targets: Sequence[Mapping[str, Any]]) -> bool:
    return all(t.get("health") == "up" for t in targets)


def _target_line(target: Mapping[str, Any]) -> str:
    labels = target.get("labels") or {}
    where = labels.get("instance") or target.get("scrapeUrl", "?")
    line = f"{target.get('health', 'unknown')} {where}"
    duration = target.get("lastScrapeDuration")
    if duration is not None and target.get("health") != "unknown":
        line += f" scrape {format_duration(float(duration))}"
    last = parse_rfc3339(str(target.get("lastScrape") or ""))
    if last is not None and last > 0:
        line += f" at {format_time(last)}"
    if target.get("health") != "up" and target.get("lastError"):
        line += f" error: {' '.join(str(target['lastError']).split())}"
    return line
