"""Alertmanager-style label matchers and the card router.

A matcher is written as in Alertmanager: ``name="value"``, ``name!="value"``, ``name=~"regex"``,
``name!~"regex"``. Regexes are anchored (the whole value must match), as in Alertmanager.
A missing label has the value ``""``, so ``team!="db"`` holds for an alert without ``team``.

This module imports nothing else from the package at run time, so ``models`` can use it to
validate cards while they load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mcp_sentinel.models import IncidentCard

MatchOperator = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"""
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^"\s]*))\s*$"""
)
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """One matcher; ``matches(labels)`` says whether it holds for a label set."""

    name: str
    operator: MatchOperator
    value: str
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> LabelMatcher:
        """Parse ``name<op>"value"``; raise ``ValueError`` naming what is wrong."""
        found = _MATCHER.match(text)
        if found is None:
            raise ValueError(
                f'bad matcher {text!r}: expected label="value", label!="value", '
                'label=~"regex" or label!~"regex"'
            )
        quoted = found.group("quoted")
        value = _UNESCAPE.sub(r"\1", quoted) if quoted is not None else found.group("bare")
        operator: MatchOperator = found.group("op")  # type: ignore[assignment]
        pattern = None
        if operator in ("=~", "!~"):
            try:
                pattern = re.compile(f"(?:{value})")
            except re.error as exc:
                raise ValueError(f"bad regex in matcher {text!r}: {exc}") from None
        return cls(found.group("name"), operator, value, pattern)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        pattern = self.pattern
        if pattern is None:
            return (actual == self.value) == (self.operator == "=")
        return (pattern.fullmatch(actual) is not None) == (self.operator == "=~")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.operator}"{escaped}"'


class CardRouter:
    """Chooses the incident card for an alert: the first card whose matchers all hold.

    A card without ``match`` takes alerts whose ``alertname`` equals its ``resource``. When no
    card matches, the default card (if configured) takes the alert; otherwise ``route`` returns
    None and the caller counts the alert as unrouted.
    """

    def __init__(self, cards: Sequence[IncidentCard], default_card: str | None = None) -> None:
        self._cards = list(cards)
        self._rules: list[tuple[IncidentCard, tuple[LabelMatcher, ...]]] = [
            (card, card.matchers()) for card in self._cards
        ]
        self._default: IncidentCard | None = None
        if default_card is not None:
            by_name = {card.resource: card for card in self._cards}
            if default_card not in by_name:
                raise ValueError(f"default card {default_card!r} is not an incident card")
            self._default = by_name[default_card]

    @property
    def default_card(self) -> IncidentCard | None:
        return self._default

    def route(self, labels: Mapping[str, str]) -> IncidentCard | None:
        # Per alert on the intake path: the loops are written out (no ``all`` over a
        # generator) since that halves the cost of routing.
        for card, matchers in self._rules:
            for matcher in matchers:
                if not matcher.matches(labels):
                    break
            else:
                return card
        return self._default
