"""The series summariser, number and unit formatting, and time parsing: pure functions."""

from __future__ import annotations

import math

import pytest

from mcp_sentinel.toolsets.render import instant_result, matrix_result
from mcp_sentinel.toolsets.summarise import (
    format_labels,
    format_summary,
    parse_samples,
    slope_per_second,
    summarise,
)
from mcp_sentinel.toolsets.timeparse import (
    default_step,
    format_duration,
    parse_duration,
    parse_rfc3339,
    parse_time,
)
from mcp_sentinel.toolsets.units import Unit, format_number, format_value, unit_for

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z
LABELS = {"__name__": "errors_total", "job": "api"}


def line(values: list[float], step: float = 15.0, labels: dict[str, str] | None = None) -> str:
    samples = [(NOW + i * step, v) for i, v in enumerate(values)]
    return format_summary(summarise(labels or LABELS, samples))


def test_a_steady_climb_is_rising_with_its_slope_per_minute() -> None:
    summary = summarise(LABELS, [(NOW + i * 15, 10.0 + i * 5) for i in range(9)])
    assert summary.trend == "rising"
    assert summary.slope_per_minute == pytest.approx(20.0)  # 5 per 15 s
    assert (summary.minimum, summary.maximum, summary.last) == (10, 50, 50)
    assert summary.mean == pytest.approx(30)
    assert summary.points == 9
    assert format_summary(summary) == (
        'errors_total{job="api"}: rising (+20/min); last 50, min 10, max 50, mean 30; 9 points'
    )


def test_falling_flat_and_noise() -> None:
    assert "falling (-4/min)" in line([10, 9, 8, 7, 6], step=15)
    assert line([3, 3, 3]).startswith('errors_total{job="api"}: flat (+0/min);')
    # Noise without a direction: the fitted change is small beside the range.
    assert ": flat (" in line([0, 10, 0, 10, 0, 10, 0, 10, 0, 10, 0])
    # A spike in the middle of a flat series is no trend either, but max shows it.
    spiky = line([1, 1, 1, 1, 90, 1, 1, 1, 1])
    assert ": flat (" in spiky and "max 90" in spiky


def test_a_large_gauge_climbing_slowly_is_still_rising() -> None:
    # Scaling by the series' own range, not its magnitude.
    summary = summarise(LABELS, [(NOW + i * 60, 1e9 + i * 1000) for i in range(10)])
    assert summary.trend == "rising"
    assert summary.slope_per_minute == pytest.approx(1000)


def test_one_point_and_no_finite_points() -> None:
    assert (
        line([7])
        == 'errors_total{job="api"}: no trend (one point); last 7, min 7, max 7, mean 7; 1 point'
    )
    samples = parse_samples([[NOW, "NaN"], [NOW + 15, "+Inf"]])
    assert math.isnan(samples[0][1]) and samples[1][1] == math.inf
    assert format_summary(summarise(LABELS, samples)) == (
        'errors_total{job="api"}: no finite values; 2 points (2 NaN/Inf left out)'
    )
    mixed = format_summary(
        summarise(LABELS, parse_samples([[NOW, "1"], [NOW + 60, "NaN"], [NOW + 120, "3"]]))
    )
    assert mixed.endswith("3 points (1 NaN/Inf left out)") and "rising (+1/min)" in mixed


def test_slope_needs_two_distinct_times() -> None:
    assert slope_per_second([]) is None
    assert slope_per_second([(NOW, 1.0)]) is None
    assert slope_per_second([(NOW, 1.0), (NOW, 5.0)]) is None
    assert slope_per_second([(NOW, 1.0), (NOW + 2, 5.0)]) == pytest.approx(2.0)


def test_units_come_from_the_metric_name() -> None:
    seconds = {"__name__": "http_request_duration_seconds", "job": "api"}
    assert "last 250ms" in line([0.1, 0.25], labels=seconds)
    memory = {"__name__": "process_resident_memory_bytes"}
    assert "rising (+1MiB/min); last 101MiB" in line([100 * 2**20, 101 * 2**20], 60, memory)
    assert unit_for("node_cpu_seconds_total") is Unit.SECONDS
    assert unit_for("process_start_time_seconds") is Unit.TIMESTAMP
    assert unit_for("http_request_duration_seconds_count") is Unit.NONE
    assert unit_for("http_request_duration_seconds_bucket") is Unit.NONE
    assert unit_for("node_network_receive_bytes_total") is Unit.BYTES
    assert unit_for("up") is Unit.NONE and unit_for(None) is Unit.NONE
    assert format_value(NOW, Unit.TIMESTAMP) == "2024-05-01T12:00:00Z"
    assert format_value(0.0000042, Unit.SECONDS) == "4.2µs"
    assert format_value(5400, Unit.SECONDS) == "90min"
    assert format_value(512, Unit.BYTES) == "512B"
    assert format_value(1536, Unit.BYTES) == "1.5KiB"


def test_histogram_quantile_takes_the_bucket_metrics_unit() -> None:
    promql = (
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"
    )
    series = [{"metric": {"job": "api"}, "values": [[NOW, "0.2"], [NOW + 60, "0.3"]]}]
    assert matrix_result(promql, series, 20) == [
        "1 series",
        '{job="api"}: rising (+100ms/min); last 300ms, min 200ms, max 300ms, mean 250ms; 2 points',
    ]


def test_numbers_are_compact() -> None:
    assert format_number(3.0) == "3"
    assert format_number(0.123456) == "0.1235"
    assert format_number(123456.789) == "123456.8"
    assert format_number(1.5e9) == "1500000000"
    assert format_number(1.23456e20) == "1.235e+20"
    assert format_number(math.nan) == "NaN"
    assert format_number(-math.inf) == "-Inf"


def test_labels_print_like_prometheus() -> None:
    assert (
        format_labels({"job": "a", "__name__": "up", "instance": "h:1"})
        == 'up{instance="h:1", job="a"}'
    )
    assert format_labels({"__name__": "up"}) == "up"
    assert format_labels({}) == "{}"
    assert format_labels({"msg": 'say "hi"\n'}) == '{msg="say \\"hi\\"\\n"}'


def test_instant_results() -> None:
    vector = {
        "resultType": "vector",
        "result": [
            {"metric": {"__name__": "up", "job": "a"}, "value": [NOW, "1"]},
            {
                "metric": {"__name__": "process_resident_memory_bytes", "job": "a"},
                "value": [NOW, "1048576"],
            },
        ],
    }
    assert instant_result("up", vector, 20) == [
        "2 series at 2024-05-01T12:00:00Z",
        'up{job="a"} = 1',
        'process_resident_memory_bytes{job="a"} = 1MiB',
    ]
    assert instant_result("1+1", {"resultType": "scalar", "result": [NOW, "2"]}, 20) == [
        "scalar at 2024-05-01T12:00:00Z: 2"
    ]
    empty = instant_result("nope", {"resultType": "vector", "result": []}, 20)
    assert empty[0].startswith("no series")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-1h", NOW - 3600),
        ("now-30m", NOW - 1800),
        ("now - 1h30m", NOW - 5400),
        ("now+5m", NOW + 300),
        ("2024-05-01T11:00:00Z", NOW - 3600),
        ("2024-05-01T13:00:00+02:00", NOW - 3600),
        ("2024-05-01T11:00:00", NOW - 3600),  # no offset: UTC
        ("1714561200", NOW - 3600),
        ("1714561200.5", NOW - 3599.5),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "-1x", "now-", "2024-13-01T00:00:00Z", ""])
def test_parse_time_rejects_with_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"cannot read time .*RFC3339.*-1h"):
        parse_time(text, NOW)


def test_durations_and_steps() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5
    assert parse_duration("15") == 15
    assert parse_duration("2d") == 172800
    for bad in ("0s", "abc", "1h foo", "-5m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert default_step(3600) == 15  # 1 h -> about 250 points
    assert default_step(60) == 1
    assert default_step(30 * 86400) == 21600
    assert default_step(400 * 86400) == 39 * 3600  # whole hours beyond the table
    assert format_duration(0.0123) == "12.3ms"
    assert format_duration(15) == "15s"
    assert format_duration(150) == "2m30s"
    assert format_duration(3600) == "1h"
    assert format_duration(90000) == "1d1h"


def test_rfc3339_from_prometheus_with_nanoseconds() -> None:
    assert parse_rfc3339("2024-05-01T12:00:00.123456789Z") == pytest.approx(NOW + 0.123456)
    assert parse_rfc3339("") is None and parse_rfc3339("garbage") is None
