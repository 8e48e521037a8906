"""Output limits: at most N items (series, targets, alerts) and M characters per tool answer.

A model handed an unbounded answer loses the point in it and the daemon cuts it anyway
(``max_output_chars``) without saying what was lost. Here the cut is made knowingly: whole
lines only, and a note that says how much was left out and how to ask for less.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_MAX_CHARS = 200
"""Below this a truncation note could not fit beside any content."""


@dataclass(frozen=True, slots=True)
class OutputLimits:
    """``max_series`` items per answer; ``max_chars`` characters per answer, note included."""

    max_series: int = 20
    max_chars: int = 6000

    def __post_init__(self) -> None:
        if self.max_series < 1:
            raise ValueError("max_series must be at least 1")
        if self.max_chars < MIN_MAX_CHARS:
            raise ValueError(f"max_chars must be at least {MIN_MAX_CHARS}")


def limit_items(lines: Sequence[str], max_items: int, noun: str, hint: str) -> list[str]:
    """The first ``max_items`` lines, then (if any were left out) one line saying how many
    ``noun`` were left out, followed by ``hint`` (how to narrow the request)."""
    kept = list(lines[:max_items])
    left_out = len(lines) - len(kept)
    if left_out > 0:
        kept.append(
            f"... {left_out} more {noun} left out (showing {len(kept)} of {len(lines)}); {hint}"
        )
    return kept


def limit_grouped(
    sections: Sequence[tuple[str, Sequence[str]]], max_items: int, noun: str, hint: str
) -> list[str]:
    """Headed sections (a header line, then its items indented) holding at most ``max_items``
    items in all, in order; a section with none of its items shown is left out whole, and one
    closing line says how many ``noun`` were left out, followed by ``hint``."""
    lines: list[str] = []
    total = sum(len(items) for _, items in sections)
    room = max_items
    for header, items in sections:
        if room <= 0:
            break
        shown = items[:room]
        room -= len(shown)
        lines.append(header)
        lines.extend(f"  {item}" for item in shown)
    left_out = total - (max_items - room)
    if left_out > 0:
        lines.append(
            f"... {left_out} more {noun} left out (showing {total - left_out} of {total}); {hint}"
        )
    return lines


def truncate_text(text: str, max_chars: int) -> str:
    """``text`` if it fits in ``max_chars``; else its first whole lines and a truncation note,
    the whole never longer than ``max_chars``. A single line longer than the budget is cut
    mid-line (marked with an ellipsis)."""
    if len(text) <= max_chars:
        return text
    total = len(text)
    # The note's length depends on the shown count: reserve for the widest it can be.
    note_room = len(_note(total, total)) + 1
    budget = max(max_chars - note_room, 0)
    cut = text.rfind("\n", 0, budget + 1)
    shown = text[:cut] if cut > 0 else text[: max(budget - 1, 0)] + "…"
    return f"{shown}\n{_note(len(shown), total)}"


def _note(shown: int, total: int) -> str:
    return (
        f"[output truncated: {shown} of {total} characters shown; "
        "narrow the query (a label selector, topk(), a shorter range) to see the rest]"
    )
