"""LoopCounter scrapes exactly as prometheus_client's Counter of the same name would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from mcp_sentinel.telemetry.loop_counter import LoopCounter


def test_exposition_matches_a_client_counter() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopCounter("demo_requests_total", "Requests, by code.", ["code"], registry=ours)
    client = Counter("demo_requests_total", "Requests, by code.", ["code"], registry=theirs)
    for counter in (loop, client):
        counter.labels("200").inc()
        counter.labels("200").inc(2)
        counter.labels("503").inc(0.5)
        counter.labels("401")  # a child looked up and never counted shows as 0
    # The client adds *_created samples unless the process disabled them; compare the rest.
    expected = b"\n".join(
        line for line in generate_latest(theirs).splitlines() if b"_created" not in line
    )
    assert generate_latest(ours).rstrip(b"\n") == expected.rstrip(b"\n")
    assert ours.get_sample_value("demo_requests_total", {"code": "200"}) == 3


def test_same_child_for_the_same_labels() -> None:
    counter = LoopCounter("demo_total", "Demo.", ["a", "b"], registry=CollectorRegistry())
    assert counter.labels("x", "y") is counter.labels("x", "y")
    assert counter.labels("x", "y") is not counter.labels("x", "z")


def test_refuses_what_a_counter_refuses() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("demo_total", "Demo.", ["code"], registry=registry)
    with pytest.raises(ValueError, match="cannot be decreased"):
        counter.labels("200").inc(-1)
    with pytest.raises(ValueError, match="takes 1 label value"):
        counter.labels("200", "extra")
    with pytest.raises(ValueError, match="must end in _total"):
        LoopCounter("demo_requests", "Demo.", [], registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        LoopCounter("demo_total", "Again.", ["code"], registry=registry)
