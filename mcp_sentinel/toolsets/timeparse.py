"""Times and durations as a model writes them, and back as text.

Accepted times (``parse_time``): ``now``; relative ``-1h``, ``now-30m``, ``now+5m``; RFC3339
(``2024-05-01T12:00:00Z``; without an offset it is UTC); a Unix timestamp (``1714564800``).
Durations (``parse_duration``): Prometheus style ``1h30m``, ``500ms``, ``2d``, or plain seconds.
Everything is seconds since the epoch (float); errors are ``ValueError`` whose message says what
is accepted, fit to show the model as is.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_UNIT_SECONDS: dict[str, float] = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_RELATIVE = re.compile(r"^(?:now)?\s*([+-])\s*(\S+)$")
_STEPS: tuple[int, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)

TIME_HELP = (
    "use RFC3339 (2024-05-01T12:00:00Z), a Unix timestamp, 'now', "
    "or a relative time such as -1h or now-30m"
)


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``1h30m``, ``15s``, ``500ms``, or a plain number of seconds) > 0."""
    cleaned = text.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _DURATION_PART.findall(cleaned)
        if not parts or "".join(number + unit for number, unit in parts) != cleaned:
            raise ValueError(
                f"cannot read duration {text!r}: use 30s, 5m, 1h30m, 2d or a number of seconds"
            ) from None
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    return seconds


def parse_time(text: str, now: float) -> float:
    """Seconds since the epoch for ``text``; relative times count from ``now``."""
    cleaned = text.strip()
    lowered = cleaned.lower()
    if lowered == "now":
        return now
    relative = _RELATIVE.match(lowered)
    if relative is not None:
        sign, duration = relative.groups()
        try:
            offset = parse_duration(duration)
        except ValueError:
            raise ValueError(f"cannot read time {text!r}: {TIME_HELP}") from None
        return now - offset if sign == "-" else now + offset
    try:
        return float(cleaned)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: {TIME_HELP}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def default_step(span_seconds: float, target_points: int = 250) -> int:
    """A round step (seconds) giving about ``target_points`` points over the span: enough for
    min/max to be right, few enough to stay cheap."""
    wanted = span_seconds / target_points
    for step in _STEPS:
        if step >= wanted:
            return step
    return math.ceil(wanted / 3600) * 3600


def format_time(timestamp: float) -> str:
    """RFC3339 in UTC to the second: ``2024-05-01T12:00:00Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration(seconds: float) -> str:
    """Compact duration: ``850ms``, ``15s``, ``2m30s``, ``1h5m``, ``3d4h``."""
    if seconds < 1:
        return f"{seconds * 1000:.3g}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    whole = round(seconds)
    for big, big_unit, small, small_unit in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "m"),
        (60, "m", 1, "s"),
    ):
        if whole >= big:
            major, rest = divmod(whole, big)
            minor = rest // small
            return f"{major}{big_unit}{minor}{small_unit}" if minor else f"{major}{big_unit}"
    return f"{whole}s"


def parse_rfc3339(text: str) -> float | None:
    """Seconds since the epoch of an RFC3339 time from Prometheus (nanosecond digits allowed),
    or None when it is empty or unreadable."""
    if not text:
        return None
    # Python reads at most microseconds: cut the fraction to six digits.
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", text.strip())
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
