"""Children: a metric's labelled children, looked up once each."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from mcp_sentinel.telemetry.children import Children


def test_children_are_the_metrics_own_and_count_where_labels_would() -> None:
    registry = CollectorRegistry()
    counter = Counter("sentinel_probe_total", "probe", ["sink", "outcome"], registry=registry)
    children = Children(counter)
    assert children("audit", "delivered") is children("audit", "delivered")
    assert children("audit", "delivered") is not children("audit", "retry")
    children("audit", "delivered").inc()
    counter.labels("audit", "delivered").inc()
    children("audit", "retry").inc(2)
    sample = registry.get_sample_value
    assert sample("sentinel_probe_total", {"sink": "audit", "outcome": "delivered"}) == 2
    assert sample("sentinel_probe_total", {"sink": "audit", "outcome": "retry"}) == 2
