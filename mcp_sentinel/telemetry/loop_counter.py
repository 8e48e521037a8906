"""Counters for the intake's per-payload path, scraped like ``prometheus_client.Counter``.

``prometheus_client``'s counter takes a lock on every ``inc`` so that any thread may count:
about 1.3 µs a call here, and a webhook request counts three times (the request, the alerts
received, what dispatch did), for a tenth of a bare aiohttp receiver's whole cost per request.
Intake counts on the event loop only, and ``/metrics`` is scraped on that loop too, so a plain
float suffices: ``LoopCounter`` keeps one per label set and exposes them as one counter
family, with the exposition a ``Counter`` of the same name would give (``# TYPE <name>
counter`` and ``<name>_total`` samples).

Contract: increment only from the event loop's thread. A scrape from another thread reads
whole floats (the GIL makes the read atomic), so it may lag, never tear.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class LoopCounterChild:
    """One label set's count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (not negative: a counter only goes up)."""
        if amount < 0:
            raise ValueError("a counter cannot be decreased")
        self.value += amount


class LoopCounter(Collector):
    """A labelled counter family registered on ``registry``; see the module docstring.

    ``name`` ends in ``_total``, as a counter's does; ``labels`` returns the same child for
    the same values, so callers look children up once and keep them.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
    ) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        self._family = name.removesuffix("_total")
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], LoopCounterChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> LoopCounterChild:
        if len(values) != len(self._labelnames):
            raise ValueError(
                f"{self._family}_total takes {len(self._labelnames)} label value(s), "
                f"got {len(values)}"
            )
        key = tuple(str(value) for value in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = LoopCounterChild()
        return child

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._family, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._family, self._documentation, labels=self._labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family
