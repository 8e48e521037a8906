from __future__ import annotations

from collections.abc import Callable

import pytest

from mcp_sentinel.dispatcher.routing import CardRouter, LabelMatcher
from mcp_sentinel.models import IncidentCard, IncidentNotification


def card(resource: str, *match: str) -> IncidentCard:
    return IncidentCard(resource=resource, prompt="p", match=match or None)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity="critical"', {"severity": "warning"}, False),
        ('severity!="critical"', {}, True),
        ('severity=~"crit.*|warning"', {"severity": "warning"}, True),
        ('severity=~"crit"', {"severity": "critical"}, False),  # anchored, as in Alertmanager
        ('team!~"db|infra"', {"team": "web"}, True),
        ('team!~"db|infra"', {"team": "db"}, False),
        ('team=""', {}, True),
        ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
        ("job=api", {"job": "api"}, True),
    ],
)
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelMatcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["severity", "=x", 'a=~"("', "9a=b"])
def test_bad_matchers_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="matcher"):
        LabelMatcher.parse(text)


def test_first_matching_card_wins_then_default(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    router = CardRouter(
        [
            card("Other", 'service="payments"'),
            card("Checkout", 'service="checkout"', 'severity=~"critical|page"'),
            card("AlsoCheckout", 'service="checkout"'),
            card("generic", 'alertname="never"'),
        ],
        default_card="generic",
    )
    chosen = router.route(alert.labels)
    assert chosen is not None and chosen.resource == "Checkout"
    fallback = router.route({"alertname": "Unknown"})
    assert fallback is not None and fallback.resource == "generic"


def test_card_without_match_takes_its_alertname(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    router = CardRouter([card("SomethingElse"), card("ProbeAlwaysFiring")])
    chosen = router.route(alert.labels)
    assert chosen is not None and chosen.resource == "ProbeAlwaysFiring"
    assert router.route({"alertname": "Nobody"}) is None


def test_unknown_default_card_is_refused() -> None:
    with pytest.raises(ValueError, match="default card 'x'"):
        CardRouter([card("A")], default_card="x")
