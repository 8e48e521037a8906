"""A time series reduced to the figures a model needs: min, max, mean, last, trend, points.

Raw points cost thousands of tokens and a model reads them badly; a summary line costs about
forty. The trend is the least-squares slope over the window: ``rising``/``falling`` when the
fitted line moves by at least ``FLAT_FRACTION`` of the series' own range (max - min) across the
window, ``flat`` otherwise. Scaling by the range, not the magnitude, makes a steady climb of a
large gauge count as rising and a noisy series without direction count as flat. NaN and ±Inf
samples are left out of the figures and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_sentinel.toolsets.units import Unit, format_rate, format_value, unit_for

Trend = Literal["rising", "falling", "flat"]
Sample = tuple[float, float]

FLAT_FRACTION = 0.1
"""A fitted change under this share of the series' range counts as flat."""


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """One series over a window. Figures are None when it has no finite sample; ``trend`` and
    ``slope_per_minute`` are None with fewer than two finite samples at different times."""

    labels: Mapping[str, str]
    points: int
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    last: float | None = None
    slope_per_minute: float | None = None
    trend: Trend | None = None
    non_finite: int = 0
    unit: Unit = field(default=Unit.NONE)


def parse_samples(values: Sequence[Any]) -> list[Sample]:
    """Prometheus ``[[unix_seconds, "value"], ...]`` pairs as floats (``"NaN"``, ``"+Inf"`` too)."""
    return [(float(timestamp), float(value)) for timestamp, value in values]


def slope_per_second(samples: Sequence[Sample]) -> float | None:
    """Least-squares slope of value over time, or None without two distinct times."""
    if len(samples) < 2:
        return None
    count = len(samples)
    # Centre the times: Unix seconds squared lose float precision.
    mean_t = sum(t for t, _ in samples) / count
    mean_v = sum(v for _, v in samples) / count
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread


def classify_trend(samples: Sequence[Sample], slope: float) -> Trend:
    """``rising``/``falling``/``flat`` for a slope fitted to ``samples`` (see the module doc)."""
    values = [v for _, v in samples]
    value_range = max(values) - min(values)
    change = slope * (samples[-1][0] - samples[0][0])
    if value_range == 0 or abs(change) < FLAT_FRACTION * value_range:
        return "flat"
    return "rising" if change > 0 else "falling"


def summarise(labels: Mapping[str, str], samples: Sequence[Sample]) -> SeriesSummary:
    """The summary of one series; ``samples`` in time order, as Prometheus returns them."""
    unit = unit_for(labels.get("__name__"))
    finite = [(t, v) for t, v in samples if math.isfinite(v)]
    non_finite = len(samples) - len(finite)
    if not finite:
        return SeriesSummary(labels, len(samples), non_finite=non_finite, unit=unit)
    values = [v for _, v in finite]
    slope = slope_per_second(finite)
    return SeriesSummary(
        labels=labels,
        points=len(samples),
        minimum=min(values),
        maximum=max(values),
        mean=math.fsum(values) / len(values),
        last=values[-1],
        slope_per_minute=None if slope is None else slope * 60,
        trend=None if slope is None else classify_trend(finite, slope),
        non_finite=non_finite,
        unit=unit,
    )


def format_labels(labels: Mapping[str, str]) -> str:
    """``name{a="x", b="y"}`` with sorted labels, as Prometheus prints a series."""
    name = labels.get("__name__", "")
    pairs = ", ".join(
        f"{key}={_quote(value)}" for key, value in sorted(labels.items()) if key != "__name__"
    )
    return f"{name}{{{pairs}}}" if pairs or not name else name


def format_summary(summary: SeriesSummary) -> str:
    """One line: ``series: rising (+2/min); last 9, min 1, max 9, mean 5; 60 points``."""
    head = format_labels(summary.labels)
    points = f"{summary.points} point{'s' if summary.points != 1 else ''}"
    if summary.non_finite:
        points += f" ({summary.non_finite} NaN/Inf left out)"
    if summary.last is None:
        return f"{head}: no finite values; {points}"
    unit = summary.unit

    def shown(value: float | None) -> str:
        return "?" if value is None else format_value(value, unit)

    if summary.trend is None or summary.slope_per_minute is None:
        trend = "no trend (one point)"
    else:
        trend = f"{summary.trend} ({format_rate(summary.slope_per_minute, unit)})"
    figures = (
        f"last {shown(summary.last)}, min {shown(summary.minimum)}, "
        f"max {shown(summary.maximum)}, mean {shown(summary.mean)}"
    )
    return f"{head}: {trend}; {figures}; {points}"


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
