"""A TTL set of incident keys, so Alertmanager's repeats are recognised as duplicates.

The key is ``(fingerprint, startsAt, status)``: the byte-identical repeat that Alertmanager sends
every ``repeat_interval`` has the same key; a re-fire has a new startsAt; a resolved notice has
another status. An entry lives ``ttl_seconds`` from when it was first remembered; pick a TTL
longer than Alertmanager's ``repeat_interval``, or repeats after it are investigated again.

``DedupeStore`` is the seam the dispatcher uses: ``DedupeCache`` here (memory, lost on exit) or
``sqlite_queue.SqliteDedupeStore`` (survives a restart). Both answer ``seen`` from memory, so
the dispatcher's intake never waits on a disk.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Protocol


class DedupeStore(Protocol):
    """What the dispatcher needs of its dedupe state. Called on the event loop only; the
    methods never block (a persistent store writes through its own thread)."""

    def seen(self, key: Hashable) -> bool:
        """True when ``key`` was remembered less than the TTL ago."""
        ...

    def fresh(self, keys: Sequence[Hashable]) -> list[bool]:
        """``not seen(key)`` for each of ``keys``, at one moment (a payload's keys)."""
        ...

    def remember_all(self, keys: Iterable[Hashable]) -> None:
        """Remember each key for one TTL from first sight (a repeat does not extend it)."""
        ...

    def purge(self) -> int:
        """Drop the expired keys from memory; return how many. The dispatcher calls it now
        and then, so a storm's keys are let go once their TTL passed even when no alert
        follows to push them out."""
        ...

    def __len__(self) -> int: ...


class DedupeCache:
    """Remembers keys for a fixed time. Owned by the dispatcher; not safe across threads.

    Expired entries are dropped as new ones arrive (oldest first: with one TTL, insertion
    order is expiry order), so memory stays proportional to the keys seen within one TTL.
    """

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._ttl = ttl_seconds
        self._clock = clock
        self._expiry: OrderedDict[Hashable, float] = OrderedDict()
        # The earliest expiry held (inf when empty): ``remember`` purges only once it passed.
        self._next_expiry = math.inf

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, key: Hashable) -> bool:
        """True when ``key`` was remembered less than the TTL ago."""
        expiry = self._expiry.get(key)
        return expiry is not None and expiry > self._clock()

    def fresh(self, keys: Sequence[Hashable]) -> list[bool]:
        """``not seen(key)`` for each of ``keys``, with one reading of the clock (a payload's
        keys: the clock once per payload, not per alert)."""
        now = self._clock()
        expiry_of = self._expiry.get
        return [(expiry := expiry_of(key)) is None or expiry <= now for key in keys]

    def remember(self, key: Hashable) -> None:
        """Remember ``key`` for one TTL from now (from first sight: repeats do not extend it)."""
        self.remember_all((key,))

    def remember_all(self, keys: Iterable[Hashable]) -> None:
        """``remember`` each of ``keys``, with one reading of the clock for all of them (a
        payload's keys: the clock and the purge check once per payload, not per alert)."""
        now = self._clock()
        if now >= self._next_expiry:
            self.purge(now)
        expiry = now + self._ttl
        entries = self._expiry
        added = False
        for key in keys:
            if key not in entries:
                entries[key] = expiry
                added = True
        if added and expiry < self._next_expiry:
            self._next_expiry = expiry

    def restore(self, key: Hashable, expiry: float) -> None:
        """Put back ``key`` with the ``expiry`` it had (on this cache's clock). Keys must be
        restored in expiry order, like ``remember`` adds them; an expired one is ignored."""
        if expiry > self._clock():
            self._expiry[key] = expiry
            self._next_expiry = min(self._next_expiry, expiry)

    def restore_all(self, keys: Iterable[Hashable], expiry: float) -> None:
        """``restore`` each of ``keys`` with the one ``expiry`` (a payload's keys), reading the
        clock once."""
        if expiry <= self._clock():
            return
        entries = self._expiry
        added = False
        for key in keys:
            entries[key] = expiry
            added = True
        if added and expiry < self._next_expiry:
            self._next_expiry = expiry

    def expiry_of(self, key: Hashable) -> float | None:
        return self._expiry.get(key)

    def purge(self, now: float | None = None) -> int:
        """Drop expired entries; return how many were dropped."""
        moment = self._clock() if now is None else now
        dropped = 0
        self._next_expiry = math.inf
        while self._expiry:
            key, expiry = next(iter(self._expiry.items()))
            if expiry > moment:
                self._next_expiry = expiry
                break
            del self._expiry[key]
            dropped += 1
        return dropped
