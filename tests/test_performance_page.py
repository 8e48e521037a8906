"""The performance page's targets table: a figure shown does not contradict its verdict
(``benchmarks/run_all.py`` writes the page)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.run_all import against_target, at_least, at_most, below

PERCENT_1 = {"places": 1, "scale": 100, "unit": "%"}
PERCENT_0 = {"places": 0, "scale": 100, "unit": "%"}
SECONDS = {"places": 2, "unit": " s"}
TIMES = {"places": 2, "unit": "x"}


@pytest.mark.parametrize(
    ("value", "meets", "figure", "expected"),
    [
        # a miss by 0.004 points of 95% must not read "95.0%"
        (0.9499602, at_least(0.95), PERCENT_1, ("94.996%", False)),
        (0.95, at_least(0.95), PERCENT_1, ("95.0%", True)),
        (0.9563, at_least(0.95), PERCENT_1, ("95.6%", True)),
        (0.612, at_least(0.85), PERCENT_0, ("61%", False)),
        (0.8496, at_least(0.85), PERCENT_0, ("84.96%", False)),
        # met, just under a strict limit: not "2.00 s" beside "met"
        (1.996, below(2), SECONDS, ("1.996 s", True)),
        (2.0, below(2), SECONDS, ("2.00 s", False)),
        # a miss just over an inclusive limit: not "2.00x" beside "not met"
        (2.003, at_most(2), TIMES, ("2.003x", False)),
        (1.6, at_most(2), TIMES, ("1.60x", True)),
    ],
)
def test_figure_falls_on_the_side_of_its_verdict(
    value: float,
    meets: Callable[[float], bool],
    figure: dict[str, Any],
    expected: tuple[str, bool],
) -> None:
    assert against_target(value, meets, **figure) == expected


def test_more_places_only_up_to_five() -> None:
    # 1e-9 under the line cannot be told apart from it in five more places: the figure stops
    # there (the verdict beside it still says which side the value is on).
    assert against_target(0.95 - 1e-9, at_least(0.95), **PERCENT_1) == ("95.000000%", False)
