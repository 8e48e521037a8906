"""Prometheus metrics of the daemon, all on one registry passed in by the app.

Names carry the ``sentinel_`` prefix and their unit; counters end in ``_total``. Label values
are bounded: card names, sink names, outcomes and statuses come from the config or from fixed
sets, never from alert data such as a fingerprint.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from mcp_sentinel import __version__
from mcp_sentinel.telemetry.loop_counter import LoopCounter

_RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900)


class SentinelMetrics:
    """Every metric the daemon exports. One instance per registry; tests build a fresh one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # The client's extra ``*_created`` series double the scrape for a timestamp nobody
        # graphs; the switch is process-wide, which is fine: this process has one exporter.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.build_info = Info("sentinel_build", "Version of mcp_sentinel.", registry=registry)
        self.build_info.info({"version": __version__})
        self.webhook_requests = LoopCounter(
            "sentinel_webhook_requests_total",
            "Webhook requests answered, by HTTP status code.",
            ["code"],
            registry=registry,
        )
        self.alerts_received = LoopCounter(
            "sentinel_alerts_received_total",
            "Alerts received, by source and alert status.",
            ["source", "status"],
            registry=registry,
        )
        self.alerts_dispatched = LoopCounter(
            "sentinel_alerts_dispatched_total",
            "What dispatch did with each alert: queued, duplicate, unrouted or rejected.",
            ["outcome"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "sentinel_queue_depth", "Incidents waiting for a worker.", registry=registry
        )
        self.queue_capacity = Gauge(
            "sentinel_queue_capacity", "How many incidents the queue holds.", registry=registry
        )
        self.queue_wait = Histogram(
            "sentinel_queue_wait_seconds",
            "Time from acceptance to a worker taking the incident.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.agent_runs = Counter(
            "sentinel_agent_runs_total",
            "Investigations finished, by card and outcome.",
            ["card", "outcome"],
            registry=registry,
        )
        self.agent_run_duration = Histogram(
            "sentinel_agent_run_duration_seconds",
            "Duration of an investigation, by card.",
            ["card"],
            buckets=_RUN_BUCKETS,
            registry=registry,
        )
        self.agent_tokens = Counter(
            "sentinel_agent_tokens_total",
            "Model tokens used, by model and direction (input, output).",
            ["model", "direction"],
            registry=registry,
        )
        self.tool_calls = Counter(
            "sentinel_tool_calls_total",
            "Tool calls the agent made, by server, tool and outcome (ok, error, refused).",
            ["server", "tool", "outcome"],
            registry=registry,
        )
        self.agent_turns = Histogram(
            "sentinel_agent_turns",
            "Model turns an investigation took, by card.",
            ["card"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
            registry=registry,
        )
        self.sink_deliveries = Counter(
            "sentinel_sink_deliveries_total",
            "Reports delivered to sinks, by sink and outcome.",
            ["sink", "outcome"],
            registry=registry,
        )
        self.mcp_server_up = Gauge(
            "sentinel_mcp_server_up",
            "1 when the MCP server is connected, 0 when it failed.",
            ["server"],
            registry=registry,
        )
        self.validator_decisions = Counter(
            "sentinel_validator_decisions_total",
            "Validator pipeline decisions, by validator and result "
            "(approved, modified, rejected, retry).",
            ["validator", "result"],
            registry=registry,
        )
        self.circuit_breaker_state = Gauge(
            "sentinel_circuit_breaker_state",
            "Circuit breaker state by breaker (model endpoint or MCP server): "
            "0 closed, 1 half-open, 2 open.",
            ["breaker"],
            registry=registry,
        )
        self.sink_dead_letters = Counter(
            "sentinel_sink_dead_letters_total",
            "Deliveries that failed after every retry and went to the dead-letter file, by sink.",
            ["sink"],
            registry=registry,
        )
        self.sink_delivery_duration = Histogram(
            "sentinel_sink_delivery_duration_seconds",
            "Time to deliver to a sink, retries included, by sink.",
            ["sink"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
