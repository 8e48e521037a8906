"""Claims a report makes, and whether the texts the agent saw support them (lexically).

``extract_claims`` pulls three kinds of checkable claim out of prose:

* figures: numbers with a unit (``%``, ``ms``, ``s``, ``MiB``, ``req/s``, ``restarts``...) or
  with a decimal point. Not figures: 0 and 1, bare integers (list ordinals, status codes, ids),
  numbers inside names (``app-01``, ``p99``, ``v2``), dates, times, versions, addresses, URLs.
* hosts: IPv4 addresses (with an optional port), ``host:port`` where the host has a letter and a
  ``-``, ``.`` or digit (``app-01:8080``, not ``status:503``), and dotted names ending in a
  known top-level or internal domain (``db-7.example.internal``, not ``java.lang.Error``).
* metrics: identifiers followed by ``{`` or ``[`` (PromQL), and snake_case identifiers with a
  Prometheus unit or type part (``_total``, ``_seconds``, ``_bytes``, ``_bucket``...).

``Evidence`` indexes the seen texts once; ``Evidence.supports(claim)`` is exact for names
(case-insensitive, on token boundaries) and tolerant for figures: a claim matches a seen number
that it rounds or truncates to, or within 1% (so 42%, 42.1% and 0.4213 agree), directly or after
converting percentages, durations and byte sizes to base units.
"""

from __future__ import annotations

import re
import urllib.parse
from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

ClaimKind = Literal["figure", "host", "metric"]

_METRIC_PARTS = frozenset(
    {"total", "seconds", "bytes", "bucket", "count", "sum", "ratio", "percent", "celsius",
     "milliseconds", "info", "created", "joules", "volts", "amperes", "meters"}
)  # fmt: skip
_TLDS = frozenset(
    {"com", "net", "org", "io", "dev", "app", "cloud", "internal", "local", "lan", "corp", "svc",
     "cluster", "example", "test", "localdomain", "home", "int", "intranet", "co", "uk", "de",
     "fr", "eu", "us", "ai", "sh", "me", "info", "biz", "gov", "edu", "aws", "arpa", "consul"}
)  # fmt: skip
_URL = re.compile(r"\b[a-z][a-z0-9+.-]{1,15}://\S+", re.IGNORECASE)
_IDENT_BEFORE_BRACE = re.compile(r"(?<![\w:.\-])([A-Za-z_:][A-Za-z0-9_:]*)(?=\{|\[\d)")
_SNAKE = re.compile(r"(?<![\w:.\-])([A-Za-z_:][A-Za-z0-9_:]*_[A-Za-z0-9_:]+)(?![\w\-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\w|\.\d)")
_HOST_PORT = re.compile(r"(?<![\w.\-/])([a-z0-9][a-z0-9.\-]{0,252}):(\d{2,5})(?!\w|\.\d)", re.I)
_FQDN = re.compile(
    r"(?<![\w.\-@])((?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}))(?![\w\-]|\.\w)", re.I
)
_NOISE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[tT ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[zZ]|[+-]\d{2}:?\d{2})?)?"
    r"|\b\d{1,2}:\d{2}(?::\d{2})?\b|\bv?\d+\.\d+\.\d+[\w.+-]*"
)
# The timestamp of a Prometheus sample, ``[1763782400.362, "0.42"]``: epoch seconds are ~1.7e9,
# the size of a gigabyte, so they must not ground a claim about memory.
_SAMPLE_TIME = re.compile(r"(?<=\[)\s*\d{9,10}(?:\.\d+)?(?=\s*,)")
_PROMQL_RANGE = re.compile(r"\[\d+[smhdwy](?::\d+[smhdwy]?)?\]")  # [5m]: a query, not a claim
_UNITS: dict[str, float] = {
    "%": 0.01, "percent": 0.01, "pct": 0.01,
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "secs": 1, "second": 1,
    "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60, "h": 3600,
    "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
    "days": 86400,
    "b": 1, "byte": 1, "bytes": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10,
    "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 1e3,
}  # fmt: skip
_COUNT_NOUNS = (
    r"restarts?|times|errors?|requests?|req/s|requests?/s(?:ec)?|rps|qps|/s|/sec|/min|ops/s"
    r"|pods?|replicas?|connections?|instances?|nodes?|failures?|retries|timeouts?|alerts?"
    r"|events?|messages?|queries|cores?|cpus?|threads?|goroutines?|x"
)
_UNIT_WORDS = "|".join(
    sorted((re.escape(unit) for unit in _UNITS if unit != "%"), key=len, reverse=True)
)
_FIGURE = re.compile(
    rf"(?<![\w.\-/:#])(\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
    rf"(?:[ \t]?(%)|[ \t]?({_UNIT_WORDS}|{_COUNT_NOUNS})\b)?(?!\w|\.\d)",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    rf"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?:[ \t]?(%)|[ \t]?({_UNIT_WORDS})\b)?", re.IGNORECASE
)
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


@dataclass(frozen=True, slots=True)
class Claim:
    """One checkable claim: ``text`` as written; for a figure, ``values`` with tolerances."""

    kind: ClaimKind
    text: str
    ranges: tuple[tuple[float, float], ...] = ()  # (low, high): seen values that agree

    def describe(self) -> str:
        return self.text if self.kind == "figure" else f"{self.kind} {self.text}"


def _range(number: str) -> tuple[float, float]:
    """The true values a written number agrees with, as ``[low, high)``: what rounds to it
    (half a unit of its last digit either way) or truncates to it (up to a whole unit above),
    and always within 1%. Trailing zeros of an integer are taken as rounding ("about 5000"),
    up to 10%."""
    digits = number.replace(",", "")
    value = float(digits)
    exponent = Decimal(digits).as_tuple().exponent
    assert isinstance(exponent, int)  # a finite number: the pattern matches no NaN
    unit = 10.0**exponent
    if exponent == 0 and "." not in digits and "e" not in digits.lower():
        zeros = len(digits) - len(digits.rstrip("0"))
        unit = min(10.0**zeros, max(1.0, 0.1 * value)) if zeros else 1.0
    return min(value - unit / 2, value * 0.99), max(value + unit, value * 1.01)


def _figure_ranges(number: str, unit: str | None) -> tuple[tuple[float, float], ...]:
    low, high = _range(number)
    ranges = [(low, high)]
    scale = _UNITS.get(unit.lower()) if unit else None
    if scale is not None and scale != 1:
        ranges.append((low * scale, high * scale))
    if unit and unit.lower() in {"kb", "mb", "gb", "tb"}:  # people write GB for GiB
        binary = 2 ** (10 * ("kmgt".index(unit[0].lower()) + 1))
        ranges.append((low * binary, high * binary))
    return tuple(ranges)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with every character inside ``spans`` replaced by a space."""
    if not spans:
        return text
    parts: list[str] = []
    cursor = 0
    for start, end in sorted(spans):
        if end <= cursor:
            continue
        begin = max(start, cursor)
        parts += (text[cursor:begin], " " * (end - begin))
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


_DIGIT = re.compile(r"\d")  # what the patterns' \d matches: any Unicode digit


def extract_claims(text: str) -> list[Claim]:
    """Every figure, host and metric claimed in ``text``, once each, in order of kind."""
    claims: dict[tuple[ClaimKind, str], Claim] = {}
    taken: list[tuple[int, int]] = []

    def add(
        kind: ClaimKind,
        found: str,
        span: tuple[int, int],
        ranges: tuple[tuple[float, float], ...] = (),
    ) -> None:
        claims.setdefault((kind, found.lower()), Claim(kind, found, ranges))
        taken.append(span)

    # Each pattern runs only on a text holding what every match of it holds (a brace, an
    # underscore, "://", a colon, a dot, a digit): most prose is spared most of them.
    brace = "{" in text or "[" in text
    if brace:
        for match in _IDENT_BEFORE_BRACE.finditer(text):
            add("metric", match.group(1), match.span())
    if "_" in text:
        for match in _SNAKE.finditer(text):
            name = match.group(1)
            if _METRIC_PARTS.intersection(name.lower().split("_")):
                add("metric", name, match.span())
    if "://" in text:
        for match in _URL.finditer(text):
            host = urllib.parse.urlsplit(match.group().rstrip(".,;:)]}'\"")).hostname
            if host and ("." in host or "-" in host):
                add("host", host, match.span())
    digits = _DIGIT.search(text) is not None
    rest = _blank(text, taken)
    if digits and rest.count(".") >= 3:
        for match in _IPV4.finditer(rest):
            add("host", match.group(), match.span())
    rest = _blank(rest, taken)
    if digits and ":" in rest:
        for match in _HOST_PORT.finditer(rest):
            host = match.group(1)
            if any(c.isalpha() for c in host) and (
                any(c in "-." or c.isdigit() for c in host) or host == "localhost"
            ):
                add("host", match.group(), match.span())
    rest = _blank(rest, taken)
    if "." in rest:
        for match in _FQDN.finditer(rest):
            if match.group(2).lower() in _TLDS:
                add("host", match.group(1), match.span())
    if not digits:
        return list(claims.values())  # a figure has digits
    noise = [m.span() for m in _NOISE.finditer(rest)]
    ranges = [m.span() for m in _PROMQL_RANGE.finditer(rest)] if brace else []
    rest = _blank(rest, taken + noise + ranges)
    for match in _FIGURE.finditer(rest):
        number, percent, unit = match.group(1), match.group(2), match.group(3)
        unit = percent or unit
        value = float(number.replace(",", ""))
        if value in (0.0, 1.0) or (unit is None and "." not in number):
            continue
        add("figure", match.group().strip(), match.span(), _figure_ranges(number, unit))
    return list(claims.values())


_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | {"_", "-"}


class Evidence:
    """The texts the agent saw, indexed once: a lowercased corpus and (on first use) the sorted
    numbers in it."""

    def __init__(self, texts: list[str] | tuple[str, ...]) -> None:
        corpus = "\n".join(texts)
        if "\\u" in corpus:
            corpus += "\n" + _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), corpus)
        if "%" in corpus:
            corpus += "\n" + urllib.parse.unquote(corpus)
        self._text = corpus
        self._corpus = corpus.lower()
        self._sorted_numbers: list[float] | None = None

    @property
    def _numbers(self) -> list[float]:
        """The numbers in the texts, sorted; found on first use, since only figure claims need
        them and finding them is most of the cost of indexing a long prompt."""
        if self._sorted_numbers is None:
            self._sorted_numbers = self._find_numbers()
        return self._sorted_numbers

    def _find_numbers(self) -> list[float]:
        numbers: list[float] = []
        # Dates, clock times and versions are not measurements: "2026-11-22" is not a 22.
        text = self._text
        for match in _NUMBER.finditer(_SAMPLE_TIME.sub(" ", _NOISE.sub(" ", text))):
            try:
                value = float(match.group(1))
            except ValueError:  # pragma: no cover - the pattern only matches numbers
                continue
            numbers.append(value)
            unit = (match.group(2) or match.group(3) or "").lower()
            scale = _UNITS.get(unit)
            if scale is not None and scale != 1:
                numbers.append(value * scale)
        return sorted(numbers)

    def has_name(self, name: str) -> bool:
        """``name`` occurs in the corpus, not as part of a longer name: not after a name
        character, nor before one or before a dot and a letter or digit."""
        # str.find, not a regex: a pattern that opens with a look-behind is tried at every
        # position of a corpus of many kilobytes.
        corpus, needle = self._corpus, name.lower()
        start = corpus.find(needle)
        while start >= 0:
            end = start + len(needle)
            if (start == 0 or corpus[start - 1] not in _NAME_CHARS) and not (
                corpus[end : end + 1] in _NAME_CHARS
                or (corpus[end : end + 1] == "." and corpus[end + 1 : end + 2] in _ALNUM)
            ):
                return True
            start = corpus.find(needle, start + 1)
        return False

    def has_number(self, low: float, high: float) -> bool:
        """A seen number lies in ``[low, high)``."""
        index = bisect_left(self._numbers, low)
        return index < len(self._numbers) and self._numbers[index] < high

    def supports(self, claim: Claim) -> bool:
        if claim.kind == "figure":
            return any(self.has_number(low, high) for low, high in claim.ranges)
        if self.has_name(claim.text):
            return True
        if claim.kind == "host" and ":" in claim.text:  # the host and the port, seen apart
            host, _, port = claim.text.rpartition(":")
            return self.has_name(host) and re.search(rf":{port}(?!\d)", self._corpus) is not None
        return False
