from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mcp_sentinel.dispatcher.dedupe import DedupeCache
from mcp_sentinel.models import IncidentNotification


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeat_is_seen_refire_and_resolution_are_not(
    notifications: Callable[[str], list[IncidentNotification]],
) -> None:
    (repeat,) = notifications("webhook_firing_repeat_after_repeat_interval")
    (resolved,) = notifications("webhook_resolved_single_alert")
    (refire,) = notifications("webhook_firing_refire_same_fingerprint_new_startsAt")
    firing = replace(resolved, status="firing", ends_at=None)
    # The captured payloads really are what the names say.
    assert refire.fingerprint == resolved.fingerprint and refire.starts_at > resolved.starts_at

    cache = DedupeCache(60)
    cache.remember(repeat.dedupe_key)
    cache.remember(firing.dedupe_key)
    (again,) = notifications("webhook_firing_repeat_after_repeat_interval")
    assert cache.seen(again.dedupe_key)
    assert not cache.seen(resolved.dedupe_key)
    cache.remember(resolved.dedupe_key)
    assert not cache.seen(refire.dedupe_key)


def test_entries_expire_and_are_purged() -> None:
    clock = Clock()
    cache = DedupeCache(10, clock=clock)
    cache.remember("a")
    clock.now += 5
    cache.remember("b")
    cache.remember("a")  # a repeat does not extend the first sighting
    assert len(cache) == 2
    clock.now += 6
    assert not cache.seen("a") and cache.seen("b")
    cache.remember("c")
    assert len(cache) == 2  # "a" was dropped when "c" arrived
    clock.now += 100
    assert cache.purge() == 2
    assert len(cache) == 0


def test_a_payloads_keys_are_remembered_together_with_one_expiry() -> None:
    clock = Clock()
    cache = DedupeCache(10, clock=clock)
    cache.remember_all(["a", "b"])
    clock.now += 5
    cache.remember_all(["b", "c", "c"])  # "b" keeps its first sighting
    assert cache.expiry_of("a") == cache.expiry_of("b") == 1010.0
    assert cache.expiry_of("c") == 1015.0 and len(cache) == 3
    clock.now += 6
    cache.remember_all(["d"])  # past the first expiry: "a" and "b" are dropped
    assert len(cache) == 2 and not cache.seen("a") and cache.seen("c")
    cache.remember_all([])
    assert len(cache) == 2


def test_fresh_and_restore_all_agree_with_seen_and_restore() -> None:
    clock = Clock()
    cache = DedupeCache(10, clock=clock)
    cache.remember("old")
    clock.now += 5
    cache.restore_all(["a", "b"], clock.now + 10)
    cache.restore_all(["gone"], clock.now - 1)  # expired already: ignored
    assert cache.fresh(["old", "a", "b", "gone", "never"]) == [False, False, False, True, True]
    clock.now += 6  # "old" expired, "a" and "b" not yet
    assert cache.fresh(["old", "a", "never"]) == [not cache.seen(k) for k in ["old", "a", "never"]]
    assert cache.fresh(["old", "a"]) == [True, False]
    assert cache.purge() == 1 and len(cache) == 2
    clock.now += 5
    assert cache.purge() == 2 and len(cache) == 0
