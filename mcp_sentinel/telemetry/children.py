"""A metric's labelled children, each looked up once.

``metric.labels(...)`` costs a few microseconds (it validates and joins the label values
under a lock); a worker asks for the same few children for every incident. ``Children``
keeps what ``labels`` returned, by label values, for the life of the metric's owner.
"""

from __future__ import annotations

from typing import Generic, Protocol, Self, TypeVar


class _Labelled(Protocol):
    def labels(self, *values: str) -> Self: ...


M = TypeVar("M", bound=_Labelled)


class Children(Generic[M]):
    """``children(*values)`` is ``metric.labels(*values)``, remembered. Label values must come
    from a bounded set (the metrics' own rule), so this stays small."""

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child
