"""What replay shows: a summary table in the terminal, and a Markdown or HTML report."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

from mcp_sentinel.replay.expect import ExpectationResult


def _row(record: dict[str, Any]) -> dict[str, str]:
    report = record["report"]
    alert = report["alert"]
    labels = alert.get("labels", {})
    finding = report.get("finding") or {}
    tools = ", ".join(
        f"{c.get('server') + '.' if c.get('server') else ''}{c['tool']}"
        + (" (refused)" if c.get("status") == "refused" else "")
        for c in report.get("tools_called", [])
    )
    return {
        "alert": labels.get("alertname", alert.get("fingerprint", "?")),
        "instance": labels.get("instance", ""),
        "card": record["card"],
        "outcome": report["outcome"],
        "summary": finding.get("summary") or report.get("error") or "",
        "tools": tools or "-",
        "tokens": f"{report['input_tokens']}+{report['output_tokens']}",
        "time": f"{report['duration_seconds']:.1f}s",
    }


def _verdicts(results: list[ExpectationResult] | None) -> dict[str, ExpectationResult]:
    return {result.incident_id: result for result in results or []}


def _verdict(result: ExpectationResult | None) -> str:
    if result is None or result.checked == 0:
        return "-"
    return "PASS" if result.passed else "FAIL: " + "; ".join(result.problems)


def summary_table(
    records: list[dict[str, Any]], results: list[ExpectationResult] | None = None
) -> str:
    """A plain-text table, one line per incident, and totals by outcome."""
    verdicts = _verdicts(results)
    header = ["alert", "instance", "card", "outcome", "tools", "tokens", "time"]
    if results is not None:
        header.append("expectations")
    rows = []
    for record in records:
        row = _row(record)
        cells = [row[name] for name in header if name != "expectations"]
        if results is not None:
            cells.append(_verdict(verdicts.get(record["incident_id"])))
        rows.append(cells)
    widths = [
        min(48, max(len(header[i]), *(len(r[i]) for r in rows))) if rows else len(header[i])
        for i in range(len(header))
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(cell[: widths[i]].ljust(widths[i]) for i, cell in enumerate(cells))

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(cells) for cells in rows)
    outcomes = Counter(record["report"]["outcome"] for record in records)
    totals = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
    out.append(f"{len(records)} incident(s): {totals or 'none'}")
    return "\n".join(out)


def markdown_report(
    records: list[dict[str, Any]], results: list[ExpectationResult] | None = None
) -> str:
    verdicts = _verdicts(results)
    lines = ["# sentinel replay", "", summary_table(records, results).splitlines()[-1], ""]
    for record in records:
        row = _row(record)
        lines += [
            f"## {row['alert']} {row['instance']}".rstrip(),
            "",
            f"- card: {row['card']}",
            f"- outcome: {row['outcome']}",
            f"- summary: {row['summary']}",
            f"- tools called: {row['tools']}",
            f"- tokens: {row['tokens']}, time: {row['time']}",
        ]
        if results is not None:
            lines.append(f"- expectations: {_verdict(verdicts.get(record['incident_id']))}")
        lines.append("")
    return "\n".join(lines)


def html_report(
    records: list[dict[str, Any]], results: list[ExpectationResult] | None = None
) -> str:
    verdicts = _verdicts(results)
    columns = ["alert", "instance", "card", "outcome", "summary", "tools", "tokens", "time"]
    head = "".join(f"<th>{name}</th>" for name in columns)
    if results is not None:
        head += "<th>expectations</th>"
    body = []
    for record in records:
        row = _row(record)
        cells = "".join(f"<td>{html.escape(row[name])}</td>" for name in columns)
        if results is not None:
            verdict = _verdict(verdicts.get(record["incident_id"]))
            css = "pass" if verdict == "PASS" else "fail" if verdict.startswith("FAIL") else ""
            cells += f'<td class="{css}">{html.escape(verdict)}</td>'
        body.append(f"<tr>{cells}</tr>")
    total = html.escape(summary_table(records, results).splitlines()[-1])
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sentinel replay</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px;vertical-align:top}"
        ".pass{background:#dfd}.fail{background:#fdd}</style></head><body>"
        f"<h1>sentinel replay</h1><p>{total}</p><table><tr>{head}</tr>"
        + "".join(body)
        + "</table></body></html>\n"
    )


def write_report(
    path: Path, records: list[dict[str, Any]], results: list[ExpectationResult] | None
) -> None:
    """HTML for ``.html``/``.htm``, Markdown otherwise."""
    if path.suffix.lower() in (".html", ".htm"):
        path.write_text(html_report(records, results), encoding="utf-8")
    else:
        path.write_text(markdown_report(records, results), encoding="utf-8")
