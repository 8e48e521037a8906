"""Numbers as a model reads them best: compact, with the unit a metric name makes obvious.

Prometheus naming conventions carry the unit in the name (``_seconds``, ``_bytes``); a name
ending in ``_timestamp_seconds``, ``_time_seconds`` or ``_created`` is a Unix time. Anything
else is shown as a plain number: a guessed unit would mislead more than none.
"""

from __future__ import annotations

import math
from enum import Enum

from mcp_sentinel.toolsets.timeparse import format_time


class Unit(Enum):
    NONE = "none"
    SECONDS = "seconds"
    BYTES = "bytes"
    TIMESTAMP = "timestamp"


_BYTE_STEPS: tuple[tuple[float, str], ...] = (
    (1024.0**5, "PiB"),
    (1024.0**4, "TiB"),
    (1024.0**3, "GiB"),
    (1024.0**2, "MiB"),
    (1024.0, "KiB"),
)


def unit_for(metric_name: str | None) -> Unit:
    """The unit of a metric by its name; ``Unit.NONE`` for counts, buckets and unknowns."""
    if not metric_name:
        return Unit.NONE
    name = metric_name
    if name.endswith(("_count", "_bucket")):
        return Unit.NONE
    if name.endswith("_created"):
        return Unit.TIMESTAMP
    name = name.removesuffix("_total").removesuffix("_sum")
    if name.endswith(("_timestamp_seconds", "_time_seconds")):
        return Unit.TIMESTAMP
    if name.endswith("_seconds"):
        return Unit.SECONDS
    if name.endswith("_bytes"):
        return Unit.BYTES
    return Unit.NONE


def format_number(value: float) -> str:
    """Compact: integers as integers, else four significant digits; NaN and ±Inf by name."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if 1000 <= abs(value) < 1e6:
        return f"{value:.1f}"
    return f"{value:.4g}"


def format_value(value: float, unit: Unit) -> str:
    """``value`` with its unit: ``12.5ms``, ``1.5MiB``, ``2024-05-01T12:00:00Z``."""
    if not math.isfinite(value) or unit is Unit.NONE:
        return format_number(value)
    if unit is Unit.TIMESTAMP:
        return format_time(value) if 0 < value < 1e11 else format_number(value)
    if unit is Unit.BYTES:
        return _format_bytes(value)
    return _format_seconds(value)


def format_rate(per_minute: float, unit: Unit) -> str:
    """A signed change per minute: ``+3/min``, ``-1.2MiB/min``, ``+250ms/min``."""
    sign = "-" if per_minute < 0 else "+"
    magnitude = abs(per_minute)
    # A timestamp's change is a duration, not a moment.
    shown_unit = Unit.SECONDS if unit is Unit.TIMESTAMP else unit
    return f"{sign}{format_value(magnitude, shown_unit)}/min"


def _format_bytes(value: float) -> str:
    magnitude = abs(value)
    for size, suffix in _BYTE_STEPS:
        if magnitude >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{format_number(value)}B"


def _format_seconds(value: float) -> str:
    magnitude = abs(value)
    if magnitude == 0:
        return "0s"
    if magnitude < 1e-3:
        return f"{value * 1e6:.3g}µs"
    if magnitude < 1:
        return f"{value * 1e3:.3g}ms"
    if magnitude < 600:
        return f"{value:.3g}s"
    if magnitude < 3 * 3600:
        return f"{value / 60:.3g}min"
    if magnitude < 3 * 86400:
        return f"{value / 3600:.3g}h"
    return f"{value / 86400:.3g}d"
