"""Change-freeze windows: weekly recurring local-time windows in an IANA time zone.

A window is (days, start, end, tz). ``start`` and ``end`` are ``HH:MM`` local times at minute
resolution and both are inside the window, so ``00:00``-``23:59`` is a whole day. ``days`` are
the days a window *starts* on: when ``end`` is earlier than ``start`` the window wraps past
midnight into the next day: ``fri`` 22:00-06:00 covers Friday 22:00 through Saturday 06:00
(the minute 06:00 included). Times are local, so a daylight-saving change moves the window with
the clock on the wall, which is what people mean by "no changes on Friday night".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_NAMES = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
    "tues": 1,
    "wednes": 2,
    "thur": 3,
    "thurs": 3,
}
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str) -> int:
    """``"HH:MM"`` (00:00 to 23:59) -> minutes since midnight; ``ValueError`` otherwise."""
    found = _HHMM.match(text.strip())
    if not found:
        raise ValueError(f"invalid time {text!r}: expected HH:MM between 00:00 and 23:59")
    return int(found.group(1)) * 60 + int(found.group(2))


def _day_index(name: str) -> int:
    key = name.strip().lower()
    if key in DAY_NAMES:
        return DAY_NAMES.index(key)
    if key in _LONG_NAMES:
        return _LONG_NAMES[key]
    raise ValueError(f"unknown day {name!r}: use {', '.join(DAY_NAMES)} (or a range like mon-fri)")


def parse_days(names: list[str] | tuple[str, ...]) -> frozenset[int]:
    """Day names (``mon``..``sun``, full names, ranges ``mon-fri`` or ``fri-mon``) -> weekdays.

    Weekdays are ``datetime.weekday()`` numbers (Monday 0). An empty list is an error: a window
    that never applies is more likely a mistake than a wish.
    """
    if not names:
        raise ValueError("days must name at least one day")
    days: set[int] = set()
    for name in names:
        first, dash, last = name.partition("-")
        if dash:
            start, stop = _day_index(first), _day_index(last)
            span = (stop - start) % 7
            days.update((start + offset) % 7 for offset in range(span + 1))
        else:
            days.add(_day_index(name))
    return frozenset(days)


def parse_zone(name: str) -> ZoneInfo:
    """An IANA time zone (``Europe/Paris``, ``UTC``); ``ValueError`` naming it otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Paris"
        ) from None


@dataclass(frozen=True, slots=True)
class FreezeWindow:
    """A weekly window; ``contains(moment)`` says whether an aware datetime falls inside it."""

    days: frozenset[int]
    start_minute: int
    end_minute: int
    zone: ZoneInfo

    @classmethod
    def parse(
        cls, days: list[str] | tuple[str, ...], start: str, end: str, tz: str
    ) -> FreezeWindow:
        """Build from config spellings; ``ValueError`` with a clear message on any bad part."""
        start_minute, end_minute = parse_hhmm(start), parse_hhmm(end)
        if start_minute == end_minute:
            raise ValueError(
                f"start and end are both {start}: a window needs two different times "
                "(00:00 to 23:59 is a whole day)"
            )
        return cls(parse_days(days), start_minute, end_minute, parse_zone(tz))

    @property
    def wraps(self) -> bool:
        """True when the window runs past midnight into the next day."""
        return self.end_minute < self.start_minute

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (naive means UTC) is inside the window, in the window's zone."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        local = moment.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        if not self.wraps:
            return today in self.days and self.start_minute <= minute <= self.end_minute
        if today in self.days and minute >= self.start_minute:
            return True  # the evening part, on a start day
        yesterday = (today - 1) % 7
        return yesterday in self.days and minute <= self.end_minute  # the morning after

    def describe(self) -> str:
        """``sat,sun 00:00-23:59 UTC``, for rejection reasons."""
        days = ",".join(DAY_NAMES[day] for day in sorted(self.days))
        return f"{days} {_hhmm(self.start_minute)}-{_hhmm(self.end_minute)} {self.zone.key}"


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
