"""Finding prompt injection in one string, and cutting it out.

``scan_text`` looks at the folded text (see ``_folding``) for:

* the phrasing rules of ``_injection_rules.RULES`` (override, jailbreak, fake markers, tool or
  command requests, exfiltration, text addressed to the model); a match is widened to its
  sentence (bounded by a newline, a quote or ``.!?`` + space), so the marker replaces the whole
  instruction rather than leaving "... and then" behind;
* hidden carriers: Unicode tag text (invisible ASCII), runs of variation selectors (smuggled
  bytes), bidi overrides, many zero-width characters; base64, hex and percent-encoded blobs
  that decode to text matching the rules; HTML/markdown comments and CSS-hidden HTML whose
  content is addressed to a model;
* an optional ``InjectionClassifier``'s verdict on the folded text.

``TextScan.neutralised()`` replaces each suspicious span of the *original* string with
``NEUTRALISED`` and strips the invisible characters. Pure CPU, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Protocol

from mcp_sentinel.validators import _injection_rules as rules
from mcp_sentinel.validators._folding import Folded, HiddenChar, fold

NEUTRALISED = "[sentinel: removed suspected prompt injection]"
_SENTENCE_LIMIT = 400  # how far a match is widened each way, at most
_ZERO_WIDTH_THRESHOLD = 4  # fewer, scattered zero-width characters are copy-paste debris

# Leading with a character class (no look-behind) lets the engine skip ahead quickly.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")
# 20 bytes at least: a 128-bit trace id (32 hex digits) is never worth decoding.
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){20,}")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ESCAPED_HEX = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){8,}")
_PERCENT = re.compile(r"[^\s%]{0,200}(?:%[0-9A-Fa-f]{2}[^\s%]{0,40}){3,}")
_HTML_COMMENT = re.compile(r"<!--([\s\S]{0,5000}?)-->")
_MD_COMMENT = re.compile(
    r"^[ \t]*\[(?://|comment|_|#)\]:[ \t]*(?:#|<>)[ \t]*[(\"']([^\n]{0,2000})[)\"'][ \t]*$", re.M
)
_CSS_HIDDEN = re.compile(
    r"<(\w{1,10})\b[^>]{0,300}?(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0"
    r"|opacity\s*:\s*0(?![.\d])|\shidden(?=[\s>]))[^>]{0,300}>([\s\S]{0,3000}?)</\1\s*>",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class InjectionVerdict:
    """A classifier's answer. ``spans`` are offsets into the text it was given; none means the
    whole text."""

    suspicious: bool
    reason: str = "classifier"
    score: float = 1.0
    spans: tuple[tuple[int, int], ...] = ()


class InjectionClassifier(Protocol):
    """A pluggable detector consulted in addition to the heuristics (a small model, a service
    client with a local cache...). Called synchronously on the event loop with the folded text
    of each string scanned: it must be fast and do no blocking I/O. None means "no opinion"."""

    def classify(self, text: str) -> InjectionVerdict | None: ...


@dataclass(frozen=True, slots=True)
class Detection:
    """One finding: ``category`` at ``start:end`` of the original string. ``replace``: cut the
    span out with the marker (False: the span is invisible characters, simply stripped)."""

    category: str
    start: int
    end: int
    replace: bool = True


@dataclass(frozen=True, slots=True)
class TextScan:
    """What ``scan_text`` found in ``text``: detections, and invisible characters to strip."""

    text: str
    detections: tuple[Detection, ...] = ()
    hidden: tuple[HiddenChar, ...] = field(default=())

    @property
    def suspicious(self) -> bool:
        return bool(self.detections)

    @property
    def categories(self) -> list[str]:
        return sorted({detection.category for detection in self.detections})

    def neutralised(self) -> str:
        """The text with each detection replaced by ``NEUTRALISED`` and invisibles stripped."""
        cuts = _merge([(d.start, d.end) for d in self.detections if d.replace])
        strips = [(h.start, h.end) for h in self.hidden]
        strips += [(d.start, d.end) for d in self.detections if not d.replace]
        edits = [(start, end, NEUTRALISED) for start, end in cuts]
        edits += [(s, e, "") for s, e in strips if not any(a <= s and e <= b for a, b in cuts)]
        edits.sort()
        out: list[str] = []
        cursor = 0
        for start, end, replacement in edits:
            if start < cursor:
                continue  # inside a cut already made
            out.append(self.text[cursor:start])
            out.append(replacement)
            cursor = end
        out.append(self.text[cursor:])
        return "".join(out)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _sentence(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``start:end`` to its sentence: stop at a newline, a quote, or ``.!?`` + space."""
    left, floor = start, max(0, start - _SENTENCE_LIMIT)
    while left > floor:
        before = text[left - 1]
        if before in '\n"' or (before in " \t" and left >= 2 and text[left - 2] in ".!?"):
            break
        left -= 1
    right, ceiling = end, min(len(text), end + _SENTENCE_LIMIT)
    while right < ceiling:
        char = text[right]
        if char in '\n"':
            break
        right += 1
        if char in ".!?" and (right == len(text) or text[right] in " \t\n"):
            break
    return left, right


def _lower(text: str) -> str:
    """``text.lower()`` when that keeps every offset (it almost always does), else per char."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def _rule_matches(
    text: str, ruleset: rules.RuleSet = rules.RULES, *, first: bool = False
) -> list[tuple[str, int, int]]:
    """(category, start, end) of each rule match in ``text`` (already folded).

    Rules run on the lowercased view (or the original for ``cased`` rules), only when their
    ``needs`` are present; a leading word boundary and ``not_after`` are checked here.
    """
    lowered = _lower(text)
    found: list[tuple[str, int, int]] = []
    for rule in ruleset.candidates(rules.tokens(lowered), lowered):
        view = text if rule.cased else lowered
        position = 0
        while (match := rule.pattern.search(view, position)) is not None:
            start = match.start()
            position = max(match.end(), start + 1)
            if (
                rule.word_start
                and start > 0
                and (view[start - 1].isalnum() or view[start - 1] == "_")
            ):
                position = start + 1
                continue
            if rule.not_after and view[max(0, start - 8) : start].endswith(rule.not_after):
                position = start + 1
                continue
            found.append((rule.category, start, match.end()))
            if first:
                return found
    return found


def _matches_rules(text: str, ruleset: rules.RuleSet = rules.RULES) -> bool:
    return bool(_rule_matches(fold(text).text, ruleset, first=True))


def _printable_text(data: bytes) -> str | None:
    """``data`` as text when it reads as words (not binary, not another id)."""
    if b" " not in data:
        return None  # instructions have spaces; ids and digests do not
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 8 or " " not in text:
        return None
    printable = sum(1 for char in text if char.isprintable() or char in "\n\t")
    letters = sum(1 for char in text if char.isalpha())
    return text if printable >= 0.95 * len(text) and letters >= 0.5 * len(text) else None


def _decoded_blobs(text: str) -> list[tuple[str, int, int]]:
    """(encoding, start, end) of each encoded blob in ``text`` that decodes to an injection."""
    found: list[tuple[str, int, int]] = []
    if len(text) < 20:
        return found  # too short to hold a blob
    for match in _BASE64.finditer(text):
        blob = match.group().rstrip("=")
        if _HEX_DIGITS.issuperset(blob):
            continue  # hex: decoded as hex below, if long enough
        data = None
        for alphabet in (None, b"-_"):
            try:
                data = base64.b64decode(blob + "=" * (-len(blob) % 4), altchars=alphabet)
                break
            except (binascii.Error, ValueError):
                continue
        decoded = None if data is None else _printable_text(data)
        if decoded is not None and _matches_rules(decoded):
            found.append(("base64", match.start(), match.end()))
    hex_matches = list(_HEX.finditer(text))
    if "\\x" in text:
        hex_matches += _ESCAPED_HEX.finditer(text)
    for match in hex_matches:
        digits = match.group().replace("\\x", "")
        decoded = _printable_text(bytes.fromhex(digits))
        if decoded is not None and _matches_rules(decoded):
            found.append(("hex", match.start(), match.end()))
    if "%" in text:
        for match in _PERCENT.finditer(text):
            decoded = urllib.parse.unquote(match.group())
            if decoded != match.group() and _matches_rules(decoded):
                found.append(("percent-encoding", match.start(), match.end()))
    return found


def _hidden_regions(text: str) -> list[tuple[int, int]]:
    """Comments and CSS-hidden elements whose content is addressed to a model."""
    regions: list[tuple[int, int]] = []
    candidates = []
    if "<!--" in text:
        candidates.append((_HTML_COMMENT, 1))
    if "]:" in text:
        candidates.append((_MD_COMMENT, 1))
    if "<" in text and ("</" in text):
        candidates.append((_CSS_HIDDEN, 2))
    for pattern, group in candidates:
        for match in pattern.finditer(text):
            inner = match.group(group)
            if _matches_rules(inner) or _matches_rules(inner, rules.HIDDEN_RULES):
                regions.append(match.span())
    return regions


def _runs(hidden: list[HiddenChar], kind: str) -> list[list[HiddenChar]]:
    runs: list[list[HiddenChar]] = []
    for char in hidden:
        if char.kind != kind:
            continue
        if runs and runs[-1][-1].end == char.start:
            runs[-1].append(char)
        else:
            runs.append([char])
    return runs


def _hidden_detections(hidden: list[HiddenChar]) -> list[Detection]:
    found: list[Detection] = []
    if not hidden:
        return found
    for run in _runs(hidden, "tag"):
        start, end = run[0].start, run[-1].end
        payload = "".join(chr(c.code - 0xE0000) for c in run if 0xE0020 <= c.code <= 0xE007E)
        category = rules.HIDDEN if _matches_rules(payload) else rules.HIDDEN_CHARS
        found.append(Detection(category, start, end))
    for run in _runs(hidden, "selector"):
        if len(run) >= 4:  # one selector is a CJK variant; a run carries bytes
            data = bytes((c.code - 0xE0100 + 16) & 0xFF for c in run)
            payload = _printable_text(data) or ""
            category = rules.HIDDEN if _matches_rules(payload) else rules.HIDDEN_CHARS
            found.append(Detection(category, run[0].start, run[-1].end))
    for char in hidden:
        if char.kind == "bidi":
            found.append(Detection(rules.HIDDEN_CHARS, char.start, char.end, replace=False))
    zero_width = [char for char in hidden if char.kind == "zero_width"]
    if len(zero_width) >= _ZERO_WIDTH_THRESHOLD:
        found.extend(
            Detection(rules.HIDDEN_CHARS, c.start, c.end, replace=False) for c in zero_width
        )
    return found


def scan_text(text: str, classifier: InjectionClassifier | None = None) -> TextScan:
    """Scan one string (an annotation, a tool output) for prompt injection; see the module doc."""
    folded: Folded = fold(text)
    view = folded.text
    detections: list[Detection] = []

    def add(category: str, start: int, end: int, *, widen: bool) -> None:
        if widen:
            start, end = _sentence(view, start, end)
        original_start, original_end = folded.original_span(start, end)
        detections.append(Detection(category, original_start, original_end))

    for category, start, end in _rule_matches(view):
        add(category, start, end, widen=True)
    for encoding, start, end in _decoded_blobs(view):
        add(f"{rules.ENCODED} ({encoding})", start, end, widen=False)
    for start, end in _hidden_regions(view):
        add(rules.HIDDEN, start, end, widen=False)
    detections.extend(_hidden_detections(folded.hidden))
    if classifier is not None:
        verdict = classifier.classify(view)
        if verdict is not None and verdict.suspicious:
            size = len(view)
            for low, high in verdict.spans or ((0, size),):
                clamped = max(0, min(low, size)), max(0, min(high, size))
                add(f"classifier: {verdict.reason}", *clamped, widen=False)
    return TextScan(text, tuple(detections), tuple(folded.hidden))
