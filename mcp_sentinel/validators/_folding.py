"""Text folding for the injection guard: one matchable view of a text, mapped back to the original.

Attackers hide instructions from regexes rather than from models: fullwidth or mathematical
letters (NFKC folds them), Cyrillic look-alikes, zero-width characters inside words, JSON
``\\uXXXX`` escapes and HTML entities. ``fold`` produces the text a model would effectively
read, remembers where each piece came from so a match can be cut out of the *original*, and
lists the invisible characters it dropped (``HiddenChar``) so they can be stripped and judged.
"""

from __future__ import annotations

import html
import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

# Characters a reader cannot see. Tag characters (U+E0000 block) spell invisible ASCII;
# bidi embeddings/overrides/isolates reorder what is shown ("Trojan Source").
_ZERO_WIDTH = frozenset(
    {0x00AD, 0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060,
     0x2061, 0x2062, 0x2063, 0x2064, 0x3164, 0xFEFF, 0xFFA0, 0xFFF9, 0xFFFA, 0xFFFB}
)  # fmt: skip
_BIDI = frozenset({0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069})
_BIDI_MARKS = frozenset({0x200E, 0x200F, 0x061C})  # legitimate in right-to-left text
# Letters that look Latin but are not (Cyrillic, Greek); NFKC leaves them alone.
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁһӏАВЕКМНОРСТХУІЈЅԌαοιρνκτΑΒΕΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhlABEKMHOPCTXYIJSGaoipvktABEHIKMNOPTYX",
)
_SPECIAL = re.compile(
    r"[^\x00-\x7f]"
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|\\u[0-9a-fA-F]{4}"
    r'|\\[nrt"\\/]'
    r"|&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|lt|gt|amp|quot|apos|nbsp);"
)
_ESCAPES = {"n": "\n", "r": "\n", "t": "\t", '"': '"', "\\": "\\", "/": "/"}


def invisible_kind(code: int) -> str | None:
    """``tag``, ``bidi``, ``bidi_mark``, ``zero_width`` or ``selector`` for an invisible char."""
    if 0xE0000 <= code <= 0xE007F:
        return "tag"
    if code in _BIDI:
        return "bidi"
    if code in _BIDI_MARKS:
        return "bidi_mark"
    if code in _ZERO_WIDTH:
        return "zero_width"
    if 0xE0100 <= code <= 0xE01EF:
        return "selector"  # variation selectors supplement: invisible, used to smuggle bytes
    return None


@dataclass(frozen=True, slots=True)
class HiddenChar:
    """An invisible character at ``start:end`` of the original (an escape spans several)."""

    start: int
    end: int
    code: int
    kind: str


@dataclass(slots=True)
class Folded:
    """The folded ``text`` and the pieces that differ from the original, to map spans back."""

    original: str
    text: str = ""
    hidden: list[HiddenChar] = field(default_factory=list)
    # Changed pieces, in order: folded start, original start, folded length, original length.
    _fstart: list[int] = field(default_factory=list)
    _ostart: list[int] = field(default_factory=list)
    _flen: list[int] = field(default_factory=list)
    _olen: list[int] = field(default_factory=list)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original span covering folded ``start:end``."""
        return self._map(start, is_end=False), self._map(end, is_end=True)

    def _map(self, pos: int, *, is_end: bool) -> int:
        index = (bisect_left(self._fstart, pos) if is_end else bisect_right(self._fstart, pos)) - 1
        if index < 0:
            return pos
        fstart, ostart = self._fstart[index], self._ostart[index]
        flen, olen = self._flen[index], self._olen[index]
        inside = fstart < pos <= fstart + flen if is_end else fstart <= pos < fstart + flen
        if inside:
            return ostart + olen if is_end else ostart
        return ostart + olen + (pos - fstart - flen)


def _decode(token: str) -> str:
    if token.startswith("\\u"):
        units = [int(token[i + 2 : i + 6], 16) for i in range(0, len(token), 6)]
        if len(units) == 2:
            return chr(0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00))
        return chr(units[0])
    if token.startswith("\\"):
        return _ESCAPES[token[1]]
    if token.startswith("&"):
        return html.unescape(token)
    return token


def _is_emoji_context(original: str, start: int, end: int) -> bool:
    """A joiner between two non-ASCII characters (emoji, Indic or Persian script) is ordinary."""
    return (
        start > 0 and end < len(original) and ord(original[start - 1]) > 0x7F
        and ord(original[end]) > 0x7F
    )  # fmt: skip


def fold(original: str) -> Folded:
    """Fold ``original``: decode escapes and entities, NFKC, map look-alikes, drop invisibles."""
    folded = Folded(original)
    if original.isascii() and "\\" not in original and "&" not in original:
        folded.text = original
        return folded
    out: list[str] = []
    length = 0  # folded length so far
    last = 0  # original position after the previous changed piece
    for found in _SPECIAL.finditer(original):
        start, end = found.span()
        token = found.group()
        char = _decode(token)
        out.append(original[last:start])
        length += start - last
        last = end
        replacement = char
        if len(char) == 1 and (kind := invisible_kind(ord(char))) is not None:
            replacement = ""
            # Not hidden text: joiners inside emoji or Indic/Persian words, a leading byte-order
            # mark, and the left/right-to-left marks of ordinary right-to-left text.
            ordinary = (
                kind == "bidi_mark"
                or (ord(char) in (0x200C, 0x200D) and _is_emoji_context(original, start, end))
                or (ord(char) == 0xFEFF and start == 0)
            )
            if not ordinary:
                folded.hidden.append(HiddenChar(start, end, ord(char), kind))
        elif len(char) == 1 and ord(char) > 0x7F:
            replacement = unicodedata.normalize("NFKC", char).translate(_HOMOGLYPHS)
        if replacement == token:
            out.append(token)
            length += len(token)
            continue
        folded._fstart.append(length)
        folded._ostart.append(start)
        folded._flen.append(len(replacement))
        folded._olen.append(end - start)
        out.append(replacement)
        length += len(replacement)
    out.append(original[last:])
    folded.text = "".join(out)
    folded.hidden = _without_flags(original, folded.hidden)
    return folded


def _without_flags(original: str, hidden: list[HiddenChar]) -> list[HiddenChar]:
    """Drop the tag characters of subdivision flags (England, Scotland, Wales): U+1F3F4, a few
    tag letters, then the cancel tag U+E007F. They are what tag characters are for."""
    kept: list[HiddenChar] = []
    run: list[HiddenChar] = []
    for char in [*hidden, None]:
        if char is not None and char.kind == "tag" and (not run or run[-1].end == char.start):
            run.append(char)
            continue
        if run:
            flag = (
                original[max(0, run[0].start - 1) : run[0].start] == "\U0001f3f4"
                and run[-1].code == 0xE007F
                and len(run) <= 7
            )
            if not flag:
                kept.extend(run)
            run = []
        if char is not None:
            if char.kind == "tag":
                run.append(char)
            else:
                kept.append(char)
    return kept
